"""Writing shards and their manifest so that nothing half-written ever looks complete.

Each shard is written to a temporary name in the destination folder and renamed into
place only after it is closed and hashed; the manifest, written the same way, is the last
file of a corpus, so a folder with a manifest is a finished corpus.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

MANIFEST_NAME = "manifest.json"


@dataclass
class ShardInfo:
    name: str
    split: str
    sha256: str
    bytes: int
    clips: int
    frames: int
    speakers: list[str]


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def write_shard(path: str | os.PathLike, split: str, samples: Iterable[dict[str, Any]]) -> ShardInfo:
    """Write samples to one tar shard atomically and describe it for the manifest."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    clips = frames = 0
    speakers: set[str] = set()
    try:
        with wds.TarWriter(tmp, mtime=0) as sink:  # fixed mtime: same samples, same bytes
            for sample in samples:
                meta = json.loads(sample["json"])
                sink.write(sample)
                clips += 1
                frames += int(meta["num_frames"])
                speakers.add(str(meta["speaker"]))
        info = ShardInfo(path.name, split, sha256_file(tmp), os.path.getsize(tmp), clips, frames,
                         sorted(speakers))
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; shards are shared data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return info


def write_json_atomic(path: str | os.PathLike, payload: dict[str, Any]) -> None:
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w") as fh:
            json.dump(payload, fh, indent=2, sort_keys=False)
            fh.write("\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def build_manifest(shards: list[ShardInfo], *, fps: int, sample_rate: int, image_size: int,
                   **fields: Any) -> dict[str, Any]:
    """Per-split totals plus the per-shard list (with sha256) that readers verify against."""
    splits: dict[str, dict[str, Any]] = {}
    for info in sorted(shards, key=lambda s: s.name):
        split = splits.setdefault(info.split, {"shards": [], "clips": 0, "frames": 0, "speakers": set()})
        split["shards"].append(info.name)
        split["clips"] += info.clips
        split["frames"] += info.frames
        split["speakers"].update(info.speakers)
    for split in splits.values():
        split["speakers"] = sorted(split["speakers"])
        split["seconds"] = round(split["frames"] / fps, 3)
    from datamodules.sample_format import FORMAT_VERSION

    return {
        "format_version": FORMAT_VERSION,
        "fps": fps,
        "sample_rate": sample_rate,
        "image_size": image_size,
        **fields,
        "splits": splits,
        "shards": [asdict(s) for s in sorted(shards, key=lambda s: s.name)],
    }
