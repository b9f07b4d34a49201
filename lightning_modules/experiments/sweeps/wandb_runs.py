"""Read a finished W&B run from the files W&B itself wrote, with no server.

wandb 0.31 writes no `files/wandb-summary.json` for offline runs; everything a later
`wandb sync` uploads is in the run's transaction log `run-ID.wandb`: a LevelDB-style log
(7-byte header `:W&B` + magic + version, then 32 KiB blocks of records, each with a 7-byte
header: crc32, length, type FULL/FIRST/MIDDLE/LAST) of `wandb_internal_pb2.Record`
protobufs. The run record holds id, name, group and project; summary records hold
incremental updates of the run summary (the value a W&B sweep optimises: by default the
last logged value of the metric). A truncated log (a killed run) is read up to the last
complete record.
"""

from __future__ import annotations

import json
import struct
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

MAGIC = b":W&B"
FILE_HEADER = 7
BLOCK = 32768
RECORD_HEADER = 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


@dataclass
class WandbRun:
    path: Path                       # the run folder: .../wandb/offline-run-DATE-ID
    run_id: str = ""
    name: str = ""
    group: str = ""
    project: str = ""
    summary: dict[str, Any] = field(default_factory=dict)
    exit_code: int | None = None     # None: the log has no exit record (the run was killed)
    history: list[dict[str, Any]] = field(default_factory=list)  # logged rows, in order


def iter_records(path: Path) -> Iterator[bytes]:
    """Payloads of the complete records in a transaction log file."""
    data = path.read_bytes()
    if data[:4] != MAGIC:
        raise ValueError(f"{path}: not a W&B transaction log (starts with {data[:4]!r}, "
                         f"expected {MAGIC!r})")
    pos, pending = FILE_HEADER, b""
    while pos + RECORD_HEADER <= len(data):
        left_in_block = BLOCK - pos % BLOCK
        if left_in_block < RECORD_HEADER:  # block trailer: zero padding
            pos += left_in_block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos:pos + RECORD_HEADER])
        if kind == 0 and length == 0:      # zero-filled rest of the block
            pos += left_in_block
            continue
        start, pos = pos + RECORD_HEADER, pos + RECORD_HEADER + length
        if pos > len(data) or kind not in (FULL, FIRST, MIDDLE, LAST):
            return                         # truncated or garbled tail
        chunk = data[start:pos]
        if kind == FULL:
            yield chunk
        elif kind == FIRST:
            pending = chunk
        elif kind == MIDDLE:
            pending += chunk
        else:
            yield pending + chunk
            pending = b""


def _set(tree: dict[str, Any], keys: list[str], value: Any) -> None:
    for key in keys[:-1]:
        if not isinstance(tree.get(key), dict):
            tree[key] = {}
        tree = tree[key]
    tree[keys[-1]] = value


def _remove(tree: dict[str, Any], keys: list[str]) -> None:
    for key in keys[:-1]:
        tree = tree.get(key, {})
        if not isinstance(tree, dict):
            return
    tree.pop(keys[-1], None)


def read_run(run_dir: str | Path) -> WandbRun:
    """Identity, logged history rows and final summary of the run in `run_dir` (an
    offline-run-* or run-* folder)."""
    from wandb.proto import wandb_internal_pb2 as pb

    run_dir = Path(run_dir)
    logs = sorted(run_dir.glob("run-*.wandb"))
    if not logs:
        raise FileNotFoundError(f"{run_dir}: no run-*.wandb transaction log in this W&B run")
    run = WandbRun(path=run_dir)
    for payload in iter_records(logs[0]):
        record = pb.Record()
        try:
            record.ParseFromString(payload)
        except Exception:  # noqa: BLE001 - protobuf's DecodeError; stop at a corrupt record
            break
        kind = record.WhichOneof("record_type")
        if kind == "run":
            r = record.run
            run.run_id, run.name, run.group, run.project = (r.run_id, r.display_name,
                                                            r.run_group, r.project)
        elif kind == "summary":
            for item in record.summary.update:
                keys = [item.key] if item.key else list(item.nested_key)
                _set(run.summary, keys, json.loads(item.value_json))
            for item in record.summary.remove:
                _remove(run.summary, [item.key] if item.key else list(item.nested_key))
        elif kind == "history":
            row: dict[str, Any] = {}
            for item in record.history.item:
                key = item.key or ".".join(item.nested_key)
                row[key] = json.loads(item.value_json)
            run.history.append(row)
        elif kind == "exit":
            run.exit_code = record.exit.exit_code
    return run


def find_runs(root_dir: str | Path) -> list[Path]:
    """W&B run folders under a Lightning run folder, oldest first (names start with the date)."""
    wandb_dir = Path(root_dir) / "wandb"
    runs = [p for p in wandb_dir.glob("*run-*") if p.is_dir()
            and (p.name.startswith("offline-run-") or p.name.startswith("run-"))]
    return sorted(runs, key=lambda p: p.name.removeprefix("offline-"))


def summary_value(summary: dict[str, Any], name: str) -> Any:
    """summary[name], or the nested value for a dotted name such as `val.l1` (W&B's form)."""
    if name in summary:
        return summary[name]
    node: Any = summary
    for part in name.split("."):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node
