"""`lipmem data prep` speed: frames/s per core with every-frame full-size face detection
(the old way, still reachable by flags) and with the default keyframe detection on a shrunk
frame.

    python -m benchmarks.prep_speed [--clips 24] [--seconds 8] [--size 384] [--workers 2]

Writes one person's mp4s as a user would have them (scikit-image's astronaut photograph,
moving a little, speaking timed synthetic phones; H.264 + AAC at 22,050 Hz; see
:mod:`benchmarks.personal_corpus`), then runs the real console command twice in a
subprocess: ``--detect-every 1 --detect-side 0`` (before) and the defaults (after). CPU time
is the subprocess tree's user + system time (its worker processes included), so frames/s
per core = decoded video frames / CPU seconds, however many workers ran. Also reported:
the detector calls per frame and how far the two runs' crops differ (mean absolute pixel
difference, 0-255; a one-pixel shift of a 96 px crop of this photograph is about 10).
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from benchmarks.common import write_result
from benchmarks.personal_corpus import make_person_videos
from datamodules.prep.build import REPORT_NAME
from datamodules.sample_format import decode_sample

REPO = Path(__file__).resolve().parent.parent
BEFORE = ["--detect-every", "1", "--detect-side", "0"]


def _children_cpu() -> float:
    usage = resource.getrusage(resource.RUSAGE_CHILDREN)
    return usage.ru_utime + usage.ru_stime


def run_prep(videos: Path, out: Path, flags: list[str], image_size: int, workers: int
             ) -> dict[str, Any]:
    """One `lipmem data prep` subprocess; its wall and CPU seconds and its report."""
    cmd = [sys.executable, "-m", "lightning_modules.cli.main", "data", "prep", "--videos",
           str(videos), "--out", str(out), "--image-size", str(image_size), "--workers",
           str(workers), "--overwrite", "--no-progress", *flags]
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [str(REPO), *filter(None, [os.environ.get("PYTHONPATH")])]))
    cpu0, wall0 = _children_cpu(), time.perf_counter()
    done = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True, check=False)
    wall, cpu = time.perf_counter() - wall0, _children_cpu() - cpu0
    if done.returncode != 0:
        raise RuntimeError(f"{' '.join(cmd)} failed ({done.returncode}):\n{done.stderr[-3000:]}")
    report = json.loads((out / REPORT_NAME).read_text())
    frames = report["video_frames"]
    return {"flags": flags, "wall_seconds": round(wall, 2), "cpu_seconds": round(cpu, 2),
            "video_frames": frames, "kept_clips": report["kept_clips"],
            "detector_calls_per_frame": round(report["detector_frames"] / max(frames, 1), 3),
            "frames_per_second_wall": round(frames / wall, 1),
            "frames_per_second_per_core": round(frames / cpu, 1)}


def _clips(out: Path) -> dict[str, np.ndarray]:
    clips = {}
    for shard in sorted(out.glob("*.tar")):
        for sample in wds.WebDataset(str(shard), shardshuffle=False):
            clip = decode_sample(sample)
            clips[clip.key] = clip.frames
    return clips


def crop_difference(a: Path, b: Path) -> float:
    """Mean absolute pixel difference between the same clips of two prep outputs."""
    ca, cb = _clips(a), _clips(b)
    if set(ca) != set(cb):
        raise RuntimeError(f"the two runs kept different clips: {sorted(set(ca) ^ set(cb))[:5]}")
    return float(np.mean([np.abs(ca[k].astype(np.int16) - cb[k]).mean() for k in ca]))


def main(argv: list[str] | None = None) -> Path:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--clips", type=int, default=24, help="videos of the one person")
    ap.add_argument("--seconds", type=float, default=8.0, help="length of each video")
    ap.add_argument("--size", type=int, default=384, help="video side in pixels")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--workers", type=int, default=2)
    ap.add_argument("--work", default=None, help="folder for videos and outputs "
                                                "(default: a temporary folder, removed)")
    ap.add_argument("--result", default=None, help="JSON path (default "
                                                  "benchmarks/results/prep_speed.json)")
    args = ap.parse_args(argv)
    work = Path(args.work or tempfile.mkdtemp(prefix="prep_speed_"))
    try:
        videos = work / "videos"
        shutil.rmtree(videos, ignore_errors=True)
        make_person_videos(videos, args.clips, args.seconds, args.size)
        before = run_prep(videos, work / "before", BEFORE, args.image_size, args.workers)
        after = run_prep(videos, work / "after", [], args.image_size, args.workers)
        difference = crop_difference(work / "before", work / "after")
    finally:
        if args.work is None:
            shutil.rmtree(work, ignore_errors=True)
    return write_result("prep_speed", {
        "what": "lipmem data prep on one person's mp4s (H.264 + AAC 22,050 Hz), subprocess; "
                "frames/s per core = video frames / CPU seconds of the process tree",
        "input": {"videos": args.clips, "seconds_each": args.seconds, "size": args.size,
                  "total_seconds": args.clips * args.seconds},
        "image_size": args.image_size, "workers": args.workers,
        "before": before, "after": after,
        "speedup_per_core": round(after["frames_per_second_per_core"]
                                  / before["frames_per_second_per_core"], 2),
        "crop_mean_abs_diff": round(difference, 2),
    }, args.result)


if __name__ == "__main__":
    main()
