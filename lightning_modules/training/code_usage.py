"""How much each memory code is used: the mean audio-mapping weight per code.

A torchmetrics Metric so the per-code sums are reduced across DDP ranks like any metric;
a collapse onto a few codes shows as a spiky histogram and a low entropy.
"""

from __future__ import annotations

import torch
from torchmetrics import Metric


class CodeUsage(Metric):
    full_state_update = False

    def __init__(self, num_codes: int) -> None:
        super().__init__()
        self.num_codes = num_codes
        self.add_state("weight_sum", default=torch.zeros(num_codes, dtype=torch.float64),
                       dist_reduce_fx="sum")
        self.add_state("count", default=torch.zeros((), dtype=torch.float64), dist_reduce_fx="sum")

    def update(self, weights: torch.Tensor) -> None:
        """weights: (B, n) softmax rows."""
        self.weight_sum += weights.detach().to(torch.float64).sum(dim=0)
        self.count += weights.shape[0]

    def compute(self) -> torch.Tensor:
        """(n,) mean weight per code; sums to 1."""
        return (self.weight_sum / self.count.clamp_min(1)).float()


def entropy(distribution: torch.Tensor) -> torch.Tensor:
    p = distribution.clamp_min(1e-12)
    return -(distribution * p.log()).sum()
