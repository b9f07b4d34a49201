"""L1 that weighs the pixels a generator has to invent, and the mouth most of all.

With a plain mean, the visible face (given by the input) and the skin, jaw and neck of
the hidden region (easy once the colour is right) outweigh the few pixels of the mouth, and
a network learns them first: for hundreds of steps it draws one average, closed mouth.
Pixels of the hidden region weigh ``1 + mask_emphasis``, and those of the mouth box
(datamodules.face_layout.mouth_box) ``mouth_emphasis`` more; the sum is normalised by the
mean weight, so the term stays a mean absolute error in pixel units.
"""

from __future__ import annotations

import torch

from datamodules.face_layout import mouth_box


def region_weights(mask: torch.Tensor, mask_emphasis: float, mouth_emphasis: float
                   ) -> torch.Tensor:
    """(N, 1, S, S) per-pixel weights from the hidden-region mask (1 = hidden)."""
    weight = 1.0 + mask_emphasis * mask
    if mouth_emphasis:
        y0, y1, x0, x1 = mouth_box(mask.shape[-1])
        weight = weight.clone()
        weight[..., y0:y1, x0:x1] += mouth_emphasis
    return weight


def region_l1(fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None,
              mask_emphasis: float = 10.0, mouth_emphasis: float = 0.0) -> torch.Tensor:
    """Weighted mean absolute error (a plain mean without a mask or any emphasis)."""
    err = (fake - real).abs()
    if mask is None or (mask_emphasis == 0 and mouth_emphasis == 0):
        return err.mean()
    weight = region_weights(mask.to(err.dtype), mask_emphasis, mouth_emphasis)
    return (err * weight).mean() / weight.mean()


def check_emphasis(name: str, value: float) -> None:
    if value < 0:
        raise ValueError(f"{name}={value}: must be >= 0")
