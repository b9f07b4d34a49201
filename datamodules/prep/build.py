"""`lipmem data prep` end to end: list videos, prepare the unfinished ones in parallel,
split their clips and pack them into interleaved shards (:mod:`datamodules.prep.splits`),
write the manifest last and the report.

Resumable by construction: each finished video leaves a record under ``OUT/.prep/done/`` and
its clips in ``OUT/.prep/clips/`` (both written atomically), so a rerun only processes videos
without a record (or whose size / mtime changed). Shards are repacked from the staged clips
in a fixed order with fixed tar metadata, so the same inputs give byte-identical shards;
when nothing changed the shards and manifest are left untouched. The manifest is removed
before any shard is rewritten and written after all of them: a folder with a manifest is
always a complete, consistent corpus, and a half-written shard only ever exists under a
hidden temporary name that no manifest lists.
"""

from __future__ import annotations

import hashlib
import itertools
import json
import multiprocessing
import shutil
import sys
import tarfile
from collections import Counter
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict
from pathlib import Path
from typing import Any

from datamodules.atomic_files import write_json_atomic
from datamodules.manifest import load_manifest, verify_shards
from datamodules.prep.job import (
    SKIP_REASONS,
    STAGING,
    PrepConfig,
    clips_path,
    config_digest,
    config_record,
    process_video,
    record_path,
    staging_dir,
    worker_init,
)
from datamodules.prep.sources import VideoTask, list_videos
from datamodules.prep.splits import (
    SPLITS,
    ClipRef,
    assign_clip_splits,
    pack_shards,
    resolve_split_mode,
)
from datamodules.shards import MANIFEST_NAME, ShardInfo, build_manifest, write_shard

REPORT_NAME = "prep_report.json"
HANDLING = {
    "frame_rate": "constant fps by presentation time: each output frame shows the source frame "
                  "nearest its timestamp (FFmpeg fps filter, round=near)",
    "variable_frame_rate": "detected (inter-frame intervals differ > 20%) and resampled to "
                           "constant fps by timestamps like any other rate; counted as "
                           "vfr_resampled, never skipped",
    "audio": "first audio stream, resampled and down-mixed to mono by PyAV av.AudioResampler "
             "(FFmpeg libswresample, default filter), aligned to the video by stream start "
             "times",
    "face_crop": "detection on a copy shrunk to detect_side on every detect_every-th frame "
                 "(every frame between two keyframes that disagree), nearest-to-previous "
                 "face, gaps up to max_gap frames interpolated, median + Gaussian smoothing, "
                 "square crop with margin from the full-resolution frame, edge padding "
                 "outside the frame",
}


class PrepError(ValueError):
    """Unusable options or inputs; the message names the flag, file or folder."""


def _prepare_out(cfg: PrepConfig, overwrite: bool) -> None:
    out = Path(cfg.out_dir)
    staging = staging_dir(out)
    config_file = staging / "config.json"
    if overwrite:
        (out / MANIFEST_NAME).unlink(missing_ok=True)
        shutil.rmtree(staging, ignore_errors=True)
        for split in SPLITS:
            for old in out.glob(f"{split}-*.tar"):
                old.unlink()
        (out / REPORT_NAME).unlink(missing_ok=True)
    elif config_file.is_file():
        old = json.loads(config_file.read_text())
        if old.get("digest") != config_digest(cfg):
            changed = sorted(k for k, v in cfg.fingerprint().items()
                             if old.get("fingerprint", {}).get(k) != v)
            raise FileExistsError(
                f"{out} was prepared with other settings ({', '.join(changed)} differ); "
                f"finished videos would not match: pass --overwrite to start over or choose "
                f"another --out")
    elif (out / MANIFEST_NAME).exists():
        raise FileExistsError(f"{out} already holds a corpus not made by `lipmem data prep` "
                              f"({MANIFEST_NAME} without {STAGING}/config.json); choose "
                              f"another --out or pass --overwrite")
    out.mkdir(parents=True, exist_ok=True)
    # leftovers of an interrupted run: hidden temp files are never listed or read
    for tmp in itertools.chain(out.glob(".*.tmp"), staging.glob("*/.*.tmp")):
        tmp.unlink(missing_ok=True)
    write_json_atomic(config_file, config_record(cfg))



def _load_record(cfg: PrepConfig, task: VideoTask) -> dict[str, Any] | None:
    """The finished record of ``task``, or None when it must be (re)done."""
    path = record_path(cfg.out_dir, task)
    try:
        record = json.loads(path.read_text())
    except (OSError, json.JSONDecodeError):
        return None
    if record.get("size") != task.size or record.get("mtime_ns") != task.mtime_ns:
        return None  # the file changed since
    if record.get("status") == "kept":
        staged = clips_path(cfg.out_dir, task)
        if not staged.is_file():
            return None
    return record


def _progress(enabled: bool | None, total: int):
    """A rich progress bar on a terminal; None (silence) when output is piped or logged."""
    if enabled is None:
        enabled = sys.stderr.isatty()
    if not enabled or total == 0:
        return None
    from rich.console import Console
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("prep videos"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), console=Console(stderr=True), transient=True)


