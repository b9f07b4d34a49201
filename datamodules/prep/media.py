"""Decoding a user's video into constant-rate RGB frames and 16 kHz mono audio (PyAV).

PyAV bundles FFmpeg's libraries, so anything FFmpeg reads works without a system ffmpeg.

Frame rate: output frames are chosen by presentation time, not by decode order. Output
frame ``i`` sits at ``t0 + i / fps`` (``t0`` = first frame's timestamp) and shows the source
frame whose timestamp is nearest to it (FFmpeg's ``fps`` filter with ``round=near``): a 30 fps
source drops every sixth frame, a 20 fps one repeats every fourth, and variable-frame-rate
input (phone recordings, screen captures) becomes constant-rate the same way, with the
timing kept right. Variable rate is detected (inter-frame intervals differing by more than
20%) and reported, never refused.

Audio: the first audio stream, resampled and down-mixed to mono float32 at ``sample_rate``
by PyAV's ``av.AudioResampler`` (FFmpeg's libswresample, its default filter), aligned to
the video by the streams' start timestamps.

Rotation: a display matrix (phones store portrait video as rotated landscape) is applied,
as FFmpeg's player would, so faces are upright for the detector.

Frames are streamed (:func:`iter_frames`) so a long 1080p video never has to fit in memory;
:func:`decode_video` collects them for short inputs (inference, tests).
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

import av
import numpy as np

from datamodules.sample_limits import MAX_SOURCE_PIXELS, OversizedSample, check_source_pixels
from datamodules.video_frames import frame_to_rgb24

VFR_SPREAD = 1.2  # max/min inter-frame interval above which a stream counts as variable-rate


class MediaError(ValueError):
    """A file that cannot be used; ``reason`` is the prep report's category
    (``undecodable``, ``no_audio`` or ``too_large``) and the message names the file."""

    def __init__(self, path: str | os.PathLike, reason: str, detail: str) -> None:
        super().__init__(f"{path}: {detail}")
        self.path = str(path)
        self.reason = reason
        self.detail = detail


@dataclass
class StreamInfo:
    """What the video stream turned out to be, filled while frames are read."""

    source_fps: float = 0.0          # the container's average rate (0 when unknown)
    width: int = 0
    height: int = 0
    source_frames: int = 0           # frames decoded
    output_frames: int = 0           # constant-rate frames produced
    start_time: float = 0.0          # timestamp of the first frame, seconds
    duration: float = 0.0            # output_frames / fps
    vfr: bool = False                # variable frame rate detected (resampled by timestamps)
    rotation: int = 0                # display rotation applied (degrees counterclockwise)
    intervals: list[float] = field(default_factory=list, repr=False)

    def finish(self) -> None:
        steps = [d for d in self.intervals if d > 0]
        if len(steps) >= 3:
            self.vfr = max(steps) / min(steps) > VFR_SPREAD
        self.intervals = []


def _open(path: str | os.PathLike) -> av.container.InputContainer:
    if not Path(path).is_file():
        raise MediaError(path, "undecodable", "no such file")
    try:
        return av.open(str(path), mode="r")
    except (av.FFmpegError, OSError, ValueError, UnicodeDecodeError) as exc:
        raise MediaError(path, "undecodable", f"FFmpeg cannot open it ({exc})") from exc


def _to_rgb(frame: av.VideoFrame, max_side: int | None) -> np.ndarray:
    """The frame as uint8 RGB, shrunk by libswscale (area filter) so its longer side is at
    most ``max_side``: far cheaper than converting the full frame and resizing it after."""
    w, h = frame.width, frame.height
    if max_side is None or max(w, h) <= max_side:
        return frame_to_rgb24(frame)
    scale = max_side / max(w, h)
    return frame_to_rgb24(frame, width=max(1, round(w * scale)),
                          height=max(1, round(h * scale)), interpolation="AREA")


def iter_frames(path: str | os.PathLike, fps: int = 25, *, max_seconds: float | None = None,
                info: StreamInfo | None = None, max_side: int | None = None,
                max_pixels: int = MAX_SOURCE_PIXELS) -> Iterator[np.ndarray]:
    """uint8 RGB frames (H, W, 3) at a constant ``fps``, picked by presentation time (see the
    module docstring). ``info``, when given, is filled in as frames are read (``vfr`` and the
    totals are final once the iterator is exhausted). ``max_side``: shrink frames so their
    longer side is at most this (for face detection; ``info`` keeps the full size). Raises
    :class:`MediaError` (``undecodable``) when the file has no readable video stream or no
    frame at all, and (``too_large``) when its frames are above ``max_pixels``: from the
    stream header before any frame is decoded, and per frame (headers can lie)."""
    info = info if info is not None else StreamInfo()
    container = _open(path)
    try:
        if not container.streams.video:
            raise MediaError(path, "undecodable", "no video stream (streams: "
                             f"{[s.type for s in container.streams]})")
        stream = container.streams.video[0]
        try:
            check_source_pixels(stream.codec_context.width, stream.codec_context.height,
                                "the video", max_pixels)
        except OversizedSample as exc:
            raise MediaError(path, "too_large", str(exc)) from exc
        stream.thread_type = "AUTO"
        info.source_fps = float(stream.average_rate) if stream.average_rate else 0.0
        fallback_step = 1.0 / info.source_fps if info.source_fps > 0 else 1.0 / fps
        step = 1.0 / fps
        limit = float("inf") if max_seconds is None else max_seconds
        prev: np.ndarray | None = None
        prev_t = 0.0
        out = 0
        try:
            for frame in container.decode(stream):
                t = float(frame.time) if frame.time is not None \
                    else info.source_frames * fallback_step
                if prev is not None and t <= prev_t:
                    continue  # a duplicate or out-of-order timestamp: keep the first
                if frame.width * frame.height > max_pixels:
                    raise MediaError(path, "too_large", f"a frame is {frame.width}x"
                                     f"{frame.height}, above the limit of {max_pixels} pixels")
                image = _to_rgb(frame, max_side)
                turns = round((frame.rotation or 0) / 90) % 4  # phone videos: display matrix
                if turns:
                    image = np.ascontiguousarray(np.rot90(image, turns))  # counterclockwise
                    info.rotation = 90 * turns
                if prev is None:
                    info.start_time = t
                    info.width, info.height = ((frame.height, frame.width) if turns % 2
                                               else (frame.width, frame.height))
                else:
                    info.intervals.append(t - prev_t)
                    midpoint = (prev_t + t) / 2 - info.start_time + 1e-6  # ties: earlier
                    while out * step <= midpoint and out * step < limit:
                        yield prev
                        out += 1
                        info.output_frames = out
                    if out * step >= limit:
                        break
                info.source_frames += 1
                prev, prev_t = image, t
        except av.FFmpegError as exc:
            if prev is None:
                raise MediaError(path, "undecodable", f"video decoding failed ({exc})") from exc
            # A damaged tail: keep what decoded (the frames so far are fine).
        if prev is None:
            raise MediaError(path, "undecodable", "the video stream has no decodable frame")
        if out * step < limit:
            steps = info.intervals[-8:]
            last = float(np.median(steps)) if steps else fallback_step
            end = prev_t - info.start_time + last
            while out * step < end - 1e-6 and out * step < limit:
                yield prev
                out += 1
                info.output_frames = out
        info.duration = out / fps
        info.finish()
    finally:
        container.close()


@dataclass
class DecodedVideo:
    """Constant-rate frames (T, H, W, 3) uint8 at ``fps`` plus what the stream was."""

    frames: np.ndarray
    fps: int
    info: StreamInfo


def decode_video(path: str | os.PathLike, fps: int = 25, *, max_seconds: float | None = None,
                 max_pixels: int = MAX_SOURCE_PIXELS) -> DecodedVideo:
    """All constant-rate frames of ``path`` in memory (see :func:`iter_frames`)."""
    info = StreamInfo()
    frames = list(iter_frames(path, fps, max_seconds=max_seconds, info=info,
                              max_pixels=max_pixels))
    return DecodedVideo(np.stack(frames), fps, info)


@dataclass
class DecodedAudio:
    """float32 mono samples in [-1, 1] at ``sample_rate``; ``start_time`` is the first
    sample's timestamp (seconds, the container's clock, comparable to the video's)."""

    samples: np.ndarray
    sample_rate: int
    start_time: float
    source_rate: int
    source_channels: int

    @property
    def end_time(self) -> float:
        return self.start_time + self.samples.size / self.sample_rate

    def span(self, start: float, num_samples: int) -> np.ndarray:
        """``num_samples`` samples from time ``start`` (container clock); zeros where the
        audio does not reach."""
        first = round((start - self.start_time) * self.sample_rate)
        out = np.zeros(num_samples, dtype=np.float32)
        lo, hi = max(first, 0), min(first + num_samples, self.samples.size)
        if hi > lo:
            out[lo - first:hi - first] = self.samples[lo:hi]
        return out


