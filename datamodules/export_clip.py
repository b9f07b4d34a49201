"""`lipmem data export`: one clip of a corpus as an mp4 with its audio.

Shards hold clips as the training loader reads them; a person wants to watch one, or hand it
to `lipmem infer` as the face (and the voice) to lip-sync. The clip is decoded exactly as
the loader decodes it (repairs included) and written as H.264 + AAC.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from datamodules.lipsync_datamodule import SPLITS, LipSyncDataModule
from datamodules.manifest import load_manifest
from datamodules.media_writer import VideoWriter


def add_export_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--data", required=True, help="corpus folder (with manifest.json)")
    parser.add_argument("--split", default="test", choices=SPLITS)
    parser.add_argument("--index", type=int, default=0,
                        help="which clip of the split, in shard order (default 0)")
    parser.add_argument("--out", required=True, help="output .mp4")


def export_clip(data: str | Path, split: str, index: int, out: str | Path) -> Path:
    """Write clip ``index`` of ``split`` to ``out``; ValueError when there is no such clip."""
    if index < 0:
        raise ValueError(f"--index {index}: must be >= 0")
    manifest = load_manifest(data)
    dm = LipSyncDataModule(root=str(data), image_size=int(manifest["image_size"]),
                           fps=int(manifest["fps"]), num_workers=0)
    clip = None
    for i, candidate in enumerate(dm.clips(split, limit=index + 1)):
        if i == index:
            clip = candidate
    if clip is None:
        raise ValueError(f"{data}: split {split!r} has no usable clip number {index}")
    with VideoWriter(out, fps=clip.fps, sample_rate=clip.sample_rate) as writer:
        writer.add_frames(clip.frames)
        writer.add_audio(clip.audio)
    return Path(out)


def run_export(args: argparse.Namespace) -> int:
    try:
        path = export_clip(args.data, args.split, args.index, args.out)
    except (ValueError, FileNotFoundError) as exc:
        print(f"lipmem data export: error: {exc}", file=sys.stderr)
        return 2
    print(f"wrote {path}")
    return 0
