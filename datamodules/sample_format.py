"""The clip sample that every lipmem shard holds.

One WebDataset sample is one talking-face clip, not one frame: training windows are cut
from clips in the loader workers, so the audio context around a frame is always there and
window length / audio span stay configurable without rewriting shards. The synthetic corpus
(`lipmem data synth`) and real-video preparation write exactly this format.

Members of a sample (``__key__`` is ``{speaker}_{clip}``, no dots):

=============  ==============================================================================
``mp4``        H.264 video, constant ``fps`` (25), square ``image_size`` face crops, RGB
               content, ``num_frames`` frames.
``wav``        16-bit PCM, mono, ``sample_rate`` (16 kHz), aligned so that frame ``i``
               covers audio samples ``[i, i + 1) * sample_rate / fps``.
``mouth.npy``  optional float32 ``(num_frames, 3)``: ground-truth mouth track (openness,
               width, roundness in [0, 1]) where the corpus knows it (the synthetic one does).
``json``       metadata: ``format_version``, ``speaker``, ``clip``, ``fps``, ``sample_rate``,
               ``num_frames``, ``num_audio_samples``, ``image_size``, ``source``.
=============  ==============================================================================
"""

from __future__ import annotations

import io
import json
import wave
from dataclasses import dataclass, field
from fractions import Fraction
from typing import Any

import av
import numpy as np
import scipy.io.wavfile

from datamodules.data_issues import check_reason
from datamodules.sample_limits import OversizedSample, SampleLimits, npy_shape
from datamodules.video_frames import frame_to_rgb24

FORMAT_VERSION = 1
VIDEO_KEY = "mp4"
AUDIO_KEY = "wav"
MOUTH_KEY = "mouth.npy"
META_KEY = "json"
REQUIRED_KEYS = (VIDEO_KEY, AUDIO_KEY, META_KEY)


class SampleError(ValueError):
    """A sample that cannot be used; carries the sample key so the stream can count and skip
    it, and a ``category`` from :data:`datamodules.data_issues.SKIP_REASONS` to count it under."""

    def __init__(self, key: str, reason: str, category: str = "other") -> None:
        super().__init__(f"sample {key!r}: {reason}")
        self.key = key
        self.reason = reason
        self.category = check_reason(category, "skip")


@dataclass
class Clip:
    """A decoded clip: uint8 frames (T, H, W, 3), float32 mono audio in [-1, 1]."""

    key: str
    frames: np.ndarray
    audio: np.ndarray
    fps: int
    sample_rate: int
    mouth: np.ndarray | None = None
    meta: dict[str, Any] = field(default_factory=dict)
    repairs: list[str] = field(default_factory=list)  # data_issues.REPAIR_REASONS applied

    @property
    def num_frames(self) -> int:
        return int(self.frames.shape[0])


