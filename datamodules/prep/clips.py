"""Cutting a tracked video into training clips.

Clips never cross a stretch where the face was lost (a training window spanning a cut or an
off-screen speaker teaches nothing), nor frames without audio. Each face run is cut into
consecutive ``clip_frames`` clips; a remainder of at least ``min_frames`` becomes a shorter
last clip, a shorter one is dropped.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class ClipSpan:
    """Frames [start, stop) of the constant-rate video; ``index`` numbers clips in a video."""

    index: int
    start: int
    stop: int

    @property
    def num_frames(self) -> int:
        return self.stop - self.start


def face_runs(found: np.ndarray, usable: tuple[int, int]) -> list[tuple[int, int]]:
    """[start, stop) runs where ``found`` is True, cut to the ``usable`` frame range."""
    mask = np.zeros(len(found), dtype=bool)
    lo, hi = max(0, usable[0]), min(len(found), usable[1])
    mask[lo:hi] = found[lo:hi]
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def plan_clips(found: np.ndarray, usable: tuple[int, int], clip_frames: int,
               min_frames: int) -> list[ClipSpan]:
    """The clips of one video (see the module docstring)."""
    if clip_frames < 1 or not 1 <= min_frames <= clip_frames:
        raise ValueError(f"need 1 <= min_frames ({min_frames}) <= clip_frames ({clip_frames})")
    spans: list[ClipSpan] = []
    for start, stop in face_runs(found, usable):
        for s in range(start, stop, clip_frames):
            e = min(s + clip_frames, stop)
            if e - s >= min_frames:
                spans.append(ClipSpan(len(spans), s, e))
    return spans


__all__ = ["ClipSpan", "face_runs", "plan_clips"]
