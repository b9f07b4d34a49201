"""One video -> its clip samples (in a staging tar) or a skip reason; runs in a worker.

Two decoding passes keep memory flat whatever the video's length and resolution: the first
runs the detector on keyframes of a shrunk copy of the frames (``detect_side``; only boxes
are kept; see :func:`datamodules.prep.tracking.detect_keyframes`), the second crops the
full-resolution frames that fall inside planned clips. A video is finished when its record
(``.prep/done/STEM.json``) exists; the record is written after the staging tar, both
atomically, so an interrupted run redoes at most the videos that were in flight.

Skip reasons (the prep report counts them): ``undecodable`` (FFmpeg cannot open or decode
it, or no video stream), ``no_audio`` (no audio stream, or it decodes to nothing),
``no_face`` (the detector never fires), ``too_short`` (no face run with audio as long as
``min_clip_seconds``), ``too_large`` (frames above ``max_pixels``, refused from the stream
header before decoding; not recorded, so a rerun with a larger ``--max-pixels`` retries),
``error`` (anything unexpected: not recorded, so a rerun retries).
"""

from __future__ import annotations

import hashlib
import json
import math
import os
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.atomic_files import atomic_path, sha256_file, write_json_atomic
from datamodules.prep.clips import plan_clips
from datamodules.prep.face_detect import (
    Box,
    FaceDetector,
    HaarFaceDetector,
    load_detector,
    scale_boxes,
)
from datamodules.prep.media import MediaError, StreamInfo, decode_audio, iter_frames
from datamodules.prep.sources import VideoTask
from datamodules.prep.tracking import (
    FaceTrack,
    NoFaceError,
    TrackConfig,
    crop_and_resize,
    detect_keyframes,
    track_from_detections,
)
from datamodules.sample_format import encode_sample
from datamodules.sample_limits import MAX_SOURCE_PIXELS

SKIP_REASONS = ("undecodable", "no_audio", "no_face", "too_short", "too_large", "error")
SPLIT_MODES = ("auto", "speaker", "video", "clip")
# skips that are not written down as finished: a rerun (with other settings) retries them
_RETRIED = ("too_large", "error")
STAGING = ".prep"
SOURCE = "prep"


