"""`lipmem data synth`: argument wiring and the human-readable summary.

Kept apart from ``corpus.py`` so the generator stays importable and testable without
argparse, and so the top-level CLI can mount this subcommand wherever it likes.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

from datamodules.synth.corpus import SHARD_ORDERS, SPLITS, SynthConfig, synthesize

_DEFAULTS = SynthConfig(out_dir="")
# Config field -> the flag a user typed, for error messages.
_FLAGS = {"out_dir": "--out", "fps": "fps", "sample_rate": "sample rate"}


def add_synth_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `lipmem data synth` options to ``parser``."""
    d = _DEFAULTS
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder for the shards and manifest.json")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help="corpus seed; same seed and options give identical shards "
                             f"(default {d.seed})")
    parser.add_argument("--speakers", type=int, default=d.speakers,
                        help=f"number of synthetic speakers (default {d.speakers})")
    parser.add_argument("--clips-per-speaker", type=int, default=d.clips_per_speaker,
                        help=f"clips per speaker (default {d.clips_per_speaker})")
    parser.add_argument("--clip-seconds", type=float, default=d.clip_seconds,
                        help=f"clip length in seconds (default {d.clip_seconds})")
    parser.add_argument("--image-size", type=int, default=d.image_size,
                        help=f"square frame side in pixels, even, 32..256 (default {d.image_size})")
    parser.add_argument("--val-speakers", type=int, default=d.val_speakers,
                        help=f"speakers held out for validation (default {d.val_speakers})")
    parser.add_argument("--test-speakers", type=int, default=d.test_speakers,
                        help=f"speakers held out for test (default {d.test_speakers})")
    parser.add_argument("--clips-per-shard", type=int, default=d.clips_per_shard,
                        help=f"clips per tar shard (default {d.clips_per_shard})")
    parser.add_argument("--workers", type=int, default=d.workers,
                        help=f"worker processes, <= 1 runs in-process (default {d.workers})")
    parser.add_argument("--shard-order", choices=SHARD_ORDERS, default=d.shard_order,
                        help="interleaved: every shard mixes speakers (default); by_speaker: "
                             "one speaker's clips together, like a corpus cut video by video")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace an existing corpus in --out")


def config_from_args(args: argparse.Namespace) -> SynthConfig:
    return SynthConfig(
        out_dir=str(args.out), seed=args.seed, speakers=args.speakers,
        clips_per_speaker=args.clips_per_speaker, clip_seconds=args.clip_seconds,
        image_size=args.image_size, val_speakers=args.val_speakers,
        test_speakers=args.test_speakers, clips_per_shard=args.clips_per_shard,
        workers=args.workers, shard_order=args.shard_order,
    )


def _flag(field: str) -> str:
    return _FLAGS.get(field, "--" + field.replace("_", "-"))


def format_summary(manifest: dict, out_dir: str | Path, seconds: float) -> str:
    lines = [f"{'split':<6} {'speakers':>8} {'clips':>6} {'minutes':>8} {'shards':>6}"]
    for split in SPLITS:
        s = manifest["splits"].get(split)
        if s:
            lines.append(f"{split:<6} {len(s['speakers']):>8} {s['clips']:>6} "
                         f"{s['seconds'] / 60:>8.1f} {len(s['shards']):>6}")
    size = sum(int(s["bytes"]) for s in manifest["shards"]) / 1e6
    lines.append(f"wrote {len(manifest['shards'])} shards ({size:.1f} MB) in {seconds:.1f} s; "
                 f"manifest: {Path(out_dir) / 'manifest.json'}")
    return "\n".join(lines)


def run_synth(args: argparse.Namespace) -> int:
    """Validate, generate, summarise. Returns a process exit code (0 ok, 2 bad arguments)."""
    cfg = config_from_args(args)
    problems = cfg.problems()
    if problems:
        for field, message in problems:
            value = getattr(cfg, field)
            print(f"error: {_flag(field)}={value}: {message}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        manifest = synthesize(cfg, overwrite=args.overwrite)
    except FileExistsError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_summary(manifest, cfg.out_dir, time.perf_counter() - start))
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m datamodules.synth.cli --out DIR``."""
    parser = argparse.ArgumentParser(prog="lipmem data synth",
                                     description="Generate the synthetic lip-sync corpus.")
    add_synth_arguments(parser)
    return run_synth(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