def has_audio(path: str | os.PathLike) -> bool:
    container = _open(path)
    try:
        return bool(container.streams.audio)
    finally:
        container.close()


def resampled_audio(container: av.container.InputContainer, stream: av.audio.stream.AudioStream,
                    sample_rate: int) -> Iterator[tuple[float | None, np.ndarray]]:
    """(timestamp of the source frame or None, float32 mono chunk at ``sample_rate``) as
    libswresample produces them, flushed at the end. Shared by prep and `lipmem infer`'s
    streaming input; FFmpeg errors propagate."""
    resampler = av.AudioResampler(format="flt", layout="mono", rate=int(sample_rate))
    for frame in container.decode(stream):
        time = float(frame.time) if frame.time is not None else None
        for out in resampler.resample(frame):
            yield time, out.to_ndarray().reshape(-1).astype(np.float32, copy=False)
    for out in resampler.resample(None):
        yield None, out.to_ndarray().reshape(-1).astype(np.float32, copy=False)


def decode_audio(path: str | os.PathLike, sample_rate: int = 16000, *,
                 max_seconds: float | None = None) -> DecodedAudio:
    """The first audio stream, mono float32 at ``sample_rate`` via ``av.AudioResampler``
    (libswresample). Raises :class:`MediaError` ``no_audio`` when there is no audio stream
    or it decodes to nothing, ``undecodable`` when it cannot be read."""
    container = _open(path)
    try:
        if not container.streams.audio:
            raise MediaError(path, "no_audio", "no audio stream (streams: "
                             f"{[s.type for s in container.streams]})")
        stream = container.streams.audio[0]
        source_rate = int(stream.rate or 0)
        channels = int(getattr(stream, "channels", 0) or 0)
        chunks: list[np.ndarray] = []
        start: float | None = None
        total, limit = 0, None if max_seconds is None else int(max_seconds * sample_rate)
        try:
            for time, chunk in resampled_audio(container, stream, sample_rate):
                if start is None and time is not None:
                    start = time
                chunks.append(chunk)
                total += chunk.size
                if limit is not None and total >= limit:
                    break
        except av.FFmpegError as exc:
            if not chunks:
                raise MediaError(path, "undecodable", f"audio decoding failed ({exc})") from exc
    finally:
        container.close()
    samples = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if limit is not None:
        samples = samples[:limit]
    if samples.size == 0:
        raise MediaError(path, "no_audio", "the audio stream decodes to no samples")
    return DecodedAudio(np.clip(samples, -1.0, 1.0), int(sample_rate), start or 0.0,
                        source_rate, channels)
