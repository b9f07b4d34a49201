"""One person's corpus, as a user would make it, with a ground-truth mouth track added.

    python -m benchmarks.personal_corpus --out data/person [--clips 24] [--seconds 8]

Writes ``clips`` mp4s of ONE person (``VIDEOS/person/clip_NNN.mp4``: scikit-image's
astronaut photograph, moving a little, speaking timed synthetic phones whose mouth track
drives the drawn mouth; see :func:`tests.media_fixtures.phone_speech`), runs
``lipmem data prep`` on them (split by video: the default for one speaker), then copies the
prepared corpus to ``OUT`` with each clip's slice of its video's mouth track as the
``mouth.npy`` member, so ``lipmem eval`` scores ``openness_mae`` and
``silent_closed_share`` on that person. The prep corpus itself is left as prep wrote it.
"""

from __future__ import annotations

import argparse
import io
import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from datamodules.atomic_files import write_json_atomic
from datamodules.manifest import load_manifest
from datamodules.prep.build import PrepError, prepare
from datamodules.prep.job import PrepConfig
from datamodules.sample_format import META_KEY, MOUTH_KEY
from datamodules.shards import MANIFEST_NAME, ShardInfo, build_manifest, write_shard

PERSON = "person"


def make_person_videos(videos: str | Path, clips: int = 24, seconds: float = 8.0,
                       size: int = 192, fps: int = 25, sample_rate: int = 22050,
                       seed: int = 0) -> dict[str, np.ndarray]:
    """Write the mp4s (AAC at ``sample_rate``, as a phone records) under
    ``videos/person/``; returns relative path -> per-frame mouth track (T, 3) at ``fps``."""
    from tests.media_fixtures import make_talking_video, phone_speech

    tracks: dict[str, np.ndarray] = {}
    for i in range(clips):
        sound, mouth = phone_speech(seconds, fps, sample_rate, seed=seed * 1000 + i)
        rel = f"{PERSON}/clip_{i:03d}.mp4"
        make_talking_video(Path(videos) / rel, seconds=seconds, fps=fps, size=size,
                           sample_rate=sample_rate, seed=seed * 1000 + i, sound=sound,
                           mouth=mouth, mouth_fps=fps)
        tracks[rel] = mouth
    return tracks


def _with_mouth(sample: dict[str, Any], tracks: dict[str, np.ndarray]) -> dict[str, Any]:
    meta = json.loads(sample[META_KEY])
    track = tracks[meta["source"]]
    start, num = int(meta["start_frame"]), int(meta["num_frames"])
    piece = track[start:start + num]
    if piece.shape != (num, 3):
        raise ValueError(f"{sample['__key__']}: frames {start}..{start + num} lie outside the "
                         f"{len(track)}-frame track of {meta['source']}")
    buf = io.BytesIO()
    np.save(buf, piece.astype(np.float32))
    return {**sample, MOUTH_KEY: buf.getvalue()}


def add_mouth_tracks(prepped: str | Path, out: str | Path,
                     tracks: dict[str, np.ndarray]) -> dict[str, Any]:
    """Copy the prep corpus ``prepped`` to ``out`` with a ``mouth.npy`` member per clip
    (``tracks``: source video path relative to ``--videos`` -> (T, 3) track at the corpus
    fps); shards are rewritten atomically and the manifest last. Returns the manifest."""
    prepped, out = Path(prepped), Path(out)
    old = load_manifest(prepped)
    out.mkdir(parents=True, exist_ok=True)
    (out / MANIFEST_NAME).unlink(missing_ok=True)
    infos: list[ShardInfo] = []
    for shard in old["shards"]:
        samples = (_with_mouth(s, tracks) for s in
                   wds.WebDataset(str(prepped / shard["name"]), shardshuffle=False))
        infos.append(write_shard(out / shard["name"], shard["split"], samples))
    fields = {k: v for k, v in old.items()
              if k not in ("format_version", "fps", "sample_rate", "image_size", "splits",
                           "shards", "_path", "has_mouth_track", "source")}
    manifest = build_manifest(infos, fps=old["fps"], sample_rate=old["sample_rate"],
                              image_size=old["image_size"], **fields, has_mouth_track=True,
                              source="lipmem data prep + ground-truth mouth tracks")
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return manifest


def make_personal_corpus(out: str | Path, clips: int = 24, seconds: float = 8.0,
                         size: int = 192, image_size: int = 96, seed: int = 0,
                         workers: int = 2, work: str | Path | None = None,
                         **prep: Any) -> dict[str, Any]:
    """Videos -> ``lipmem data prep`` -> corpus with mouth tracks in ``out``; the videos and
    the plain prep output go to ``work`` (default ``OUT.work/``). ``prep``: more
    :class:`PrepConfig` fields. Returns {"manifest", "report", "videos", "prepped"}."""
    out = Path(out)
    work = Path(work) if work is not None else out.with_name(out.name + ".work")
    videos, prepped = work / "videos", work / "prep"
    shutil.rmtree(videos, ignore_errors=True)
    tracks = make_person_videos(videos, clips, seconds, size, seed=seed)
    cfg = PrepConfig(str(videos), str(prepped), image_size=image_size, workers=workers,
                     seed=seed, **prep)
    report = prepare(cfg, overwrite=True, progress=False)
    if not report["kept_clips"]:
        raise PrepError(f"prep kept no clip of {videos}: {report['skips'][:3]}")
    manifest = add_mouth_tracks(prepped, out, tracks)
    return {"manifest": manifest, "report": report, "videos": videos, "prepped": prepped}


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--out", required=True)
    ap.add_argument("--clips", type=int, default=24)
    ap.add_argument("--seconds", type=float, default=8.0)
    ap.add_argument("--size", type=int, default=192, help="video side in pixels")
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--workers", type=int, default=2)
    args = ap.parse_args()
    result = make_personal_corpus(args.out, args.clips, args.seconds, args.size,
                                  args.image_size, args.seed, args.workers)
    splits = {k: v["clips"] for k, v in result["manifest"]["splits"].items()}
    print(f"{args.out}: clips per split {splits}; videos and plain prep in "
          f"{Path(result['videos']).parent}")


if __name__ == "__main__":
    main()
