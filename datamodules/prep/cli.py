"""`lipmem data prep`: argument wiring and the printed report.

Kept apart from ``build.py`` so the job stays importable and testable without argparse.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from datamodules.prep.build import REPORT_NAME, PrepError, prepare
from datamodules.prep.job import SPLIT_MODES, PrepConfig
from datamodules.prep.sources import SPEAKER_MODES, check_speaker_mode

_D = PrepConfig(videos_dir="", out_dir="")
_FLAGS = {"videos_dir": "--videos", "out_dir": "--out"}


def _speaker_mode(value: str) -> str:
    try:
        return check_speaker_mode(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from exc


def _json_object(value: str) -> dict:
    try:
        data = json.loads(value)
    except json.JSONDecodeError as exc:
        raise argparse.ArgumentTypeError(f"not JSON: {exc}") from exc
    if not isinstance(data, dict):
        raise argparse.ArgumentTypeError("expected a JSON object, e.g. '{\"device\": \"cuda\"}'")
    return data


def add_prep_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the `lipmem data prep` options to ``parser``."""
    d = _D
    parser.add_argument("--videos", required=True, metavar="DIR",
                        help="folder of talking-head videos (any format FFmpeg reads), e.g. "
                             "SPEAKER/VIDEO.mp4")
    parser.add_argument("--out", required=True, metavar="DIR",
                        help="output folder for shards, manifest.json and prep_report.json")
    parser.add_argument("--image-size", type=int, default=d.image_size,
                        help=f"square face crop side in pixels, even (default {d.image_size})")
    parser.add_argument("--clip-seconds", type=float, default=d.clip_seconds,
                        help=f"clip length in seconds (default {d.clip_seconds})")
    parser.add_argument("--min-clip-seconds", type=float, default=d.min_clip_seconds,
                        help="shortest clip kept (a run's remainder or a short video) "
                             f"(default {d.min_clip_seconds})")
    parser.add_argument("--speaker-from", type=_speaker_mode, default=d.speaker_from,
                        metavar="MODE",
                        help=f"where the speaker id comes from: {', '.join(SPEAKER_MODES)} or "
                             f"'regex:PATTERN' with a (?P<speaker>...) group "
                             f"(default {d.speaker_from}: SPEAKER/VIDEO.mp4)")
    parser.add_argument("--speaker-sep", default=d.speaker_sep,
                        help=f"separator for --speaker-from prefix (default {d.speaker_sep!r})")
    parser.add_argument("--split-by", choices=SPLIT_MODES, default=d.split_by,
                        help="what the split fractions divide: whole speakers (val/test are "
                             "unseen faces), whole videos (one person: val/test are other "
                             "recordings), or clip (one long recording: val is the end block "
                             "of each video after a one-clip gap; test stays whole videos); "
                             "auto = speaker with >= 3 speakers, else video (default "
                             f"{d.split_by})")
    parser.add_argument("--split", type=float, nargs=3, default=list(d.split),
                        metavar=("TRAIN", "VAL", "TEST"),
                        help="fractions of speakers / videos / clips per split, summing to 1 "
                             "(default 0.8 0.1 0.1); small folders still get a val unit when "
                             "there are >= 2")
    parser.add_argument("--seed", type=int, default=d.seed,
                        help=f"seed of the split and of the shard interleaving (default {d.seed})")
    parser.add_argument("--detector", default=None, metavar="CLASS_PATH",
                        help="face detector class with detect(frame_rgb) -> [(x, y, w, h, "
                             "score)], e.g. mypkg.faces.S3FD (default: OpenCV Haar cascade)")
    parser.add_argument("--detector-args", type=_json_object, default={}, metavar="JSON",
                        help="keyword arguments for the detector class, as a JSON object")
    parser.add_argument("--margin", type=float, default=d.margin,
                        help="crop side = face box side x (1 + 2 x margin) "
                             f"(default {d.margin})")
    parser.add_argument("--shift-y", type=float, default=d.shift_y,
                        help="move the crop centre down by this many face sizes "
                             f"(default {d.shift_y})")
    parser.add_argument("--max-gap", type=int, default=d.max_gap,
                        help="frames without a detection bridged by interpolation; longer "
                             f"gaps split clips (default {d.max_gap})")
    parser.add_argument("--smooth", type=float, default=d.smooth,
                        help=f"box smoothing, Gaussian sigma in frames (default {d.smooth})")
    parser.add_argument("--detect-every", type=int, default=d.detect_every, metavar="K",
                        help="run the face detector on every K-th frame and interpolate "
                             "between (every frame where neighbouring keyframes disagree); "
                             f"1 = every frame (default {d.detect_every})")
    parser.add_argument("--detect-side", type=int, default=d.detect_side, metavar="PX",
                        help="the detector sees frames shrunk to this longer side; crops still "
                             "come from the full frame; 0 = full frame "
                             f"(default {d.detect_side})")
    parser.add_argument("--clips-per-shard", type=int, default=d.clips_per_shard,
                        help=f"most clips per tar shard (default {d.clips_per_shard})")
    parser.add_argument("--min-shards", type=int, default=d.min_shards,
                        help="at least this many shards per split when it has that many clips, "
                             "so loader workers x ranks each read their own "
                             f"(default {d.min_shards})")
    parser.add_argument("--workers", type=int, default=d.workers,
                        help=f"worker processes, <= 1 runs in-process (default {d.workers})")
    parser.add_argument("--max-pixels", type=int, default=d.max_pixels,
                        help="skip videos whose frames have more pixels, refused from the "
                             f"stream header before decoding (default {d.max_pixels}: 4096x4096)")
    parser.add_argument("--overwrite", action="store_true",
                        help="discard earlier results in --out and start over")
    parser.add_argument("--progress", action=argparse.BooleanOptionalAction, default=None,
                        help="progress bar (default: when stderr is a terminal)")


