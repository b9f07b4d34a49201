"""Where the parts of a face sit in a lipmem face crop, as fractions of the crop side.

The synthetic renderer draws faces at these positions and real-video preparation crops so
that detected faces land near them; the lower-face masks are defined against them. One
place for the geometry keeps the mask, the corpus and the memory-bank crops in agreement.
"""

from __future__ import annotations

EYE_Y = 0.40          # eye centres
EYE_DX = 0.17         # horizontal offset of each eye from the centre line
BROW_Y = 0.32
NOSE_TIP_Y = 0.60
MOUTH_Y = 0.75        # mouth centre at rest
MOUTH_HALF_WIDTH = 0.13
CHIN_Y = 0.93
FACE_CENTER_Y = 0.55
FACE_HALF_WIDTH = 0.34
FACE_HALF_HEIGHT = 0.40


def mouth_box(image_size: int) -> tuple[int, int, int, int]:
    """(y0, y1, x0, x1) pixel box around the mouth at its widest and most open, for
    mouth-region metrics: it excludes the nose and cheeks that a lower-face mask also hides."""
    half_w = MOUTH_HALF_WIDTH + 0.04
    y0 = round((MOUTH_Y - 0.08) * image_size)
    y1 = round((MOUTH_Y + 0.10) * image_size)
    x0 = round((0.5 - half_w) * image_size)
    x1 = round((0.5 + half_w) * image_size)
    return y0, y1, x0, x1
