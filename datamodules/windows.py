"""Cutting training/evaluation windows from a decoded clip.

A window is ``frames_per_window`` (T) consecutive target frames ``i .. i+T-1`` plus, for
each of them, a mel window of ``audio_seconds`` centred on that frame's centre time
``(k + 0.5) / fps`` (method: the frame's interval lies in the middle of the audio
interval, and audio/frame duration >= 5, claim 8). The mel spectrogram is computed once
per clip and sliced; mel columns outside the clip are the silence value. Optionally a
reference window (T frames from the same clip, at least ``ref_min_gap`` frames away) and an
audio shift (audio centred on frame ``k + shift``, wrapping inside the clip) for evaluating
with audio from another moment. A sync expert also asks for an off-sync mel per window
(``mel_off``: the same frames' audio taken ``off_sync_min_shift..off_sync_max_shift``
frames away, no wrapping), its negative pairs.
"""

from __future__ import annotations

import dataclasses
import math
import zlib
from typing import Any

import numpy as np
import torch

from datamodules.audio_features import MEL_FRAMES_PER_SECOND, SAMPLE_RATE, SILENCE, LogMel
from datamodules.sample_format import Clip, SampleError
from datamodules.sample_limits import DEFAULT_MAX_CLIP_SECONDS, OversizedSample, SampleLimits

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


