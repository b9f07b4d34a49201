"""Size limits a shard sample is checked against before it is decoded in full or resampled.

A shard member's bytes say little about what decoding it costs: a 9 KB mp4 can hold 50
frames of 2048x2048 (600 MB as RGB), a 40 KB WAV declared at 8 Hz resamples to 40 million
samples at 16 kHz. A loader worker that runs out of memory ends the whole fit, so every
sample is checked against these limits first, from what the container headers declare
(PyAV reads width, height and frame count without decoding a frame) and again while
decoding (headers can lie); a sample over a limit is skipped and counted as ``oversized``.

The limits follow the configuration: frames up to ``FRAME_SIDE_FACTOR`` x ``image_size`` on a
side (larger crops are a different corpus, not a repairable one), at most
``max_clip_seconds`` of frames and of audio, and sample rates that real recordings use.
"""

from __future__ import annotations

import io
import math
from dataclasses import dataclass

import numpy as np

FRAME_SIDE_FACTOR = 4
DEFAULT_MAX_CLIP_SECONDS = 60.0
MIN_SAMPLE_RATE = 4_000
MAX_SAMPLE_RATE = 192_000
# Source media for `lipmem infer` / `lipmem data prep`: 4096 x 4096 covers 4K (DCI) video.
MAX_SOURCE_PIXELS = 4096 * 4096


class OversizedSample(ValueError):
    """A member larger than the limits allow (decoding it could exhaust memory)."""


@dataclass(frozen=True)
class SampleLimits:
    """What one decoded clip may hold; see the module docstring."""

    max_frame_side: int
    max_frames: int
    max_audio_seconds: float
    min_sample_rate: int = MIN_SAMPLE_RATE
    max_sample_rate: int = MAX_SAMPLE_RATE

    @classmethod
    def for_clips(cls, image_size: int, fps: int,
                  max_clip_seconds: float = DEFAULT_MAX_CLIP_SECONDS) -> SampleLimits:
        if not (isinstance(max_clip_seconds, (int, float)) and not isinstance(max_clip_seconds, bool)
                and math.isfinite(max_clip_seconds) and max_clip_seconds > 0):
            raise ValueError(f"max_clip_seconds={max_clip_seconds!r}: must be a positive number "
                             "of seconds")
        return cls(max_frame_side=FRAME_SIDE_FACTOR * int(image_size),
                   max_frames=math.ceil(max_clip_seconds * fps) + 1,
                   max_audio_seconds=float(max_clip_seconds) + 1.0 / fps)

    def check_frame_size(self, width: int, height: int) -> None:
        if max(width, height) > self.max_frame_side:
            raise OversizedSample(f"frames are {width}x{height}, larger than the limit of "
                                  f"{self.max_frame_side} px a side ({FRAME_SIDE_FACTOR} x "
                                  "image_size)")

    def check_frame_count(self, frames: int) -> None:
        if frames > self.max_frames:
            raise OversizedSample(f"{frames} frames or more, above the limit of "
                                  f"{self.max_frames} (data.max_clip_seconds)")

    def check_audio(self, num_samples: int, sample_rate: int) -> None:
        """Before any resampling: the rate is one recordings use and the length a clip's."""
        if not self.min_sample_rate <= sample_rate <= self.max_sample_rate:
            raise OversizedSample(f"audio declared at {sample_rate} Hz, outside "
                                  f"{self.min_sample_rate}..{self.max_sample_rate} Hz (it would "
                                  "resample to an unbounded number of samples)")
        seconds = num_samples / sample_rate
        if seconds > self.max_audio_seconds:
            raise OversizedSample(f"{seconds:.1f} s of audio ({num_samples} samples at "
                                  f"{sample_rate} Hz), above the limit of "
                                  f"{self.max_audio_seconds:.2f} s (data.max_clip_seconds)")


def npy_shape(data: bytes) -> tuple[tuple[int, ...], np.dtype]:
    """Shape and dtype an .npy member declares, read from its header alone; ValueError
    when the header is unreadable or declares more data than the member holds."""
    buf = io.BytesIO(data)
    version = np.lib.format.read_magic(buf)
    if version not in ((1, 0), (2, 0)):
        raise ValueError(f".npy format version {version} is not supported")
    read_header = (np.lib.format.read_array_header_1_0 if version == (1, 0)
                   else np.lib.format.read_array_header_2_0)
    shape, _, dtype = read_header(buf)
    declared = math.prod(shape) * dtype.itemsize
    if declared > len(data) - buf.tell():
        raise OversizedSample(f"declares shape {shape} ({declared} bytes of {dtype}) but holds "
                              f"{len(data) - buf.tell()} bytes")
    return tuple(shape), dtype


def check_source_pixels(width: int, height: int, what: str,
                        max_pixels: int = MAX_SOURCE_PIXELS) -> None:
    """ValueError naming ``what`` when a source image or video frame is above the limit."""
    if width * height > max_pixels:
        raise OversizedSample(f"{what} is {width}x{height} = {width * height / 1e6:.1f} Mpx, above "
                              f"the limit of {max_pixels / 1e6:.1f} Mpx; scale it down first")


__all__ = ["DEFAULT_MAX_CLIP_SECONDS", "FRAME_SIDE_FACTOR", "MAX_SOURCE_PIXELS", "OversizedSample",
           "SampleLimits", "check_source_pixels", "npy_shape"]