@dataclass
class PrepConfig:
    """Everything ``lipmem data prep`` does. Fields in :meth:`fingerprint` decide the clip
    bytes; changing one of them invalidates finished videos (see ``--overwrite``)."""

    videos_dir: str
    out_dir: str
    image_size: int = 96
    fps: int = 25
    sample_rate: int = 16000
    clip_seconds: float = 5.0
    min_clip_seconds: float = 1.0
    speaker_from: str = "parent"
    speaker_sep: str = "_"
    split: tuple[float, float, float] = (0.8, 0.1, 0.1)
    seed: int = 0
    detector: str | None = None
    detector_args: dict[str, Any] = field(default_factory=dict)
    margin: float = TrackConfig.margin
    shift_y: float = TrackConfig.shift_y
    max_gap: int = TrackConfig.max_gap
    smooth: float = TrackConfig.smooth
    detect_every: int = 5
    detect_side: int = 256
    split_by: str = "auto"
    clips_per_shard: int = 64
    min_shards: int = 4
    workers: int = 2
    max_pixels: int = MAX_SOURCE_PIXELS

    @property
    def clip_frames(self) -> int:
        return round(self.clip_seconds * self.fps)

    @property
    def min_frames(self) -> int:
        return max(1, round(self.min_clip_seconds * self.fps))

    @property
    def track(self) -> TrackConfig:
        return TrackConfig(max_gap=self.max_gap, smooth=self.smooth, margin=self.margin,
                           shift_y=self.shift_y)

    def fingerprint(self) -> dict[str, Any]:
        """The settings that decide a video's clips (not splits or shard packing)."""
        keys = ("image_size", "fps", "sample_rate", "clip_seconds", "min_clip_seconds",
                "speaker_from", "speaker_sep", "detector", "detector_args", "margin", "shift_y",
                "max_gap", "smooth", "detect_every", "detect_side")
        return {k: getattr(self, k) for k in keys} | {"version": 1}

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) per invalid setting."""
        out: list[tuple[str, str]] = []
        if self.image_size % 2 or not 16 <= self.image_size <= 1024:
            out.append(("image_size", f"must be even and in 16..1024, got {self.image_size}"))
        if self.fps < 1:
            out.append(("fps", f"must be >= 1, got {self.fps}"))
        elif self.sample_rate % self.fps:
            out.append(("sample_rate", (f"must be a multiple of fps ({self.fps}) so frames "
                                       f"align with whole samples, got {self.sample_rate}")))
        if not 0 < self.min_clip_seconds <= self.clip_seconds:
            out.append(("min_clip_seconds", (f"must be in (0, clip_seconds={self.clip_seconds}]"
                                            f", got {self.min_clip_seconds}")))
        if len(self.split) != 3 or any(f < 0 for f in self.split) or self.split[0] <= 0 \
                or not math.isclose(sum(self.split), 1.0, abs_tol=1e-6):
            out.append(("split", (f"must be three fractions train val test >= 0 summing to 1 "
                                 f"with train > 0, got {list(self.split)}")))
        if self.clips_per_shard < 1:
            out.append(("clips_per_shard", f"must be >= 1, got {self.clips_per_shard}"))
        if self.min_shards < 1:
            out.append(("min_shards", f"must be >= 1, got {self.min_shards}"))
        if self.split_by not in SPLIT_MODES:
            out.append(("split_by", (f"must be one of {', '.join(SPLIT_MODES)}, got "
                                     f"{self.split_by!r}")))
        if not 1 <= self.detect_every <= self.max_gap + 1:
            out.append(("detect_every", (f"must be in 1..max_gap + 1 = {self.max_gap + 1} "
                                        f"(frames between keyframes are bridged like missed "
                                        f"detections), got {self.detect_every}")))
        if self.detect_side != 0 and self.detect_side < 32:
            out.append(("detect_side", (f"must be 0 (full frame) or >= 32, got "
                                        f"{self.detect_side}")))
        if self.workers < 0:
            out.append(("workers", f"must be >= 0, got {self.workers}"))
        if self.max_pixels < 1:
            out.append(("max_pixels", f"must be >= 1, got {self.max_pixels}"))
        out += self.track.problems()
        return out


def staging_dir(out_dir: str | os.PathLike) -> Path:
    return Path(out_dir) / STAGING


def record_path(out_dir: str | os.PathLike, task: VideoTask) -> Path:
    return staging_dir(out_dir) / "done" / f"{task.stem}.json"


def clips_path(out_dir: str | os.PathLike, task: VideoTask) -> Path:
    return staging_dir(out_dir) / "clips" / f"{task.stem}.tar"


_DETECTORS: dict[str, FaceDetector] = {}


def _detector(cfg: PrepConfig) -> FaceDetector:
    """One detector per worker process, built on first use (need not be picklable)."""
    key = json.dumps([cfg.detector, cfg.detector_args], sort_keys=True)
    if key not in _DETECTORS:
        _DETECTORS[key] = load_detector(cfg.detector, cfg.detector_args)
    return _DETECTORS[key]


def worker_init() -> None:
    """One OpenCV thread per worker process: the pool already uses the cores."""
    import cv2

    cv2.setNumThreads(1)


def _base_record(task: VideoTask) -> dict[str, Any]:
    return {"video": task.relpath, "size": task.size, "mtime_ns": task.mtime_ns,
            "speaker": task.speaker, "name": task.name}


def _notes(info: StreamInfo, audio_rate: int, audio_channels: int, cfg: PrepConfig,
           filled: int, lost: int) -> list[str]:
    notes = []
    if info.vfr:
        notes.append("vfr_resampled")
    elif info.source_fps and abs(info.source_fps - cfg.fps) > 0.005 * cfg.fps:
        notes.append("fps_converted")
    if info.rotation:
        notes.append("rotation_applied")
    if audio_rate != cfg.sample_rate:
        notes.append("audio_resampled")
    if audio_channels > 1:
        notes.append("audio_downmixed")
    if filled:
        notes.append("face_gaps_filled")
    if lost:
        notes.append("face_lost_frames_dropped")
    return notes


def process_video(task: VideoTask, cfg: PrepConfig) -> dict[str, Any]:
    """Prepare one video; returns its record (also written to ``.prep/done/`` unless the
    status is ``error``)."""
    record = _base_record(task)
    try:
        record.update(_prepare(task, cfg))
    except MediaError as exc:
        record.update(status="skipped", reason=exc.reason, detail=exc.detail)
        if exc.reason in _RETRIED:
            return record
    except NoFaceError as exc:
        record.update(status="skipped", reason="no_face", detail=str(exc).split(": ", 1)[-1])
    except Exception as exc:  # noqa: BLE001 - a bug or exotic file: report, retry next run
        record.update(status="skipped", reason="error",
                      detail=f"{type(exc).__name__}: {exc}",
                      traceback=traceback.format_exc(limit=5))
        return record
    write_json_atomic(record_path(cfg.out_dir, task), record)
    return record


def detect_faces(path: str | os.PathLike, cfg: PrepConfig, info: StreamInfo
                 ) -> list[list[Box] | None]:
    """The first pass: per constant-rate frame, the detector's boxes in full-frame pixels,
    or None where it did not run (keyframes, see ``cfg.detect_every``); fills ``info``."""
    detector = _detector(cfg)
    hinted = isinstance(detector, HaarFaceDetector) and cfg.detect_every > 1
    smallest: list[float] = []  # side of the smallest face of the previous call

    def detect(small: np.ndarray) -> list[Box]:
        boxes = None
        if hinted and smallest:  # faces seen before are still found if they shrink < 40%
            boxes = detector.detect(small, min_face=0.6 * smallest[0]) or None
        if boxes is None:  # no hint, or nothing found with it: the full search
            boxes = detector.detect(small)
        smallest[:] = [min(max(b[2], b[3]) for b in boxes)] if boxes else []
        # info holds the full size from the first frame on
        return scale_boxes(boxes, info.width / small.shape[1], info.height / small.shape[0])

    frames = iter_frames(path, cfg.fps, info=info, max_side=cfg.detect_side or None,
                         max_pixels=cfg.max_pixels)
    return detect_keyframes(frames, detect, cfg.detect_every)


def _prepare(task: VideoTask, cfg: PrepConfig) -> dict[str, Any]:
    audio = decode_audio(task.path, cfg.sample_rate)  # first: the cheap refusals
    info = StreamInfo()
    detections = detect_faces(task.path, cfg, info)
    num = info.output_frames
    # frames whose whole audio span exists
    first = max(0, math.ceil((audio.start_time - info.start_time) * cfg.fps - 1e-6))
    last = min(num, math.floor((audio.end_time - info.start_time) * cfg.fps + 1e-6))
    seconds = num / cfg.fps
    if last - first < cfg.min_frames:
        raise MediaError(task.path, "too_short",
                         f"{max(0, last - first) / cfg.fps:.2f} s of video with audio "
                         f"({seconds:.2f} s video), minimum clip {cfg.min_clip_seconds} s")
    track = track_from_detections(detections, cfg.track, source=task.path)
    spans = plan_clips(track.found, (first, last), cfg.clip_frames, cfg.min_frames)
    if not spans:
        runs = [b - a for a, b in track.runs()]
        raise MediaError(task.path, "too_short",
                         f"no face run of {cfg.min_clip_seconds} s with audio (longest "
                         f"{max(runs, default=0) / cfg.fps:.2f} s; face in "
                         f"{int(track.found.sum())}/{num} frames)")
    samples_per_frame = cfg.sample_rate // cfg.fps
    keys: list[str] = []
    path = clips_path(cfg.out_dir, task)
    import webdataset as wds

    with atomic_path(path) as tmp:
        with wds.TarWriter(str(tmp), mtime=0) as sink:
            span_iter = iter(spans)
            span = next(span_iter)
            crops: list[np.ndarray] = []
            for i, frame in enumerate(iter_frames(task.path, cfg.fps, max_pixels=cfg.max_pixels)):
                if span is None:
                    break
                if span.start <= i < span.stop:
                    crops.append(crop_and_resize(frame, track.boxes[i], cfg.image_size))
                if i + 1 == span.stop:
                    clip = f"{task.name}-{span.index:03d}"
                    start = info.start_time + span.start / cfg.fps
                    sound = audio.span(start, span.num_frames * samples_per_frame)
                    key = f"{task.speaker}_{clip}"
                    sink.write(encode_sample(
                        key, np.stack(crops), sound, fps=cfg.fps, sample_rate=cfg.sample_rate,
                        speaker=task.speaker, clip=clip, source=task.relpath,
                        extra_meta={"start_frame": span.start,
                                    "start_seconds": round(span.start / cfg.fps, 4),
                                    "detector": cfg.detector or "haar",
                                    "detected_fraction": _fraction(
                                        track, span.start, span.stop)}))
                    keys.append(key)
                    crops = []
                    span = next(span_iter, None)
        if len(keys) != len(spans):
            raise RuntimeError(f"{task.path}: second decoding pass gave fewer frames than the "
                               f"first ({len(keys)} of {len(spans)} clips)")
        digest = sha256_file(tmp)
    in_range = np.zeros(num, dtype=bool)
    in_range[first:last] = True
    kept = sum(s.num_frames for s in spans)
    filled = int((track.found & track.checked & ~track.detected).sum())
    lost = int((in_range & ~track.found).sum())
    return {"status": "kept", "clips": keys, "frames": kept, "video_frames": num,
            "detector_frames": int(track.checked.sum()),
            "clips_sha256": digest, "seconds": round(seconds, 3),
            "source_fps": round(info.source_fps, 3), "vfr": info.vfr,
            "audio_rate": audio.source_rate, "audio_channels": audio.source_channels,
            "notes": _notes(info, audio.source_rate, audio.source_channels, cfg, filled, lost)}


def _fraction(track: FaceTrack, start: int, stop: int) -> float:
    """Share of the checked frames in [start, stop) where the detector found the face."""
    checked = int(track.checked[start:stop].sum())
    return round(int(track.detected[start:stop].sum()) / checked, 4) if checked else 0.0


def config_digest(cfg: PrepConfig) -> str:
    return hashlib.sha256(json.dumps(cfg.fingerprint(), sort_keys=True).encode()).hexdigest()


def config_record(cfg: PrepConfig) -> dict[str, Any]:
    return {"fingerprint": cfg.fingerprint(), "digest": config_digest(cfg)}


__all__ = [
    "SKIP_REASONS",
    "SPLIT_MODES",
    "PrepConfig",
    "clips_path",
    "config_digest",
    "config_record",
    "detect_faces",
    "process_video",
    "record_path",
    "staging_dir",
    "worker_init",
]