def _run_tasks(cfg: PrepConfig, todo: list[VideoTask],
               progress: bool | None) -> dict[str, dict[str, Any]]:
    records: dict[str, dict[str, Any]] = {}
    bar = _progress(progress, len(todo))
    task_id = bar.add_task("videos", total=len(todo)) if bar else None
    try:
        if bar:
            bar.start()
        if cfg.workers <= 1 or len(todo) <= 1:
            for task in todo:
                records[task.relpath] = process_video(task, cfg)
                if bar:
                    bar.advance(task_id)
        else:
            # spawn, not fork: a forked child of a parent whose OpenCV/codec thread pools
            # have run can deadlock
            pool = ProcessPoolExecutor(min(cfg.workers, len(todo)), initializer=worker_init,
                                       mp_context=multiprocessing.get_context("spawn"))
            try:
                futures = {pool.submit(process_video, task, cfg): task for task in todo}
                for future in as_completed(futures):
                    task = futures[future]
                    try:
                        records[task.relpath] = future.result()
                    except Exception as exc:  # noqa: BLE001 - a worker died (e.g. OOM kill)
                        records[task.relpath] = {
                            "video": task.relpath, "speaker": task.speaker, "status": "skipped",
                            "reason": "error", "detail": f"worker failed: "
                                                         f"{type(exc).__name__}: {exc}"}
                    if bar:
                        bar.advance(task_id)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
    finally:
        if bar:
            bar.stop()
    return records


def staged_samples(path: str | Path) -> Iterator[dict[str, Any]]:
    """The samples of a staging tar, in order, as WebDataset sample dicts of bytes."""
    with tarfile.open(path) as tar:
        sample: dict[str, Any] | None = None
        for member in tar:
            if not member.isfile():
                continue
            key, _, ext = member.name.partition(".")
            if sample is None or sample["__key__"] != key:
                if sample is not None:
                    yield sample
                sample = {"__key__": key}
            sample[ext] = tar.extractfile(member).read()
        if sample is not None:
            yield sample


class StagedClips:
    """Random access to the clips of many staging tars: where each member's bytes lie is
    read once from the tar headers, so interleaved shards are packed with one seek per
    member instead of a pass over a whole tar per clip."""

    def __init__(self, tars: list[Path]) -> None:
        self._where: dict[str, tuple[Path, list[tuple[str, int, int]]]] = {}
        for path in tars:
            with tarfile.open(path) as tar:
                for member in tar:
                    if not member.isfile():
                        continue
                    key, _, ext = member.name.partition(".")
                    entry = self._where.setdefault(key, (path, []))
                    if entry[0] != path:
                        raise PrepError(f"clip {key!r} is staged twice ({entry[0]}, {path})")
                    entry[1].append((ext, member.offset_data, member.size))

    def __contains__(self, key: str) -> bool:
        return key in self._where

    def sample(self, key: str) -> dict[str, Any]:
        path, members = self._where[key]
        sample: dict[str, Any] = {"__key__": key}
        with open(path, "rb") as f:
            for ext, offset, size in members:
                f.seek(offset)
                sample[ext] = f.read(size)
        return sample


def _clip_refs(kept: list[tuple[VideoTask, dict[str, Any]]]) -> list[ClipRef]:
    return [ClipRef(key, t.speaker, t.relpath, i)
            for t, r in kept for i, key in enumerate(r["clips"])]


def _assemble(cfg: PrepConfig, kept: list[tuple[VideoTask, dict[str, Any]]]
              ) -> tuple[dict[str, Any], bool]:
    """Shards + manifest from the staged clips; (manifest, whether anything was written)."""
    out = Path(cfg.out_dir)
    kept = sorted(kept, key=lambda tr: (tr[0].speaker, tr[0].relpath))
    clips = _clip_refs(kept)
    mode = resolve_split_mode(cfg.split_by, len({c.speaker for c in clips}))
    splits, gaps = assign_clip_splits(clips, mode, tuple(cfg.split), cfg.seed)
    packed = {split: pack_shards([c for c in clips if splits.get(c.key) == split],
                                 cfg.clips_per_shard, cfg.min_shards, cfg.seed, split)
              for split in SPLITS}
    layout = {split: [[c.key for c in shard] for shard in shards]
              for split, shards in packed.items()}
    digest = hashlib.sha256(json.dumps({
        "config": config_digest(cfg), "split_by": mode, "layout": layout,
        "videos": [(t.relpath, r["clips_sha256"]) for t, r in kept],
    }, sort_keys=True).encode()).hexdigest()
    manifest_file = out / MANIFEST_NAME
    if manifest_file.is_file():
        try:
            old = load_manifest(out)
            if old.get("inputs_digest") == digest:
                verify_shards(old, out, check_sha256=False)
                old.pop("_path", None)
                return old, False
        except ValueError:
            pass  # damaged or different: rebuild below
    manifest_file.unlink(missing_ok=True)
    for split in SPLITS:
        for old_shard in out.glob(f"{split}-*.tar"):
            old_shard.unlink()
    staged = StagedClips([clips_path(out, t) for t, _ in kept])
    missing = [c.key for c in clips if c.key not in staged]
    if missing:
        raise PrepError(f"staged clips lack {missing[0]!r} (and {len(missing) - 1} more): "
                        f"{out / STAGING} is damaged; rerun with --overwrite")
    infos: list[ShardInfo] = []
    for split in SPLITS:
        for index, shard in enumerate(packed[split]):
            infos.append(write_shard(out / f"{split}-{index:06d}.tar", split,
                                     (staged.sample(c.key) for c in shard)))
    config = asdict(cfg)
    config.pop("out_dir")
    config["split"] = list(cfg.split)
    by_split = {s: [c for c in clips if splits.get(c.key) == s] for s in SPLITS}
    manifest = build_manifest(
        infos, fps=cfg.fps, sample_rate=cfg.sample_rate, image_size=cfg.image_size,
        name="prep", source="lipmem data prep", seed=cfg.seed, has_mouth_track=False,
        config=config, split_by=mode,
        speaker_splits={s: sorted({c.speaker for c in v}) for s, v in by_split.items()},
        video_splits={s: sorted({c.video for c in v}) for s, v in by_split.items()},
        gap_clips=sorted(gaps), inputs_digest=digest)
    write_json_atomic(manifest_file, manifest)
    return manifest, True


