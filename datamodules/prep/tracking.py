"""Per-frame face detections -> one steady square crop box per frame.

Why each step:

1. **Pick one face per frame**: the detection nearest the previous pick (centre distance
   under half a face size), else the largest; so a background face or a one-off false
   positive does not steal the track.
2. **Fill short gaps**: up to ``max_gap`` frames without a detection (a blink of the
   detector, a hand over the face) are linearly interpolated between the neighbours (held at
   the ends of a run); longer gaps end the face run (``found`` is False there).
3. **Smooth**: within each run, a 5-frame median (kills single-frame outliers) then a
   Gaussian of ``smooth`` frames (sigma) on centre and size: raw per-frame boxes jitter by a
   few pixels, and that jitter would be learnt as head motion the audio cannot explain.
4. **Square crop with a margin**: side = face size x (1 + 2 x ``margin``), centre moved down
   by ``shift_y`` face sizes. With the Haar box (brows to upper chin) the defaults put eyes
   and mouth near :mod:`datamodules.face_layout`'s positions.
5. **Borders**: boxes may extend past the frame; :func:`crop_and_resize` pads (edge
   replication by default) instead of shifting the face off-centre.

**Keyframes** (:func:`detect_keyframes`): running the detector on every frame is what made
preparation slow, and a talking head barely moves in a fifth of a second. So the detector
runs on every K-th frame only and the frames between are left unchecked (``None``); gap
filling interpolates them like a missed detection, and smoothing does the rest. Where two
neighbouring keyframes disagree (a face in one only, or the face moved or changed size by
more than a fraction of its size: a cut, a fast turn), the frames between them are detected
one by one after all, so the track there is what every-frame detection gives.

Public API (used by ``lipmem data prep`` and ``lipmem infer``)::

    detector = load_detector(None)                       # face_detect.py
    track = track_faces(frames, detector, source="talk.mp4")   # frames uint8 (T, H, W, 3)
    track.boxes   # int64 (T, 4): x0, y0, x1, y1, square, may lie partly outside the frame
    track.found   # bool (T,): a face detected or interpolated there
    dets = detect_keyframes(frames, detector.detect, every=5)  # None = frame not checked
    track = track_from_detections(dets)                  # the same, 5x fewer detector calls
    crop = crop_and_resize(frames[0], track.boxes[0], 96)    # uint8 (96, 96, 3)
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
from scipy.ndimage import gaussian_filter1d, median_filter

from datamodules.prep.face_detect import Box, FaceDetector


class NoFaceError(ValueError):
    """Not a single face was detected in the source (named in the message)."""


@dataclass(frozen=True)
class TrackConfig:
    """How detections become crop boxes (see the module docstring)."""

    max_gap: int = 12          # frames (~0.5 s at 25 fps) bridged without a detection
    smooth: float = 2.0        # Gaussian sigma in frames; 0 disables (median still applies)
    median: int = 5            # median window in frames (1 disables)
    margin: float = 0.2        # crop side = face size * (1 + 2 * margin)
    shift_y: float = 0.0       # crop centre moved down by this many face sizes

    def problems(self) -> list[tuple[str, str]]:
        out = []
        if self.max_gap < 0:
            out.append(("max_gap", f"must be >= 0, got {self.max_gap}"))
        if self.smooth < 0:
            out.append(("smooth", f"must be >= 0, got {self.smooth}"))
        if self.median < 1:
            out.append(("median", f"must be >= 1, got {self.median}"))
        if not -0.45 < self.margin <= 2.0:
            out.append(("margin", f"must be in (-0.45, 2], got {self.margin}"))
        if abs(self.shift_y) > 1.0:
            out.append(("shift_y", f"must be within [-1, 1], got {self.shift_y}"))
        return out


@dataclass
class FaceTrack:
    """Per-frame square crop boxes of one source.

    ``boxes``: int64 (T, 4) ``x0, y0, x1, y1`` (x1 - x0 == y1 - y0), possibly outside the
    frame; frames without a face (``found`` False) carry the nearest run's box so every
    frame can still be cropped. ``detected``: the detector itself fired there (before gap
    filling). ``checked``: the detector ran there (all frames unless keyframes were used).
    ``faces``: float (T, 3) smoothed face centre x, centre y and size."""

    boxes: np.ndarray
    found: np.ndarray
    detected: np.ndarray
    faces: np.ndarray
    source: str = "<frames>"
    checked: np.ndarray = field(default=None)  # type: ignore[assignment]

    def __post_init__(self) -> None:
        if self.checked is None:
            self.checked = np.ones(len(self.found), dtype=bool)

    def __len__(self) -> int:
        return int(self.boxes.shape[0])

    def runs(self) -> list[tuple[int, int]]:
        """[start, stop) frame ranges where ``found`` is True."""
        return _runs(self.found)


def _runs(mask: np.ndarray) -> list[tuple[int, int]]:
    edges = np.diff(np.concatenate([[0], mask.astype(np.int8), [0]]))
    return list(zip(np.flatnonzero(edges == 1).tolist(), np.flatnonzero(edges == -1).tolist(),
                    strict=True))


def pick_face(boxes: Iterable[Box] | None, prev: np.ndarray | None) -> np.ndarray | None:
    """(centre x, centre y, size) of the face to follow among ``boxes``: the one nearest
    ``prev`` (within half a face size), else the largest; None when there is none."""
    if boxes is None:
        return None
    cands = np.array([[x + w / 2, y + h / 2, max(w, h)] for x, y, w, h, *_ in boxes],
                     dtype=np.float64).reshape(-1, 3)
    cands = cands[cands[:, 2] > 0]
    if not len(cands):
        return None
    choice = int(np.argmax(cands[:, 2]))
    if prev is not None:
        dist = np.hypot(*(cands[:, :2] - prev[:2]).T) / prev[2]
        if dist.min() < 0.5:
            choice = int(np.argmin(dist))
    return cands[choice]


def pick_faces(detections: Sequence[Iterable[Box] | None]) -> np.ndarray:
    """float (T, 3) centre x, centre y, size (max of w, h) of one face per frame; NaN where
    the frame has no detection (or was not checked: ``None``)."""
    out = np.full((len(detections), 3), np.nan)
    prev: np.ndarray | None = None
    for i, boxes in enumerate(detections):
        face = pick_face(boxes, prev)
        if face is not None:
            out[i] = prev = face
    return out


def _agree(a: np.ndarray | None, b: np.ndarray | None, tolerance: float) -> bool:
    """Whether two keyframe faces are plausibly the same face, smoothly moved: both absent,
    or centres within ``tolerance`` face sizes and sizes within a factor 1 + tolerance."""
    if a is None or b is None:
        return a is None and b is None
    size = max(a[2], b[2])
    return bool(np.hypot(*(a[:2] - b[:2])) <= tolerance * size
                and size <= (1 + tolerance) * min(a[2], b[2]))


def detect_keyframes(frames: Iterable[np.ndarray], detect: Callable[[np.ndarray], list[Box]],
                     every: int = 5, tolerance: float = 0.2) -> list[list[Box] | None]:
    """Per-frame detections with the detector run on every ``every``-th frame (and the last)
    only; ``None`` marks a frame left unchecked. Where neighbouring keyframes disagree (see
    :func:`_agree`), every frame between them is detected too (see the module docstring).
    Holds at most ``every - 1`` frames; ``every=1`` detects every frame."""
    if every < 1:
        raise ValueError(f"every={every}: must be >= 1")
    out: list[list[Box] | None] = []
    pending: list[tuple[int, np.ndarray]] = []  # unchecked frames since the last keyframe
    last: np.ndarray | None = None
    started = False

    def keyframe(index: int, frame: np.ndarray) -> None:
        nonlocal last, started
        boxes = detect(frame)
        face = pick_face(boxes, last)
        if started and pending and not _agree(last, face, tolerance):
            prev = last
            for j, between in pending:
                out[j] = detect(between)
                picked = pick_face(out[j], prev)
                prev = prev if picked is None else picked
            face = pick_face(boxes, prev)
        out[index] = boxes
        pending.clear()
        last, started = face, True

    for i, frame in enumerate(frames):
        out.append(None)
        if i % every == 0:
            keyframe(i, frame)
        else:
            pending.append((i, frame))
    if pending:  # the last frame closes the video as a keyframe
        index, frame = pending.pop()
        keyframe(index, frame)
    return out


def fill_gaps(faces: np.ndarray, max_gap: int) -> tuple[np.ndarray, np.ndarray]:
    """Interpolate NaN stretches of at most ``max_gap`` frames (hold at the ends); returns
    the filled (T, 3) array (every row finite when any is) and the ``found`` mask."""
    have = ~np.isnan(faces[:, 0])
    t = np.arange(len(faces))
    filled = faces.copy()
    if not have.any():
        return filled, have
    for d in range(faces.shape[1]):
        filled[:, d] = np.interp(t, t[have], faces[have, d])  # holds beyond the ends
    found = have.copy()
    for start, stop in _runs(~have):
        if stop - start <= max_gap:  # between two detections, or held at an end
            found[start:stop] = True
    return filled, found


def smooth_runs(faces: np.ndarray, found: np.ndarray, sigma: float, median: int) -> np.ndarray:
    """Median then Gaussian smoothing along time inside each found run (not across runs:
    the face may have moved a lot while it was lost)."""
    out = faces.copy()
    for start, stop in _runs(found):
        seg = faces[start:stop]
        if median > 1 and len(seg) >= 3:
            seg = median_filter(seg, size=(min(median, len(seg)), 1), mode="nearest")
        if sigma > 0 and len(seg) > 1:
            seg = gaussian_filter1d(seg, sigma, axis=0, mode="nearest")
        out[start:stop] = seg
    return out


def square_boxes(faces: np.ndarray, margin: float, shift_y: float) -> np.ndarray:
    """int64 (T, 4) square ``x0, y0, x1, y1`` around (centre x, centre y, size) rows."""
    side = np.maximum(2, np.round(faces[:, 2] * (1 + 2 * margin))).astype(np.int64)
    cx, cy = faces[:, 0], faces[:, 1] + shift_y * faces[:, 2]
    x0 = np.round(cx - side / 2).astype(np.int64)
    y0 = np.round(cy - side / 2).astype(np.int64)
    return np.stack([x0, y0, x0 + side, y0 + side], axis=1)


def track_from_detections(detections: Sequence[Iterable[Box] | None],
                          config: TrackConfig = TrackConfig(),
                          source: str = "<frames>") -> FaceTrack:
    """Steps 1-4 of the module docstring on per-frame detector outputs (``None``: a frame
    the detector did not check, see :func:`detect_keyframes`). Raises :class:`NoFaceError`
    naming ``source`` when no frame has a detection."""
    if not len(detections):
        raise NoFaceError(f"{source}: no frames to track")
    raw = pick_faces(detections)
    detected = ~np.isnan(raw[:, 0])
    checked = np.array([d is not None for d in detections], dtype=bool)
    if not detected.any():
        of = "" if checked.all() else f" ({int(checked.sum())} checked)"
        raise NoFaceError(f"{source}: no face detected in any of its {len(detections)} "
                          f"frames{of}")
    filled, found = fill_gaps(raw, config.max_gap)
    faces = smooth_runs(filled, found, config.smooth, config.median)
    return FaceTrack(square_boxes(faces, config.margin, config.shift_y), found, detected, faces,
                     source, checked)


def track_faces(frames: np.ndarray | Iterable[np.ndarray], detector: FaceDetector, *,
                max_gap: int = TrackConfig.max_gap, smooth: float = TrackConfig.smooth,
                margin: float = TrackConfig.margin, shift_y: float = TrackConfig.shift_y,
                source: str = "<frames>") -> FaceTrack:
    """Detect the face in every frame (uint8 (T, H, W, 3), or any iterable of (H, W, 3)
    frames) and track it; see the module docstring. Raises :class:`NoFaceError`."""
    config = TrackConfig(max_gap=max_gap, smooth=smooth, margin=margin, shift_y=shift_y)
    bad = config.problems()
    if bad:
        raise ValueError("; ".join(f"{k}: {v}" for k, v in bad))
    return track_from_detections([detector.detect(f) for f in frames], config, source)


def crop_and_resize(frame: np.ndarray, box: Sequence[int] | np.ndarray, size: int,
                    pad: str = "replicate") -> np.ndarray:
    """The square ``box`` (x0, y0, x1, y1) of ``frame`` (uint8 (H, W, 3)) as uint8
    (size, size, 3). Parts of the box outside the frame are padded (``"replicate"`` the
    edge pixels or ``"black"``); INTER_AREA when shrinking, bicubic when enlarging."""
    import cv2

    x0, y0, x1, y1 = (int(v) for v in box)
    if x1 - x0 < 1 or y1 - y0 < 1:
        raise ValueError(f"crop box {tuple(box)} is empty")
    h, w = frame.shape[:2]
    cx0, cy0, cx1, cy1 = max(x0, 0), max(y0, 0), min(x1, w), min(y1, h)
    if cx1 <= cx0 or cy1 <= cy0:  # entirely outside: nothing to replicate from
        crop = np.zeros((y1 - y0, x1 - x0, 3), np.uint8)
    else:
        crop = frame[cy0:cy1, cx0:cx1]
        pads = (cy0 - y0, y1 - cy1, cx0 - x0, x1 - cx1)
        if any(pads):
            mode = {"replicate": cv2.BORDER_REPLICATE, "black": cv2.BORDER_CONSTANT}[pad]
            crop = cv2.copyMakeBorder(np.ascontiguousarray(crop), *pads, mode, value=0)
    side = crop.shape[0]
    interp = cv2.INTER_AREA if side >= size else cv2.INTER_CUBIC
    return cv2.resize(np.ascontiguousarray(crop), (size, size), interpolation=interp)


__all__ = ["FaceTrack", "NoFaceError", "TrackConfig", "crop_and_resize", "detect_keyframes",
           "fill_gaps", "pick_face", "pick_faces", "smooth_runs", "square_boxes", "track_faces", "track_from_detections"]
