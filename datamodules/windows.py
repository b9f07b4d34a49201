"""Cutting training/evaluation windows from a decoded clip.

A window is ``frames_per_window`` (T) consecutive target frames ``i .. i+T-1`` plus, for
each of them, a mel window of ``audio_seconds`` centred on that frame's centre time
``(k + 0.5) / fps`` (method: the frame's interval lies in the middle of the audio
interval, and audio/frame duration >= 5, claim 8). The mel spectrogram is computed once
per clip and sliced; mel columns outside the clip are the silence value. Optionally a
reference window (T frames from the same clip, at least ``ref_min_gap`` frames away) and an
audio shift (audio centred on frame ``k + shift``, wrapping inside the clip) for evaluating
with audio from another moment.
"""

from __future__ import annotations

import math
import zlib
from typing import Any

import numpy as np
import torch

from datamodules.audio_features import MEL_FRAMES_PER_SECOND, SAMPLE_RATE, SILENCE, LogMel
from datamodules.sample_format import Clip, SampleError

MIN_AUDIO_FRAME_RATIO = 5.0


def check_audio_ratio(audio_seconds: float, fps: float, min_ratio: float = MIN_AUDIO_FRAME_RATIO
                      ) -> float:
    """Return audio/frame duration; ValueError naming ``audio_seconds`` when below ``min_ratio``."""
    if not isinstance(audio_seconds, (int, float)) or isinstance(audio_seconds, bool) \
            or not audio_seconds > 0:
        raise ValueError(f"audio_seconds={audio_seconds!r}: must be a positive number of seconds")
    if not isinstance(fps, (int, float)) or isinstance(fps, bool) or not fps > 0:
        raise ValueError(f"fps={fps!r}: must be positive")
    ratio = float(audio_seconds) * float(fps)
    if ratio < min_ratio - 1e-9:
        raise ValueError(
            f"audio_seconds={audio_seconds!r}: the audio window must last at least {min_ratio:g} "
            f"frame durations (method claim 8); at fps={fps} it is {ratio:.3g} frames; use "
            f"audio_seconds >= {min_ratio / fps:.4g}")
    return ratio


def mel_frames_for(audio_seconds: float, mel_fps: float = MEL_FRAMES_PER_SECOND) -> int:
    """Number of mel columns in an ``audio_seconds`` window (0.2 s -> 16)."""
    return max(1, math.floor(audio_seconds * mel_fps + 0.5))


def _stable_seed(*parts: Any) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