def resample_audio(audio: np.ndarray, rate: int, target: int) -> np.ndarray:
    """Polyphase resampling (``scipy.signal.resample_poly``, Kaiser-windowed FIR
    anti-aliasing) from ``rate`` to ``target`` Hz; float32."""
    from scipy.signal import resample_poly

    g = math.gcd(int(rate), int(target))
    return resample_poly(audio, int(target) // g, int(rate) // g).astype(np.float32)


def resize_frames(frames: np.ndarray, size: int) -> np.ndarray:
    """(T, S, S, 3) uint8 -> (T, size, size, 3) with OpenCV (area when shrinking)."""
    import cv2

    interp = cv2.INTER_AREA if frames.shape[1] > size else cv2.INTER_LINEAR
    return np.stack([cv2.resize(f, (size, size), interpolation=interp) for f in frames])


def _stable_seed(*parts: Any) -> int:
    return zlib.crc32("|".join(str(p) for p in parts).encode())


class WindowCutter:
    """Validates clips and cuts windows from them; one per pipeline (holds the LogMel)."""

    def __init__(self, *, image_size: int = 96, fps: int = 25, sample_rate: int = SAMPLE_RATE,
                 audio_seconds: float = 0.2, frames_per_window: int = 1,
                 use_reference: bool = False, ref_min_gap: int = 5, audio_shift_frames: int = 0,
                 off_sync_min_shift: int = 0, off_sync_max_shift: int = 15,
                 logmel: LogMel | None = None, skip_silent_audio: bool = True,
                 length_tolerance_frames: float = 1.0,
                 max_clip_seconds: float = DEFAULT_MAX_CLIP_SECONDS) -> None:
        check_audio_ratio(audio_seconds, fps)
        numeric = isinstance(length_tolerance_frames, (int, float)) \
            and not isinstance(length_tolerance_frames, bool)
        if not (numeric and length_tolerance_frames >= 0):  # NaN fails too
            raise ValueError(f"length_tolerance_frames={length_tolerance_frames!r}: must be a "
                             "number of frames >= 0")
        for name, value in (("image_size", image_size), ("fps", fps),
                            ("sample_rate", sample_rate), ("frames_per_window", frames_per_window)):
            if isinstance(value, bool) or not isinstance(value, int) or value <= 0:
                raise ValueError(f"{name}={value!r}: must be a positive integer")
        if isinstance(ref_min_gap, bool) or not isinstance(ref_min_gap, int) or ref_min_gap < 1:
            raise ValueError(f"ref_min_gap={ref_min_gap!r}: must be an integer >= 1")
        if isinstance(audio_shift_frames, bool) or not isinstance(audio_shift_frames, int):
            raise ValueError(f"audio_shift_frames={audio_shift_frames!r}: must be an integer")
        for name, value in (("off_sync_min_shift", off_sync_min_shift),
                            ("off_sync_max_shift", off_sync_max_shift)):
            if isinstance(value, bool) or not isinstance(value, int) or value < 0:
                raise ValueError(f"{name}={value!r}: must be an integer >= 0")
        if off_sync_min_shift and off_sync_max_shift < off_sync_min_shift:
            raise ValueError(f"off_sync_max_shift={off_sync_max_shift!r}: must be >= "
                             f"off_sync_min_shift={off_sync_min_shift}")
        self.image_size = image_size
        self.fps = fps
        self.sample_rate = sample_rate
        self.audio_seconds = float(audio_seconds)
        self.frames_per_window = frames_per_window
        self.use_reference = use_reference
        self.ref_min_gap = ref_min_gap
        self.audio_shift_frames = audio_shift_frames
        self.skip_silent_audio = bool(skip_silent_audio)
        self.length_tolerance_frames = float(length_tolerance_frames)
        self.off_sync_min_shift = off_sync_min_shift
        self.off_sync_max_shift = off_sync_max_shift
        # what a sample may hold before it is decoded in full, resized or resampled
        self.limits = SampleLimits.for_clips(image_size, fps, max_clip_seconds)
        self.logmel = logmel if logmel is not None else LogMel(sample_rate=sample_rate)
        if self.logmel.sample_rate != sample_rate:
            raise ValueError(f"logmel sample_rate {self.logmel.sample_rate} != sample_rate "
                             f"{sample_rate}")
        self.mel_fps = self.logmel.frames_per_second
        self.mel_frames = mel_frames_for(self.audio_seconds, self.mel_fps)
        self.mel_bins = self.logmel.n_mels

    # ------------------------------------------------------------------ clip checks
    def prepare(self, clip: Clip) -> Clip:
        """The clip repaired to the configuration where that is well-defined, else
        SampleError (with its :mod:`datamodules.data_issues` category). Repairs applied are
        appended to ``clip.repairs``:

        - audio at another sample rate: resampled (``scipy.signal.resample_poly``);
        - grayscale frames ((T, H, W) or (T, H, W, 1)): replicated to RGB;
        - square frames of another size: resized with OpenCV (``INTER_AREA`` down,
          ``INTER_LINEAR`` up): the same face crop at another resolution. Non-square frames
          are a different crop and are skipped;
        - audio within ``length_tolerance_frames`` frames of ``num_frames * sample_rate /
          fps`` samples: trimmed or zero-padded to exactly that; further off: skipped.

        Over :attr:`limits` (``oversized``): nothing is resized or resampled.

        Never repaired: NaN/inf audio, another fps, empty clips, and (with
        ``skip_silent_audio``) a clip whose audio is exactly zero throughout: a silent
        *stretch* is legal data, an entire digitally-zero clip is almost always a broken
        export, and it would teach "mouth closed" for every frame.
        """
        key = clip.key
        repairs = list(clip.repairs)
        if clip.fps != self.fps:
            raise SampleError(key, f"fps {clip.fps}, expected {self.fps}", "wrong_fps")
        frames = np.asarray(clip.frames)
        if frames.dtype != np.uint8:
            raise SampleError(key, f"frames dtype {frames.dtype}, expected uint8", "undecodable")
        if frames.ndim == 3 or (frames.ndim == 4 and frames.shape[-1] == 1):
            frames = np.repeat(frames.reshape(*frames.shape[:3], 1), 3, axis=-1)
            repairs.append("grayscale_frames")
        if frames.ndim != 4 or frames.shape[-1] != 3:
            raise SampleError(key, f"frames have shape {tuple(frames.shape)}, expected "
                                   "(T, H, W, 3) or grayscale (T, H, W)", "wrong_frame_size")
        n = int(frames.shape[0])
        if n == 0:
            raise SampleError(key, "clip has no frames", "empty_clip")
        if frames.shape[1] != frames.shape[2]:
            raise SampleError(key, f"frames are {frames.shape[2]}x{frames.shape[1]}, expected "
                                   f"square {self.image_size}x{self.image_size}",
                              "wrong_frame_size")
        try:
            self.limits.check_frame_size(frames.shape[2], frames.shape[1])
            self.limits.check_frame_count(n)
            if clip.sample_rate > 0:
                self.limits.check_audio(np.shape(clip.audio)[0], clip.sample_rate)
        except OversizedSample as exc:
            raise SampleError(key, str(exc), "oversized") from exc
        if frames.shape[1] != self.image_size:
            frames = resize_frames(frames, self.image_size)
            repairs.append("resized_frames")
        audio = np.asarray(clip.audio, dtype=np.float32)
        if audio.ndim != 1:
            raise SampleError(key, f"audio has shape {audio.shape}, expected mono (N,)",
                              "undecodable")
        if audio.size == 0:
            raise SampleError(key, "clip has no audio samples", "empty_clip")
        if not np.isfinite(audio).all():
            raise SampleError(key, f"audio has {int((~np.isfinite(audio)).sum())} NaN/inf "
                                   f"sample(s) of {audio.size}", "nonfinite_audio")
        if clip.sample_rate <= 0:
            raise SampleError(key, f"sample rate {clip.sample_rate}, expected > 0",
                              "bad_metadata")
        if clip.sample_rate != self.sample_rate:
            audio = resample_audio(audio, clip.sample_rate, self.sample_rate)
            repairs.append("resampled_audio")
        if self.skip_silent_audio and not np.any(audio):
            raise SampleError(key, f"the entire clip's audio ({audio.size} samples) is zero "
                                   "(skip_silent_audio=true)", "silent_audio")
        samples_per_frame = self.sample_rate / self.fps
        needed = round(n * samples_per_frame)
        off = audio.shape[0] - needed
        if abs(off) > self.length_tolerance_frames * samples_per_frame:
            raise SampleError(key, f"audio has {audio.shape[0]} samples but the {n} frames last "
                                   f"{needed} ({off / samples_per_frame:+.2f} frames; tolerance "
                                   f"{self.length_tolerance_frames:g} frame(s))",
                              "length_mismatch")
        if off:
            audio = audio[:needed] if off > 0 else np.pad(audio, (0, -off))
            repairs.append("trimmed_length")
        if clip.mouth is not None and clip.mouth.shape != (n, 3):
            raise SampleError(key, f"mouth track shape {clip.mouth.shape}, expected ({n}, 3)",
                              "length_mismatch")
        if n < self.frames_per_window:
            raise SampleError(key, f"{n} frames, fewer than frames_per_window="
                                   f"{self.frames_per_window}", "too_short")
        if len(self.valid_starts(n)) == 0:
            raise SampleError(key, f"{n} frames are too few for a reference window at least "
                                   f"ref_min_gap={self.ref_min_gap} frames away", "too_short")
        return dataclasses.replace(clip, frames=np.ascontiguousarray(frames), audio=audio,
                                   sample_rate=self.sample_rate, repairs=repairs)

    def check(self, clip: Clip) -> None:
        """Raise SampleError (naming the clip and its category) unless the clip can be cut
        as configured *as it is*; a clip that :meth:`prepare` would have to repair fails
        (with the repair's name in the message): prefer ``clip = cutter.prepare(clip)``."""
        repaired = self.prepare(clip)
        # audio off by less than the tolerance is cut as it is (mel windows pad with silence)
        new = [r for r in repaired.repairs[len(clip.repairs):] if r != "trimmed_length"]
        if new:
            category = {"resampled_audio": "bad_metadata", "grayscale_frames": "wrong_frame_size",
                        "resized_frames": "wrong_frame_size"}[new[0]]
            raise SampleError(clip.key, f"needs repair ({', '.join(new)}): frames "
                                        f"{tuple(np.shape(clip.frames))} at {clip.sample_rate} Hz "
                                        f"with {np.shape(clip.audio)[0]} audio samples; expected "
                                        f"(T, {self.image_size}, {self.image_size}, 3) at "
                                        f"{self.sample_rate} Hz; WindowCutter.prepare repairs it",
                              category)

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

    def off_sync_shift(self, num_frames: int, start: int, rng: np.random.Generator) -> int:
        """A shift s with off_sync_min_shift <= |s| <= off_sync_max_shift, keeping the shifted
        window inside the clip when the clip allows it (else silence pads it)."""
        lo, hi = self.off_sync_min_shift, self.off_sync_max_shift
        shifts = np.concatenate([np.arange(-hi, -lo + 1), np.arange(lo, hi + 1)])
        last = num_frames - self.frames_per_window
        inside = shifts[(start + shifts >= 0) & (start + shifts <= last)]
        pool = inside if len(inside) else shifts
        return int(pool[rng.integers(len(pool))])

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
        out: dict[str, Any] = {"key": clip.key, "frame": int(start), "face": frames, "mel": mels,
                               "speaker": str(clip.meta.get("speaker") or "")}
        if self.use_reference:
            if rng is None:
                rng = np.random.default_rng(_stable_seed(clip.key, start))
            r = self.reference_start(n, start, rng)
            out["ref"] = np.ascontiguousarray(clip.frames[r:r + t].transpose(0, 3, 1, 2))
            out["ref_frame"] = r
        if self.off_sync_min_shift > 0:
            # off-sync negative for a sync expert: the same frames' audio from elsewhere
            off_rng = rng if rng is not None else np.random.default_rng(
                _stable_seed(clip.key, start, "off_sync"))
            shift = self.off_sync_shift(n, start, off_rng)
            out["mel_off"] = np.stack([
                self.mel_window(mel, (k + shift + 0.5) / self.fps)
                for k in range(start, start + t)
            ])[:, None]
            out["off_shift"] = shift
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
        """Validate and repair ``clip`` (:meth:`prepare`) and cut ``count`` windows: random
        starts with ``rng``, evenly spaced deterministic ones without. ``check=False``: the
        clip was prepared already."""
        if check:
            clip = self.prepare(clip)
        mel = self.clip_mel(clip)
        if rng is None:
            return [self.window(clip, mel, int(s)) for s in self.even_starts(clip.num_frames, count)]
        return [self.window(clip, mel, int(s), rng)
                for s in self.random_starts(clip.num_frames, count, rng)]
