"""Driving audio for inference: anything FFmpeg decodes, as 16 kHz mono float chunks.

PyAV decodes the first audio stream of a file (wav, mp3, m4a, an mp4's soundtrack, ...) or
of a byte stream on stdin (``-``: a container such as wav or ogg that can be read without
seeking), and libswresample (``av.AudioResampler``) converts it to mono float at the model's
rate. Chunks come out as they are decoded, so a live stream is consumed incrementally.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from pathlib import Path

import av
import numpy as np

from datamodules.prep.media import resampled_audio


class AudioInputError(ValueError):
    """The driving audio cannot be used; the message names the source."""


def _open(source: str | Path, audio_format: str | None) -> av.container.InputContainer:
    name = "<stdin>" if str(source) == "-" else str(source)
    if name != "<stdin>" and not Path(source).is_file():
        raise AudioInputError(f"audio {name}: no such file")
    try:
        if name == "<stdin>":
            return av.open(sys.stdin.buffer, mode="r", format=audio_format)
        return av.open(str(source), mode="r", format=audio_format)
    except (av.FFmpegError, OSError, ValueError) as exc:
        raise AudioInputError(f"audio {name}: cannot be opened by FFmpeg ({exc})") from exc


def iter_audio(source: str | Path, sample_rate: int = 16000, *,
               audio_format: str | None = None) -> Iterator[np.ndarray]:
    """float32 mono chunks in [-1, 1] at ``sample_rate``, in order, as decoded."""
    name = "<stdin>" if str(source) == "-" else str(source)
    container = _open(source, audio_format)
    try:
        if not container.streams.audio:
            raise AudioInputError(f"audio {name}: no audio stream (streams: "
                                  f"{[s.type for s in container.streams]})")
        try:
            for _, chunk in resampled_audio(container, container.streams.audio[0], sample_rate):
                yield chunk
        except av.FFmpegError as exc:
            raise AudioInputError(f"audio {name}: decoding failed ({exc})") from exc
    finally:
        container.close()


def load_audio(source: str | Path, sample_rate: int = 16000, *,
               audio_format: str | None = None) -> np.ndarray:
    """The whole signal; refuses an empty one."""
    chunks = list(iter_audio(source, sample_rate, audio_format=audio_format))
    audio = np.concatenate(chunks) if chunks else np.zeros(0, np.float32)
    if audio.size == 0:
        raise AudioInputError(f"audio {source}: decoded to 0 samples")
    if not np.isfinite(audio).all():
        raise AudioInputError(f"audio {source}: contains NaN or infinite samples")
    return audio
