"""Writing a video with its audio (H.264 + AAC in mp4 by default) through PyAV.

Frames and audio may arrive in pieces (streaming inference writes each frame as it is
generated), so the writer is incremental; the file is written under a temporary name in the
same folder and renamed on a clean close, so a killed job never leaves an mp4 that looks
finished.
"""

from __future__ import annotations

import contextlib
import os
from fractions import Fraction
from pathlib import Path
from types import TracebackType

import av
import numpy as np


class VideoWriter:
    """``with VideoWriter(path, fps=25, sample_rate=16000) as w: w.add_frames(...);
    w.add_audio(...)``; audio is float in [-1, 1], mono."""

    def __init__(self, path: str | os.PathLike, *, fps: int, sample_rate: int | None = None,
                 video_codec: str = "libx264", audio_codec: str = "aac", crf: int = 18,
                 preset: str = "veryfast", audio_bitrate: int = 128_000,
                 container_format: str | None = None, threads: int | None = None) -> None:
        self.path = Path(path)
        if fps <= 0:
            raise ValueError(f"fps={fps}: must be positive")
        self.fps = int(fps)
        self.sample_rate = sample_rate
        self.video_codec, self.audio_codec = video_codec, audio_codec
        self.crf, self.preset, self.audio_bitrate = crf, preset, audio_bitrate
        self.threads = threads  # encoder threads (None: FFmpeg's choice, one per core)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
        fmt = container_format or (self.path.suffix.lstrip(".") or "mp4")
        self._container = av.open(str(self._tmp), mode="w", format=fmt)
        self._video: av.video.stream.VideoStream | None = None
        self._audio: av.audio.stream.AudioStream | None = None
        if sample_rate is not None:
            self._audio = self._container.add_stream(audio_codec, rate=int(sample_rate))
            self._audio.layout = "mono"
            if audio_bitrate:
                self._audio.bit_rate = audio_bitrate
        self._audio_pts = 0
        self._pending_audio: list[np.ndarray] = []  # audio that came before the first frame
        self.frames_written = 0
        self.audio_samples_written = 0
        self._closed = False

    def _open_video(self, height: int, width: int) -> av.video.stream.VideoStream:
        if height % 2 or width % 2:
            raise ValueError(f"{self.video_codec} yuv420p needs even frame sides, got "
                             f"{width}x{height}")
        stream = self._container.add_stream(self.video_codec, rate=Fraction(self.fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        if self.video_codec == "libx264":
            stream.options = {"crf": str(self.crf), "preset": self.preset}
        if self.threads is not None:
            stream.codec_context.thread_count = self.threads
        return stream

    def add_frames(self, frames: np.ndarray) -> None:
        """uint8 (N, H, W, 3) or (H, W, 3) RGB frames, appended in order."""
        frames = frames[None] if frames.ndim == 3 else frames
        if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
            raise ValueError(f"frames must be uint8 (N, H, W, 3), got {frames.dtype} "
                             f"{frames.shape}")
        if self._video is None:
            # every stream must exist before the first packet is muxed (the header is
            # written then): audio that arrived earlier waited for this
            self._video = self._open_video(frames.shape[1], frames.shape[2])
            pending, self._pending_audio = self._pending_audio, []
            for chunk in pending:
                self._encode_audio(chunk)
        elif (frames.shape[1], frames.shape[2]) != (self._video.height, self._video.width):
            raise ValueError(f"frame size {frames.shape[2]}x{frames.shape[1]} differs from the "
                             f"stream's {self._video.width}x{self._video.height}")
        for image in frames:
            frame = av.VideoFrame.from_ndarray(np.ascontiguousarray(image), format="rgb24")
            frame.pts = self.frames_written
            frame.time_base = Fraction(1, self.fps)
            for packet in self._video.encode(frame):
                self._container.mux(packet)
            self.frames_written += 1

    def add_audio(self, audio: np.ndarray) -> None:
        """Mono float audio in [-1, 1] at ``sample_rate``, appended in order."""
        if self._audio is None:
            raise ValueError("this writer was opened without sample_rate: no audio stream")
        audio = np.asarray(audio, dtype=np.float32).reshape(-1)
        if audio.size == 0:
            return
        if self._video is None:
            self._pending_audio.append(audio.copy())
            return
        self._encode_audio(audio)

    def _encode_audio(self, audio: np.ndarray) -> None:
        frame = av.AudioFrame.from_ndarray(np.clip(audio, -1.0, 1.0)[None], format="fltp",
                                           layout="mono")
        frame.sample_rate = int(self.sample_rate)
        frame.pts = self._audio_pts
        frame.time_base = Fraction(1, int(self.sample_rate))
        self._audio_pts += audio.size
        for packet in self._audio.encode(frame):
            self._container.mux(packet)
        self.audio_samples_written += audio.size

    def close(self) -> Path:
        """Flush the encoders and move the finished file into place."""
        if self._closed:
            return self.path
        if self.frames_written == 0:
            self.abort()
            raise ValueError(f"{self.path}: no video frames were written")
        for stream in (self._video, self._audio):
            if stream is not None:
                for packet in stream.encode(None):
                    self._container.mux(packet)
        self._container.close()
        self._closed = True
        self._tmp.chmod(0o644)
        os.replace(self._tmp, self.path)
        return self.path

    def abort(self) -> None:
        """Drop the partial file."""
        if not self._closed:
            self._closed = True
            with contextlib.suppress(av.FFmpegError, OSError, ValueError):
                self._container.close()  # a broken stream may fail to close; the file goes
        self._tmp.unlink(missing_ok=True)

    def __enter__(self) -> VideoWriter:  # noqa: PYI034 - no typing.Self on Python 3.10
        return self

    def __exit__(self, exc_type: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if exc_type is None:
            self.close()
        else:
            self.abort()


def write_video(path: str | os.PathLike, frames: np.ndarray, fps: int,
                audio: np.ndarray | None = None, sample_rate: int | None = None,
                **kwargs: object) -> Path:
    """One-shot: frames (N, H, W, 3) uint8 plus optional mono audio, muxed."""
    if (audio is None) != (sample_rate is None):
        raise ValueError("pass audio and sample_rate together")
    with VideoWriter(path, fps=fps, sample_rate=sample_rate, **kwargs) as writer:
        writer.add_frames(frames)
        if audio is not None:
            writer.add_audio(audio)
    return Path(path)
