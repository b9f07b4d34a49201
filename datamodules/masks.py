"""Lower-face masks: which part of the face the generator has to produce.

The method hides at least the mouth, with one of three shapes (rectangle, semicircle, half
face) over one of three regions (lips only, nose tip to chin, below the eyes to chin).
Everything is placed with the face-layout fractions of :mod:`datamodules.face_layout`, so
the mask, the synthetic renderer and the memory-bank crops agree. A pixel is hidden when
its centre ``((col + 0.5) / S, (row + 0.5) / S)`` lies inside the shape.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from datamodules import face_layout as fl

SHAPES = ("rectangle", "semicircle", "half_face")
REGIONS = ("lips", "nose_to_chin", "below_eyes")

# Top edge of the hidden region per region name, as a fraction of the crop height.
REGION_TOPS = {
    "lips": fl.MOUTH_Y - 0.08,       # a bit above the mouth: the open upper lip stays inside
    "nose_to_chin": fl.NOSE_TIP_Y,   # from the nose tip
    "below_eyes": fl.EYE_Y + 0.05,   # a little below the eye centres
}
FACE_CENTER_X = 0.5


class LowerFaceMask:
    """A fixed (1, S, S) float mask, 1 = hidden (generated) region, 0 = visible."""

    def __init__(self, shape: str = "rectangle", region: str = "nose_to_chin",
                 top: float | None = None, image_size: int = 96) -> None:
        if shape not in SHAPES:
            raise ValueError(f"mask shape {shape!r} is not one of {list(SHAPES)}")
        if region not in REGIONS:
            raise ValueError(f"mask region {region!r} is not one of {list(REGIONS)}")
        if isinstance(image_size, bool) or not isinstance(image_size, int) or image_size < 8:
            raise ValueError(f"image_size={image_size!r}: must be an integer >= 8")
        if top is not None:
            if isinstance(top, bool) or not isinstance(top, (int, float)) or not 0.0 < top < 1.0:
                raise ValueError(f"mask top={top!r}: must be a fraction of the crop height "
                                 f"in (0, 1)")
            if top >= fl.MOUTH_Y:
                raise ValueError(f"mask top={top!r}: must lie above the mouth centre "
                                 f"(MOUTH_Y={fl.MOUTH_Y}) so the mask covers the mouth")
        self.shape = shape
        self.region = region
        self.top = float(top) if top is not None else REGION_TOPS[region]
        self.image_size = image_size
        self._array = self._build()
        if not self._array.any():
            raise ValueError(f"mask top={self.top}: hides no pixel at image_size={image_size}")

    def _build(self) -> np.ndarray:
        s = self.image_size
        centres = (np.arange(s) + 0.5) / s
        y, x = np.meshgrid(centres, centres, indexing="ij")
        below = y >= self.top
        if self.shape == "half_face":
            hidden = below
        elif self.shape == "rectangle":
            hidden = (below & (y <= fl.CHIN_Y)
                      & (np.abs(x - FACE_CENTER_X) <= fl.FACE_HALF_WIDTH))
        else:  # semicircle: lower half of an ellipse, flat edge on the top line, reaching the chin
            ry = fl.CHIN_Y - self.top
            inside = ((x - FACE_CENTER_X) / fl.FACE_HALF_WIDTH) ** 2 + ((y - self.top) / ry) ** 2
            hidden = below & (inside <= 1.0)
        return hidden.astype(np.float32)[None]

    def numpy(self) -> np.ndarray:
        """(1, S, S) float32 copy."""
        return self._array.copy()

    def tensor(self) -> torch.Tensor:
        """(1, S, S) float32 tensor, 1 = hidden."""
        return torch.from_numpy(self._array.copy())

    def bbox(self) -> tuple[int, int, int, int]:
        """(y0, y1, x0, x1) pixel bounds of the hidden region, end-exclusive (slice-ready)."""
        rows = np.flatnonzero(self._array[0].any(axis=1))
        cols = np.flatnonzero(self._array[0].any(axis=0))
        return int(rows[0]), int(rows[-1]) + 1, int(cols[0]), int(cols[-1]) + 1

    @property
    def hidden_fraction(self) -> float:
        return float(self._array.mean())

    def describe(self) -> dict[str, Any]:
        return {"shape": self.shape, "region": self.region, "top": round(self.top, 6),
                "image_size": self.image_size, "bbox": list(self.bbox()),
                "hidden_fraction": round(self.hidden_fraction, 6)}

    def __repr__(self) -> str:
        return (f"LowerFaceMask(shape={self.shape!r}, region={self.region!r}, top={self.top:.3f}, "
                f"image_size={self.image_size})")
