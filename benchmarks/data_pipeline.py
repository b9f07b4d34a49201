"""Data-pipeline throughput: shards -> decoded clips -> windows -> batches, as training sees it.

    python -m benchmarks.data_pipeline [--root data/synth] [--workers 2] [--batches 60]

Reads the real corpus through LipSyncDataModule's training loader (workers decode mp4 + wav,
compute log-mel, cut windows and batch), with no model attached, and reports windows/s.
"""

from __future__ import annotations

import argparse
import time

from benchmarks.common import write_result
from datamodules.lipsync_datamodule import LipSyncDataModule


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--root", default="data/synth")
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--windows-per-clip", type=int, default=16)
    ap.add_argument("--batches", type=int, default=60)
    ap.add_argument("--warmup", type=int, default=5)
    args = ap.parse_args()

    dm = LipSyncDataModule(root=args.root, image_size=args.image_size, batch_size=args.batch_size,
                           num_workers=args.workers, windows_per_clip=args.windows_per_clip,
                           batches_per_epoch=args.batches + args.warmup)
    dm.setup("fit")
    loader = dm.train_dataloader()
    started = None
    count = 0
    for i, batch in enumerate(loader):
        if i == args.warmup:
            started = time.perf_counter()
        if i >= args.warmup:
            count += batch["face"].shape[0] * batch["face"].shape[1]
    elapsed = time.perf_counter() - started
    write_result(f"data_pipeline_{args.image_size}px_{args.workers}workers", {
        "what": "LipSyncDataModule train loader: tar shards -> mp4/wav decode -> log-mel -> "
                "windows -> shuffled batches in the workers",
        "corpus": args.root,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "workers": args.workers,
        "windows_per_clip": args.windows_per_clip,
        "frames_per_second": round(count / elapsed, 1),
        "batches_timed": args.batches,
    })


if __name__ == "__main__":
    main()
