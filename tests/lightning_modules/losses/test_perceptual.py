"""The LPIPS wrapper's random backbone is reproducible."""

from __future__ import annotations

import torch

from lightning_modules.losses.perceptual import LPIPSLoss


def test_random_backbone_is_the_same_network_every_time():
    """Evaluations with the random backbone must be comparable across runs."""
    first = LPIPSLoss(backbone="random")
    torch.manual_seed(1234)  # whatever the global RNG state
    second = LPIPSLoss(backbone="random")
    for a, b in zip(first.state_dict().values(), second.state_dict().values(), strict=True):
        assert torch.equal(a, b)