def encode_video(frames: np.ndarray, fps: int, crf: int = 12) -> bytes:
    """H.264 in mp4, yuv420p (what every decoder reads); low CRF keeps mouth detail at 96 px."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, H, W, 3), got {frames.dtype} {frames.shape}")
    height, width = frames.shape[1:3]
    if height % 2 or width % 2:
        raise ValueError(f"H.264 yuv420p needs even frame sides, got {width}x{height}")
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(fps))
        stream.width, stream.height = width, height
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": str(crf), "preset": "veryfast", "tune": "stillimage"}
        stream.codec_context.thread_count = 1
        for image in frames:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


class EmptyVideo(ValueError):
    """A video stream without a single frame."""


def read_video(data: bytes, limits: SampleLimits | None = None
               ) -> tuple[np.ndarray, float, bool]:
    """All frames as uint8 (T, H, W, 3), the stream's average frame rate, and whether the
    source was grayscale (PyAV's rgb24 conversion replicates the gray channel).

    With ``limits``, the frame size and count the container header declares are checked
    before any frame is decoded, and every frame again before it is converted (headers can
    lie): :class:`OversizedSample` when over a limit."""
    with av.open(io.BytesIO(data), mode="r") as container:
        if not container.streams.video:
            raise ValueError("no video stream")
        stream = container.streams.video[0]
        if limits is not None:
            limits.check_frame_size(stream.codec_context.width, stream.codec_context.height)
            limits.check_frame_count(stream.frames)  # 0 when the header does not say
        stream.thread_type = "AUTO"
        rate = float(stream.average_rate) if stream.average_rate else 0.0
        frames, gray = [], False
        for frame in container.decode(stream):
            if limits is not None:
                limits.check_frame_size(frame.width, frame.height)
                limits.check_frame_count(len(frames) + 1)
            gray = gray or frame.format.name.startswith(("gray", "ya"))
            frames.append(frame_to_rgb24(frame))
    if not frames:
        raise EmptyVideo("video stream has no frames")
    return np.stack(frames), rate, gray


def decode_video(data: bytes) -> tuple[np.ndarray, float]:
    """All frames as uint8 (T, H, W, 3) plus the stream's average frame rate."""
    frames, rate, _ = read_video(data)
    return frames, rate


def encode_wav(audio: np.ndarray, sample_rate: int) -> bytes:
    """Mono 16-bit PCM; input float in [-1, 1] (clipped) or int16."""
    if audio.ndim != 1:
        raise ValueError(f"audio must be mono 1-D, got shape {audio.shape}")
    if audio.dtype != np.int16:
        audio = np.round(np.clip(audio, -1.0, 1.0) * 32767.0).astype(np.int16)
    buf = io.BytesIO()
    with wave.open(buf, "wb") as w:
        w.setnchannels(1)
        w.setsampwidth(2)
        w.setframerate(sample_rate)
        w.writeframes(audio.tobytes())
    return buf.getvalue()


_PCM_SCALE = {np.dtype(np.int16): 32768.0, np.dtype(np.int32): 2.0**31}


def decode_wav(data: bytes) -> tuple[np.ndarray, int]:
    """float32 mono audio and its sample rate; stereo is averaged to mono.

    16/32-bit PCM is scaled to [-1, 1]; IEEE-float WAV is read as is (so NaN or inf in such
    a file reaches the validation, which skips it). ``scipy.io.wavfile`` reads both.
    """
    rate, audio = scipy.io.wavfile.read(io.BytesIO(data))
    if audio.dtype in _PCM_SCALE:
        audio = audio.astype(np.float32) / np.float32(_PCM_SCALE[audio.dtype])
    elif audio.dtype == np.uint8:
        audio = (audio.astype(np.float32) - 128.0) / 128.0
    elif audio.dtype.kind == "f":
        audio = audio.astype(np.float32)
    else:
        raise ValueError(f"unsupported WAV sample type {audio.dtype}")
    if audio.ndim > 1:
        audio = audio.mean(axis=1, dtype=np.float32)
    return np.ascontiguousarray(audio), int(rate)


def encode_sample(
    key: str,
    frames: np.ndarray,
    audio: np.ndarray,
    *,
    fps: int,
    sample_rate: int,
    speaker: str,
    clip: str,
    source: str,
    mouth: np.ndarray | None = None,
    extra_meta: dict[str, Any] | None = None,
) -> dict[str, Any]:
    """Build the WebDataset sample dict (bytes per member) for one clip."""
    if "." in key:
        raise ValueError(f"sample key {key!r} must not contain '.' (WebDataset splits on it)")
    meta = {
        "format_version": FORMAT_VERSION,
        "speaker": speaker,
        "clip": clip,
        "fps": int(fps),
        "sample_rate": int(sample_rate),
        "num_frames": int(frames.shape[0]),
        "num_audio_samples": int(audio.shape[0]),
        "image_size": int(frames.shape[1]),
        "source": source,
        **(extra_meta or {}),
    }
    sample: dict[str, Any] = {
        "__key__": key,
        VIDEO_KEY: encode_video(frames, fps),
        AUDIO_KEY: encode_wav(audio, sample_rate),
        META_KEY: json.dumps(meta).encode(),
    }
    if mouth is not None:
        if mouth.shape != (frames.shape[0], 3):
            raise ValueError(f"mouth track must be ({frames.shape[0]}, 3), got {mouth.shape}")
        buf = io.BytesIO()
        np.save(buf, mouth.astype(np.float32))
        sample[MOUTH_KEY] = buf.getvalue()
    return sample


def decode_sample(sample: dict[str, Any], limits: SampleLimits | None = None) -> Clip:
    """Decode one raw sample; any problem raises SampleError naming the key and the
    :mod:`datamodules.data_issues` category. Content checks against the configuration
    (rate, size, lengths) and their repairs are :meth:`WindowCutter.prepare`'s job; with
    ``limits`` nothing larger than they allow is decoded in full (``oversized``)."""
    key = str(sample.get("__key__", "<no key>"))
    missing = [k for k in REQUIRED_KEYS if k not in sample]
    if missing:
        raise SampleError(key, f"missing member(s) {missing}; expected {list(REQUIRED_KEYS)} "
                               f"(has {sorted(k for k in sample if not k.startswith('__'))})",
                          "missing_member")
    try:
        meta = json.loads(sample[META_KEY])
    except Exception as exc:
        raise SampleError(key, f"{META_KEY} member is not JSON ({type(exc).__name__}: {exc})",
                          "undecodable") from exc
    if not isinstance(meta, dict):
        raise SampleError(key, f"{META_KEY} member is not an object", "bad_metadata")
    try:
        fps = int(meta.get("fps", 0))
    except (TypeError, ValueError):
        fps = 0
    if fps <= 0:
        raise SampleError(key, f"json fps={meta.get('fps')!r}, expected a positive integer",
                          "bad_metadata")
    empty = [k for k in (VIDEO_KEY, AUDIO_KEY) if len(sample[k]) == 0]
    if empty:
        raise SampleError(key, f"zero-length member(s) {empty}", "empty_clip")
    try:
        frames, _, gray = read_video(sample[VIDEO_KEY], limits)
    except OversizedSample as exc:
        raise SampleError(key, f"{VIDEO_KEY}: {exc}", "oversized") from exc
    except EmptyVideo as exc:
        raise SampleError(key, f"{VIDEO_KEY}: {exc}", "empty_clip") from exc
    except Exception as exc:  # decoder libraries raise many types; all mean "unusable"
        raise SampleError(key, f"{VIDEO_KEY} undecodable ({type(exc).__name__}: {exc})",
                          "undecodable") from exc
    try:
        audio, rate = decode_wav(sample[AUDIO_KEY])
    except Exception as exc:
        raise SampleError(key, f"{AUDIO_KEY} undecodable ({type(exc).__name__}: {exc})",
                          "undecodable") from exc
    if limits is not None and rate > 0:  # rate <= 0 is bad_metadata, below
        try:
            limits.check_audio(audio.size, rate)
        except OversizedSample as exc:
            raise SampleError(key, f"{AUDIO_KEY}: {exc}", "oversized") from exc
    try:
        if MOUTH_KEY in sample:
            npy_shape(sample[MOUTH_KEY])  # declared vs actual size, before np.load allocates
        mouth = np.load(io.BytesIO(sample[MOUTH_KEY])) if MOUTH_KEY in sample else None
    except OversizedSample as exc:
        raise SampleError(key, f"{MOUTH_KEY}: {exc}", "oversized") from exc
    except Exception as exc:
        raise SampleError(key, f"{MOUTH_KEY} undecodable ({type(exc).__name__}: {exc})",
                          "undecodable") from exc
    if rate <= 0:
        raise SampleError(key, f"{AUDIO_KEY} sample rate {rate}, expected > 0", "bad_metadata")
    if audio.size == 0:
        raise SampleError(key, f"{AUDIO_KEY} has no samples", "empty_clip")
    if not np.isfinite(audio).all():
        bad = int((~np.isfinite(audio)).sum())
        raise SampleError(key, f"{AUDIO_KEY} has {bad} NaN/inf sample(s) of {audio.size}",
                          "nonfinite_audio")
    if frames.shape[1] != frames.shape[2]:
        raise SampleError(key, f"frames are {frames.shape[2]}x{frames.shape[1]}, expected square",
                          "wrong_frame_size")
    if mouth is not None and mouth.shape != (frames.shape[0], 3):
        raise SampleError(key, f"mouth.npy shape {mouth.shape}, expected ({frames.shape[0]}, 3)",
                          "length_mismatch")
    return Clip(key=key, frames=frames, audio=audio, fps=fps, sample_rate=rate, mouth=mouth,
                meta=meta, repairs=["grayscale_frames"] if gray else [])