class WindowCutter:
    """Validates clips and cuts windows from them; one per pipeline (holds the LogMel)."""

    def __init__(self, *, image_size: int = 96, fps: int = 25, sample_rate: int = SAMPLE_RATE,
                 audio_seconds: float = 0.2, frames_per_window: int = 1,
                 use_reference: bool = False, ref_min_gap: int = 5, audio_shift_frames: int = 0,
                 logmel: LogMel | None = None) -> None:
        check_audio_ratio(audio_seconds, fps)
        for name, value in (("image_size", image_size), ("fps", fps),
                            ("sample_rate", sample_rate), ("frames_per_window", frames_per_window)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r}: must be a positive integer")
        if isinstance(ref_min_gap, bool) or not isinstance(ref_min_gap, int) or ref_min_gap < 1:
            raise ValueError(f"ref_min_gap={ref_min_gap!r}: must be an integer >= 1")
        if isinstance(audio_shift_frames, bool) or not isinstance(audio_shift_frames, int):
            raise ValueError(f"audio_shift_frames={audio_shift_frames!r}: must be an integer")
        self.image_size = image_size
        self.fps = fps
        self.sample_rate = sample_rate
        self.audio_seconds = float(audio_seconds)
        self.frames_per_window = frames_per_window
        self.use_reference = use_reference
        self.ref_min_gap = ref_min_gap
        self.audio_shift_frames = audio_shift_frames
        self.logmel = logmel if logmel is not None else LogMel(sample_rate=sample_rate)
        if self.logmel.sample_rate != sample_rate:
            raise ValueError(f"logmel sample_rate {self.logmel.sample_rate} != sample_rate "
                             f"{sample_rate}")
        self.mel_fps = self.logmel.frames_per_second
        self.mel_frames = mel_frames_for(self.audio_seconds, self.mel_fps)
        self.mel_bins = self.logmel.n_mels

    # ------------------------------------------------------------------ clip checks
    def check(self, clip: Clip) -> None:
        """Raise SampleError (naming the clip) when the clip cannot be cut as configured."""
        if clip.sample_rate != self.sample_rate:
            raise SampleError(clip.key, f"sample rate {clip.sample_rate} Hz, expected "
                                        f"{self.sample_rate} Hz (resampling is not supported)")
        if clip.fps != self.fps:
            raise SampleError(clip.key, f"fps {clip.fps}, expected {self.fps}")
        frames = clip.frames
        if frames.ndim != 4 or frames.shape[1:] != (self.image_size, self.image_size, 3):
            raise SampleError(clip.key, f"frames have shape {tuple(frames.shape)}, expected "
                                        f"(T, {self.image_size}, {self.image_size}, 3)")
        if frames.dtype != np.uint8:
            raise SampleError(clip.key, f"frames dtype {frames.dtype}, expected uint8")
        n = clip.num_frames
        if n < self.frames_per_window:
            raise SampleError(clip.key, f"{n} frames, fewer than frames_per_window="
                                        f"{self.frames_per_window}")
        samples_per_frame = self.sample_rate / self.fps
        needed = n * samples_per_frame
        if clip.audio.ndim != 1 or clip.audio.shape[0] < needed - samples_per_frame:
            raise SampleError(clip.key, f"audio has {clip.audio.shape[0]} samples, the {n} frames "
                                        f"need {needed:.0f} (tolerance one frame)")
        if clip.mouth is not None and clip.mouth.shape != (n, 3):
            raise SampleError(clip.key, f"mouth track shape {clip.mouth.shape}, expected ({n}, 3)")
        if len(self.valid_starts(n)) == 0:
            raise SampleError(clip.key, f"{n} frames are too few for a reference window at least "
                                        f"ref_min_gap={self.ref_min_gap} frames away")

    def valid_starts(self, num_frames: int) -> np.ndarray:
        """First-frame indices a window can start at (with a possible reference, if used)."""
        last = num_frames - self.frames_per_window
        starts = np.arange(last + 1)
        if self.use_reference:
            gap = self.ref_min_gap
            starts = starts[(starts >= gap) | (last - starts >= gap)]
        return starts

    # ------------------------------------------------------------------ audio
    def clip_mel(self, clip: Clip) -> np.ndarray:
        """(n_mels, F) normalised log-mel of the whole clip, column j centred at j / mel_fps s."""
        with torch.no_grad():
            mel = self.logmel(torch.from_numpy(np.ascontiguousarray(clip.audio, dtype=np.float32)))
        return mel.numpy()

    def mel_window(self, mel: np.ndarray, center_time: float) -> np.ndarray:
        """(n_mels, mel_frames) columns centred on ``center_time`` seconds; silence outside."""
        m = self.mel_frames
        first = math.floor(center_time * self.mel_fps - (m - 1) / 2.0 + 0.5)
        out = np.full((mel.shape[0], m), SILENCE, dtype=np.float32)
        lo, hi = max(first, 0), min(first + m, mel.shape[1])
        if hi > lo:
            out[:, lo - first:hi - first] = mel[:, lo:hi]
        return out

    def audio_frame(self, frame: int, num_frames: int) -> int:
        """The frame whose audio drives target ``frame`` (shifted, wrapping inside the clip)."""
        return (frame + self.audio_shift_frames) % num_frames

    # ------------------------------------------------------------------ windows
    def reference_start(self, num_frames: int, start: int, rng: np.random.Generator) -> int:
        last = num_frames - self.frames_per_window
        candidates = np.arange(last + 1)
        candidates = candidates[np.abs(candidates - start) >= self.ref_min_gap]
        if len(candidates) == 0:
            raise ValueError(f"no reference start at least {self.ref_min_gap} frames from {start}")
        return int(candidates[rng.integers(len(candidates))])

    def window(self, clip: Clip, mel: np.ndarray, start: int,
               rng: np.random.Generator | None = None) -> dict[str, Any]:
        """One window starting at target frame ``start``; ``rng`` picks the reference (a
        per-clip deterministic one when None)."""
        t = self.frames_per_window
        n = clip.num_frames
        if not 0 <= start <= n - t:
            raise ValueError(f"window start {start} outside [0, {n - t}] for clip {clip.key!r}")
        frames = np.ascontiguousarray(clip.frames[start:start + t].transpose(0, 3, 1, 2))
        mels = np.stack([
            self.mel_window(mel, (self.audio_frame(k, n) + 0.5) / self.fps)
            for k in range(start, start + t)
        ])[:, None]
        out: dict[str, Any] = {"key": clip.key, "frame": int(start), "face": frames, "mel": mels}
        if self.use_reference:
            if rng is None:
                rng = np.random.default_rng(_stable_seed(clip.key, start))
            r = self.reference_start(n, start, rng)
            out["ref"] = np.ascontiguousarray(clip.frames[r:r + t].transpose(0, 3, 1, 2))
            out["ref_frame"] = r
        out["mouth"] = (None if clip.mouth is None
                        else np.asarray(clip.mouth[start:start + t], dtype=np.float32))
        return out

    def random_starts(self, num_frames: int, count: int, rng: np.random.Generator) -> np.ndarray:
        """``count`` random starts, distinct while the clip has enough of them."""
        starts = self.valid_starts(num_frames)
        replace = count > len(starts)
        return rng.choice(starts, size=count, replace=replace)

    def even_starts(self, num_frames: int, count: int) -> np.ndarray:
        """Up to ``count`` evenly spaced distinct starts (deterministic)."""
        starts = self.valid_starts(num_frames)
        picks = np.unique(np.floor(np.linspace(0, len(starts) - 1, count) + 0.5).astype(int))
        return starts[picks]

    def cut(self, clip: Clip, count: int, rng: np.random.Generator | None = None,
            check: bool = True) -> list[dict[str, Any]]:
        """Validate ``clip`` and cut ``count`` windows: random starts with ``rng``, evenly
        spaced deterministic ones without."""
        if check:
            self.check(clip)
        mel = self.clip_mel(clip)
        if rng is None:
            return [self.window(clip, mel, int(s)) for s in self.even_starts(clip.num_frames, count)]
        return [self.window(clip, mel, int(s), rng)
                for s in self.random_starts(clip.num_frames, count, rng)]