def config_from_args(args: argparse.Namespace) -> PrepConfig:
    return PrepConfig(
        videos_dir=str(args.videos), out_dir=str(args.out), image_size=args.image_size,
        clip_seconds=args.clip_seconds, min_clip_seconds=args.min_clip_seconds,
        speaker_from=args.speaker_from, speaker_sep=args.speaker_sep, split=tuple(args.split),
        seed=args.seed, detector=args.detector, detector_args=args.detector_args,
        margin=args.margin, shift_y=args.shift_y, max_gap=args.max_gap, smooth=args.smooth,
        detect_every=args.detect_every, detect_side=args.detect_side, split_by=args.split_by,
        clips_per_shard=args.clips_per_shard, min_shards=args.min_shards, workers=args.workers,
        max_pixels=args.max_pixels,
    )


def format_report(report: dict, out_dir: str | Path, seconds: float) -> str:
    lines = [(f"videos: {report['videos']} ({report['processed_now']} processed now, "
             f"{report['already_done']} already done in an earlier run)"),
             (f"kept: {report['kept_clips']} clips, {report['kept_seconds'] / 60:.1f} min "
             f"from {report['kept_videos']} videos")]
    skipped = {k: v for k, v in report["skipped"].items() if v}
    lines.append("skipped: " + (", ".join(f"{k} {v}" for k, v in skipped.items()) or "none"))
    for skip in report["skips"][:20]:
        lines.append(f"  {skip['reason']:<12} {skip['video']}: {skip['detail']}")
    if len(report["skips"]) > 20:
        lines.append(f"  ... {len(report['skips']) - 20} more in {REPORT_NAME}")
    if report["notes"]:
        lines.append("handled: " + ", ".join(f"{k} {v}" for k, v in report["notes"].items()))
    if report.get("split_by"):
        gaps = f", {report['gap_clips']} gap clips left out" if report.get("gap_clips") else ""
        lines.append(f"split by {report['split_by']}{gaps}:")
    for split, s in report["splits"].items():
        lines.append(f"{split:<6} {s['speakers']:>4} speakers {s.get('videos', 0):>5} videos "
                     f"{s['clips']:>6} clips {s['shards']:>4} shards")
    if report["splits"] and "val" not in report["splits"]:
        lines.append("no val split: `lipmem fit` trains without validation on this corpus "
                     "(with one person, --split-by clip holds out the end of each video)")
    state = "written" if report["corpus_changed"] else "unchanged"
    lines.append(f"manifest ({state}): {report['manifest']}; report: "
                 f"{Path(out_dir) / REPORT_NAME}; {seconds:.1f} s")
    return "\n".join(lines)


def run_prep(args: argparse.Namespace) -> int:
    """Exit code: 0 ok, 1 no clip kept, 2 bad arguments or output folder."""
    cfg = config_from_args(args)
    problems = cfg.problems()
    if problems:
        for field, message in problems:
            flag = _FLAGS.get(field, "--" + field.replace("_", "-"))
            print(f"error: {flag}={getattr(cfg, field)}: {message}", file=sys.stderr)
        return 2
    start = time.perf_counter()
    try:
        report = prepare(cfg, overwrite=args.overwrite, progress=args.progress)
    except (PrepError, FileExistsError) as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 2
    print(format_report(report, cfg.out_dir, time.perf_counter() - start))
    if not report["kept_clips"]:
        print("error: no clip was kept; see the skip reasons above", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    """Standalone entry: ``python -m datamodules.prep.cli --videos DIR --out DIR``."""
    parser = argparse.ArgumentParser(prog="lipmem data prep",
                                     description="Talking-head videos -> lip-sync shards.")
    add_prep_arguments(parser)
    return run_prep(parser.parse_args(argv))


if __name__ == "__main__":
    raise SystemExit(main())
