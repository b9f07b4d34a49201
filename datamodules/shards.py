"""Writing shards and their manifest so that nothing half-written ever looks complete.

Each shard is written to a temporary name in the destination folder and renamed into
place only after it is closed and hashed; the manifest, written the same way, is the last
file of a corpus, so a folder with a manifest is a finished corpus.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import webdataset as wds

from datamodules.atomic_files import atomic_path, sha256_file

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


def write_shard(path: str | os.PathLike, split: str, samples: Iterable[dict[str, Any]]) -> ShardInfo:
    """Write samples to one tar shard atomically and describe it for the manifest."""
    path = Path(path)
    clips = frames = 0
    speakers: set[str] = set()
    with atomic_path(path) as tmp:
        with wds.TarWriter(str(tmp), mtime=0) as sink:  # fixed mtime: same samples, same bytes
            for sample in samples:
                meta = json.loads(sample["json"])
                sink.write(sample)
                clips += 1
                frames += int(meta["num_frames"])
                speakers.add(str(meta["speaker"]))
        info = ShardInfo(path.name, split, sha256_file(tmp), os.path.getsize(tmp), clips, frames,
                         sorted(speakers))
    return info


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
