"""Keep what the input shows: the generated face is used only where the mask hid the input.

The generator's raw output is a whole face, but only the hidden (masked) region is its to
invent; everywhere else the input already shows the truth. Blending the raw output into the
visible input with a feathered alpha (1 on the mask, falling linearly to 0 a few pixels
outside it) makes the visible face exact by construction and hides the seam. The feather
lies outside the mask because inside it the input is blank.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F


def feather_pixels(feather: float, image_size: int) -> int:
    """The feather width in pixels for a width given as a fraction of the image side."""
    if feather < 0:
        raise ValueError(f"composite feather={feather}: must be >= 0 (a fraction of the side)")
    return round(feather * image_size)


def feathered_alpha(mask: torch.Tensor, pixels: int) -> torch.Tensor:
    """(N, 1, S, S) hard mask (1 = hidden) -> alpha: 1 on the mask, then ``1 - d / (p + 1)``
    at chessboard distance d <= p outside it, 0 beyond. No gradient flows into the mask."""
    mask = mask.detach().float()
    total, grown = mask.clone(), mask
    for _ in range(pixels):
        grown = F.max_pool2d(grown, kernel_size=3, stride=1, padding=1)
        total = total + grown
    return total / (pixels + 1)


def composite(generated: torch.Tensor, visible: torch.Tensor, alpha: torch.Tensor) -> torch.Tensor:
    """alpha * generated + (1 - alpha) * visible, in the generated tensor's dtype."""
    alpha = alpha.to(generated.dtype)
    return alpha * generated + (1.0 - alpha) * visible.to(generated.dtype)
