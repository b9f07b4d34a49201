"""Putting a generated face crop back into the full frame without a visible seam.

Only the lower-face region the model generated is replaced (the rest of the crop is the
original frame anyway); its edge is feathered with a Gaussian ramp so skin tone and
compression differences fade out instead of showing a rectangle.
"""

from __future__ import annotations

import cv2
import numpy as np


def feather_mask(mask: np.ndarray, size: int, feather: float = 0.06) -> np.ndarray:
    """(S, S) or (1, S, S) 0/1 mask -> float32 (size, size) alpha in [0, 1]: the mask,
    eroded by the feather width so the ramp stays inside the generated region, then blurred."""
    mask = np.asarray(mask, dtype=np.float32).reshape(mask.shape[-2:])
    alpha = cv2.resize(mask, (size, size), interpolation=cv2.INTER_NEAREST)
    width = round(feather * size)
    if width >= 1:
        # erode by the ramp width, then blur with sigma = width / 3: the ramp's tail (3 sigma)
        # ends at the original mask edge, so nothing outside the generated region changes
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * width + 1, 2 * width + 1))
        alpha = cv2.erode(alpha, kernel)
        sigma = width / 3.0
        alpha = cv2.GaussianBlur(alpha, (0, 0), sigmaX=sigma, sigmaY=sigma)
    return np.clip(alpha, 0.0, 1.0)


def paste_face(frame: np.ndarray, face: np.ndarray, box: tuple[int, int, int, int],
               alpha: np.ndarray) -> np.ndarray:
    """Blend ``face`` (S, S, 3) into ``frame`` (H, W, 3) at square ``box`` (x0, y0, x1, y1;
    may extend past the frame) with ``alpha`` at the box's size (see :func:`feather_mask`).
    Returns a new frame."""
    x0, y0, x1, y1 = (int(v) for v in box)
    side = x1 - x0
    if side <= 0 or y1 - y0 != side:
        raise ValueError(f"box {box} is not a non-empty square")
    if alpha.shape != (side, side):
        raise ValueError(f"alpha is {alpha.shape}, the box is {side}x{side}")
    height, width = frame.shape[:2]
    resized = cv2.resize(face, (side, side), interpolation=cv2.INTER_LINEAR if side > face.shape[0]
                         else cv2.INTER_AREA)
    fx0, fy0, fx1, fy1 = max(x0, 0), max(y0, 0), min(x1, width), min(y1, height)
    out = frame.copy()
    if fx1 <= fx0 or fy1 <= fy0:
        return out
    region = out[fy0:fy1, fx0:fx1].astype(np.float32)
    src = resized[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0].astype(np.float32)
    a = alpha[fy0 - y0:fy1 - y0, fx0 - x0:fx1 - x0, None]
    out[fy0:fy1, fx0:fx1] = np.clip(region * (1.0 - a) + src * a + 0.5, 0, 255).astype(np.uint8)
    return out
