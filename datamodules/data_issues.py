"""The fixed vocabulary of data problems the input pipeline counts (skips and repairs).

Short stable names, because they become metric names (``data/skipped/{reason}``,
``data/repaired/{reason}``) and a fixed order, because per-batch counts travel from the
loader workers to the training step as one int64 vector (:func:`issue_vector`) that DDP
ranks can sum with a single all-reduce.

Skips (the sample is dropped, the stream goes on):

=====================  =========================================================================
``truncated_tar``      the tar stream of a shard broke (truncated member, bad header: a
                       ``tarfile.TarError`` or ``EOFError``); the rest of that shard is lost
                       for this pass, counted once
``missing_member``     a sample lacks ``mp4``, ``wav`` or ``json``
``duplicate_member``   a member name appears more than once under one key (two samples
                       written with one name): which members belong together is unknown
``undecodable``        a member that the decoders (PyAV, WAV reader, JSON, numpy) cannot read
``bad_metadata``       ``json`` is not an object or has a non-positive ``fps`` / sample rate
``wrong_fps``          a frame rate other than the configured one (no well-defined repair
                       without inventing frames)
``nonfinite_audio``    NaN or +-inf audio samples (float WAV)
``silent_audio``       the entire clip's audio is exactly zero (``skip_silent_audio``)
``empty_clip``         zero video frames or zero audio samples
``wrong_frame_size``   non-square frames, or not 1 / 3 channels
``length_mismatch``    audio vs frames (or mouth track vs frames) differ by more than the
                       tolerance
``too_short``          fewer frames than a window (with its reference) needs
``oversized``          larger than the loader's limits (frame side > 4 x ``image_size``, more
                       than ``max_clip_seconds`` of frames or audio, a sample rate outside
                       4-192 kHz, a member declaring more data than it holds); checked
                       before decoding in full or resampling (:mod:`datamodules.sample_limits`)
``other``              anything else a decoder raised
=====================  =========================================================================

Repairs (the sample is fixed and kept):

=====================  =========================================================================
``resampled_audio``    audio at another sample rate, resampled with ``scipy.signal.resample_poly``
``grayscale_frames``   single-channel video, replicated to RGB
``resized_frames``     square frames of another size, resized with OpenCV (``INTER_AREA``)
``trimmed_length``     audio within the tolerance of the frames' duration, trimmed or
                       zero-padded to exactly ``num_frames * sample_rate / fps`` samples
=====================  =========================================================================
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:  # torch only where tensors are made: prep/synth workers never import it
    import torch

SKIP_REASONS: tuple[str, ...] = (
    "truncated_tar", "missing_member", "duplicate_member", "undecodable", "bad_metadata", "wrong_fps",
    "nonfinite_audio", "silent_audio", "empty_clip", "wrong_frame_size", "length_mismatch",
    "too_short", "oversized", "other",
)
REPAIR_REASONS: tuple[str, ...] = (
    "resampled_audio", "grayscale_frames", "resized_frames", "trimmed_length",
)
ISSUES: tuple[str, ...] = SKIP_REASONS + REPAIR_REASONS
_INDEX = {name: i for i, name in enumerate(ISSUES)}


def check_reason(reason: str, kind: str = "any") -> str:
    """``reason`` itself; ValueError when it is not in the vocabulary (a typo would otherwise
    count nothing anywhere)."""
    allowed = {"skip": SKIP_REASONS, "repair": REPAIR_REASONS, "any": ISSUES}[kind]
    if reason not in allowed:
        raise ValueError(f"unknown data issue {reason!r} ({kind}); expected one of {allowed}")
    return reason


def issue_vector(counts: Mapping[str, int]) -> torch.Tensor:
    """Counts by name -> int64 vector in :data:`ISSUES` order."""
    out = np.zeros(len(ISSUES), dtype=np.int64)
    for name, count in counts.items():
        out[_INDEX[check_reason(name)]] += int(count)
    import torch

    return torch.from_numpy(out)


def issue_counts(vector: torch.Tensor) -> dict[str, int]:
    """int vector in :data:`ISSUES` order -> {name: count} (all names)."""
    values = [int(v) for v in vector.detach().cpu().reshape(-1).tolist()]
    if len(values) != len(ISSUES):
        raise ValueError(f"data issue vector has {len(values)} entries, expected {len(ISSUES)}")
    return dict(zip(ISSUES, values, strict=True))


def metric_names(counts: Mapping[str, int], prefix: str = "data",
                 include_zero: bool = False) -> dict[str, float]:
    """``{prefix}/skipped/{reason}`` and ``{prefix}/repaired/{reason}`` (non-zero ones unless
    ``include_zero``) plus the totals ``{prefix}/skipped_samples``, ``{prefix}/repaired_samples``."""
    out: dict[str, float] = {}
    for name in ISSUES:
        value = int(counts.get(name, 0))
        if value or include_zero:
            group = "skipped" if name in SKIP_REASONS else "repaired"
            out[f"{prefix}/{group}/{name}"] = float(value)
    out[f"{prefix}/skipped_samples"] = float(sum(int(counts.get(n, 0)) for n in SKIP_REASONS))
    out[f"{prefix}/repaired_samples"] = float(sum(int(counts.get(n, 0)) for n in REPAIR_REASONS))
    return out


__all__ = ["ISSUES", "REPAIR_REASONS", "SKIP_REASONS", "check_reason", "issue_counts",
           "issue_vector", "metric_names"]