def prepare(cfg: PrepConfig, overwrite: bool = False, progress: bool | None = None
            ) -> dict[str, Any]:
    """Run the whole job; returns the report (also written to ``OUT/prep_report.json``).
    Raises :class:`PrepError` for bad options or an unusable ``--videos`` folder and
    FileExistsError when ``--out`` holds something else (see ``overwrite``)."""
    problems = cfg.problems()
    if problems:
        raise PrepError("; ".join(f"{k}: {v}" for k, v in problems))
    try:
        tasks = list_videos(cfg.videos_dir, cfg.speaker_from, cfg.speaker_sep)
    except ValueError as exc:
        raise PrepError(str(exc)) from exc
    if Path(cfg.out_dir).resolve() == Path(cfg.videos_dir).resolve():
        raise PrepError(f"--out {cfg.out_dir!r} must differ from --videos")
    _prepare_out(cfg, overwrite)
    done = {t.relpath: r for t in tasks if (r := _load_record(cfg, t)) is not None}
    todo = [t for t in tasks if t.relpath not in done]
    new = _run_tasks(cfg, todo, progress)
    records = {**done, **new}
    kept = [(t, records[t.relpath]) for t in tasks if records[t.relpath].get("status") == "kept"]
    if kept:
        manifest, changed = _assemble(cfg, kept)
    else:  # nothing usable: no manifest, so nothing looks like a corpus
        manifest, changed = None, (Path(cfg.out_dir) / MANIFEST_NAME).is_file()
        (Path(cfg.out_dir) / MANIFEST_NAME).unlink(missing_ok=True)
    report = _report(cfg, tasks, records, done, manifest, changed)
    write_json_atomic(Path(cfg.out_dir) / REPORT_NAME, report)
    return report


def _report(cfg: PrepConfig, tasks: list[VideoTask], records: dict[str, dict[str, Any]],
            done: dict[str, Any], manifest: dict[str, Any] | None, changed: bool
            ) -> dict[str, Any]:
    skipped = [records[t.relpath] for t in tasks if records[t.relpath].get("status") != "kept"]
    kept = [records[t.relpath] for t in tasks if records[t.relpath].get("status") == "kept"]
    reasons = Counter(r["reason"] for r in skipped)
    notes = Counter(n for r in kept for n in r.get("notes", []))
    splits = (manifest or {}).get("splits", {})
    videos = (manifest or {}).get("video_splits", {})
    return {
        "videos": len(tasks),
        "processed_now": len(tasks) - len(done),
        "already_done": len(done),
        "kept_videos": len(kept),
        "kept_clips": sum(len(r["clips"]) for r in kept),
        "kept_seconds": round(sum(r["frames"] for r in kept) / cfg.fps, 3),
        "skipped_videos": len(skipped),
        "skipped": {reason: reasons.get(reason, 0) for reason in SKIP_REASONS},
        "skips": [{"video": r["video"], "reason": r["reason"], "detail": r.get("detail", "")}
                  for r in skipped],
        "notes": dict(sorted(notes.items())),
        "detector_frames": sum(r.get("detector_frames", 0) for r in kept),
        "video_frames": sum(r.get("video_frames", 0) for r in kept),
        "split_by": (manifest or {}).get("split_by"),
        "gap_clips": len((manifest or {}).get("gap_clips", [])),
        "splits": {s: {"speakers": len(v["speakers"]), "videos": len(videos.get(s, [])),
                       "clips": v["clips"], "shards": len(v["shards"])}
                   for s, v in splits.items()},
        "corpus_changed": changed,
        "manifest": str(Path(cfg.out_dir) / MANIFEST_NAME) if manifest else None,
        "handling": HANDLING,
    }


__all__ = ["HANDLING", "REPORT_NAME", "PrepError", "prepare", "staged_samples"]
