"""Face detectors behind one small interface, so clusters can plug in a better one.

The default, :class:`HaarFaceDetector`, is OpenCV's frontal-face Haar cascade whose XML ships
inside the ``opencv-python-headless`` wheel (``cv2.data.haarcascades``): no download, works
offline, about a millisecond per downscaled frame. It only finds roughly frontal faces, which
is what talking-head footage is; for profile-heavy footage plug in S3FD, RetinaFace or
InsightFace::

    class S3FD:                      # anything with this method is a FaceDetector
        def __init__(self, weights="s3fd.pth", device="cuda"): ...
        def detect(self, frame_rgb):  # uint8 (H, W, 3)
            return [(x, y, w, h, score), ...]   # pixels of frame_rgb

    lipmem data prep --detector mypkg.faces.S3FD --detector-args '{"device": "cuda:0"}'

Detectors are built by class path inside each worker process (:func:`load_detector`), so they
need not be picklable. A class path is taken only from the command line: a detector named in
a file (a checkpoint's crop record, a manifest) must be a built-in alias
(:func:`builtin_detector`), because a file must never choose code to import.
"""

from __future__ import annotations

import importlib
from collections.abc import Mapping
from typing import Any, Protocol, runtime_checkable

import numpy as np

Box = tuple[int, int, int, int, float]  # x, y, w, h (pixels of the frame given), score
DEFAULT_DETECTOR = "haar"
_ALIASES = {"haar": "datamodules.prep.face_detect.HaarFaceDetector"}


@runtime_checkable
class FaceDetector(Protocol):
    """Finds faces in one RGB frame."""

    def detect(self, frame_rgb: np.ndarray) -> list[Box]:
        """Boxes ``(x, y, w, h, score)`` in pixels of ``frame_rgb`` (uint8 (H, W, 3)); empty
        when there is no face. Higher score = more confident; scales may differ between
        detectors (only the order within a frame is used)."""
        ...


class HaarFaceDetector:
    """OpenCV's bundled frontal-face Haar cascade, run on a grey copy of the frame
    downscaled so its longer side is at most ``max_side`` (speed; talking-head faces are
    large). The score is the cascade's level weight (``detectMultiScale3``)."""

    def __init__(self, cascade: str = "haarcascade_frontalface_default.xml",
                 max_side: int = 320, scale_factor: float = 1.1, min_neighbors: int = 5,
                 min_size: float = 0.08) -> None:
        """``min_size``: smallest face side as a fraction of the frame's shorter side."""
        import cv2

        path = cascade if "/" in cascade else cv2.data.haarcascades + cascade
        self._cascade = cv2.CascadeClassifier(path)
        if self._cascade.empty():
            raise ValueError(f"HaarFaceDetector: cascade {path!r} could not be loaded")
        if max_side < 32:
            raise ValueError(f"HaarFaceDetector: max_side={max_side}, expected >= 32")
        self.max_side = int(max_side)
        self.scale_factor = float(scale_factor)
        self.min_neighbors = int(min_neighbors)
        self.min_size = float(min_size)

    def detect(self, frame_rgb: np.ndarray, min_face: float | None = None) -> list[Box]:
        """``min_face``: skip faces smaller than this side (pixels of ``frame_rgb``): a
        tracker that knows the face's size skips the smallest scales, which cost the most
        (about half the time); the boxes found at the other scales are the same."""
        import cv2

        if frame_rgb.ndim != 3 or frame_rgb.shape[2] != 3:
            raise ValueError(f"detect: expected an RGB frame (H, W, 3), got {frame_rgb.shape}")
        h, w = frame_rgb.shape[:2]
        scale = min(1.0, self.max_side / max(h, w))
        small = frame_rgb if scale == 1.0 else cv2.resize(
            frame_rgb, (max(1, round(w * scale)), max(1, round(h * scale))),
            interpolation=cv2.INTER_AREA)
        grey = cv2.equalizeHist(cv2.cvtColor(small, cv2.COLOR_RGB2GRAY))
        side = max(16, int(self.min_size * min(grey.shape)),
                   int(min_face * scale) if min_face else 0)
        boxes, _, weights = self._cascade.detectMultiScale3(
            grey, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(side, side), outputRejectLevels=True)
        out: list[Box] = []
        for (x, y, bw, bh), score in zip(np.asarray(boxes).reshape(-1, 4),
                                         np.asarray(weights).reshape(-1), strict=True):
            out.append((round(x / scale), round(y / scale), round(bw / scale),
                        round(bh / scale), float(score)))
        return out


def scale_boxes(boxes: list[Box], sx: float, sy: float) -> list[Box]:
    """Boxes found on a resized frame, in pixels of the original (``sx`` = original width /
    resized width, ``sy`` likewise)."""
    if sx == 1.0 and sy == 1.0:
        return list(boxes)
    return [(round(x * sx), round(y * sy), round(w * sx), round(h * sy), score)
            for x, y, w, h, score in boxes]


def builtin_detector(spec: Any, where: str) -> str | None:
    """The built-in detector alias that ``spec`` (read from a file: ``where`` says which and
    what key) names, None for the default. Any other value is a ValueError: importing a
    class path found in a file would let that file choose code to run."""
    if spec is None:
        return None
    if isinstance(spec, str):
        if spec in _ALIASES:
            return spec
        for alias, path in _ALIASES.items():
            if spec == path:
                return alias
    raise ValueError(f"{where} names face detector {spec!r}; a detector read from a file must "
                     f"be one of the built-in {sorted(_ALIASES)} (files never choose code to "
                     f"import). To use that class, name it yourself: --detector CLASS_PATH")


def load_detector(spec: str | FaceDetector | None = None,
                  kwargs: Mapping[str, Any] | None = None) -> FaceDetector:
    """A detector instance from ``spec``: None or ``"haar"`` for :class:`HaarFaceDetector`,
    a class path ``"pkg.module.Class"`` (or ``"pkg.module:Class"``) instantiated with
    ``kwargs``, or an instance, returned as is. Raises ValueError naming ``spec`` when it
    cannot be imported or lacks ``detect``."""
    if spec is not None and not isinstance(spec, str):
        if not isinstance(spec, FaceDetector):
            raise ValueError(f"detector {spec!r} has no detect(frame_rgb) method")
        return spec
    path = _ALIASES.get(spec or DEFAULT_DETECTOR, spec or DEFAULT_DETECTOR)
    module_name, sep, attr = path.partition(":")
    if not sep:
        module_name, _, attr = path.rpartition(".")
    if not module_name or not attr:
        raise ValueError(f"detector {spec!r}: expected 'haar' or a class path like "
                         f"'mypkg.faces.S3FD'")
    try:
        cls = getattr(importlib.import_module(module_name), attr)
    except (ImportError, AttributeError) as exc:
        raise ValueError(f"detector {spec!r}: cannot import {attr!r} from {module_name!r} "
                         f"({type(exc).__name__}: {exc})") from exc
    detector = cls(**dict(kwargs or {}))
    if not isinstance(detector, FaceDetector):  # a user's option, hence ValueError
        message = f"detector {spec!r}: {cls!r} instances have no detect(frame_rgb) method"
        raise ValueError(message)  # noqa: TRY004
    return detector


__all__ = ["DEFAULT_DETECTOR", "Box", "FaceDetector", "HaarFaceDetector", "builtin_detector",
           "load_detector", "scale_boxes"]
