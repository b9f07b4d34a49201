"""Image encoder: masked face (optionally with a reference frame) -> face feature + skips."""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets.blocks import ConvBlock, stage_channels, stage_sizes


class ImageEncoder(nn.Module):
    """Strided conv stages down to 3-8 px, then a valid conv to a 1x1 `embed_dim` vector.

    The same class encodes the masked face for the generator and the lower-face crops whose
    cluster centres become the memory codes (method claim 3 wants the same architecture), so
    the memory codes live in `embed_dim`.
    """

    def __init__(self, in_channels: int = 3, image_size: int = 96, base_channels: int = 32,
                 max_channels: int = 256, embed_dim: int = 256, norm: str = "batch") -> None:
        super().__init__()
        sizes = stage_sizes(image_size)
        chans = stage_channels(len(sizes), base_channels, max_channels)
        self.image_size = image_size
        self.embed_dim = embed_dim
        self.skip_channels = chans
        self.bottom_size = sizes[-1]
        stages = [nn.Sequential(ConvBlock(in_channels, chans[0], norm=norm),
                                ConvBlock(chans[0], chans[0], norm=norm))]
        for prev, cur in zip(chans[:-1], chans[1:]):
            stages.append(nn.Sequential(ConvBlock(prev, cur, stride=2, norm=norm),
                                        ConvBlock(cur, cur, norm=norm)))
        self.stages = nn.ModuleList(stages)
        self.to_embedding = nn.Sequential(
            nn.Conv2d(chans[-1], embed_dim, self.bottom_size, 1, 0),
            nn.Flatten(),
            nn.LayerNorm(embed_dim),
        )

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, list[torch.Tensor]]:
        """Returns (embedding (B, embed_dim), skip maps from full resolution downwards)."""
        skips = []
        x = image
        for stage in self.stages:
            x = stage(x)
            skips.append(x)
        return self.to_embedding(x), skips

    def embed(self, image: torch.Tensor) -> torch.Tensor:
        return self.forward(image)[0]
