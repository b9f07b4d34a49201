"""PatchGAN discriminator (pix2pix's N-layer design): judges local patches, here the mouth."""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets.blocks import make_norm


class PatchDiscriminator(nn.Module):
    """Outputs a map of real/fake logits, one per receptive-field patch (70 px at n_layers=3)."""

    def __init__(self, in_channels: int = 3, base_channels: int = 32, n_layers: int = 3,
                 max_channels: int = 256) -> None:
        super().__init__()
        if n_layers < 1:
            raise ValueError(f"n_layers={n_layers}: must be at least 1")
        layers: list[nn.Module] = [nn.Conv2d(in_channels, base_channels, 4, 2, 1),
                                   nn.LeakyReLU(0.2, inplace=True)]
        ch = base_channels
        for i in range(1, n_layers + 1):
            nxt = min(base_channels * 2**i, max_channels)
            stride = 2 if i < n_layers else 1
            layers += [nn.Conv2d(ch, nxt, 4, stride, 1, bias=False), make_norm("group", nxt),
                       nn.LeakyReLU(0.2, inplace=True)]
            ch = nxt
        layers.append(nn.Conv2d(ch, 1, 4, 1, 1))
        self.net = nn.Sequential(*layers)

    def forward(self, image: torch.Tensor) -> torch.Tensor:
        """image (B, 3, S, S) in [0, 1] -> logits (B, 1, h, w)."""
        return self.net(image * 2.0 - 1.0)
