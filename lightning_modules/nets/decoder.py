"""Decoder: face feature + audio feature + fused mouth feature (+ encoder skips) -> face."""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets.blocks import ConvBlock, UpBlock, make_norm
from lightning_modules.nets.constant_channel_conv import conv_with_constant_channels


class Decoder(nn.Module):
    """Mirror of the ImageEncoder (conv, transposed conv, activation, normalisation).

    The three vectors are joined at the 1x1 bottleneck, as the method says; the audio and
    fused mouth features are also broadcast into every upsampling stage as a few extra
    channels, so the mouth, which the skips cannot carry (it is masked), is drawn from them
    at every scale rather than squeezed through the bottleneck alone. Those broadcast
    channels are never materialised: each fuse conv applies its weights for them to the
    vector directly (`conv_with_constant_channels`, exact).
    """

    def __init__(self, skip_channels: list[int], bottom_size: int, face_dim: int = 256,
                 audio_dim: int = 256, mouth_dim: int = 256, cond_channels: int = 32,
                 out_channels: int = 3, norm: str = "batch", spatial_cond_max: int = 0) -> None:
        super().__init__()
        chans = list(skip_channels)
        self.bottom_size = bottom_size
        self.cond_channels = cond_channels
        sizes = [bottom_size * 2 ** (len(chans) - 1 - i) for i in range(len(chans))]
        # levels up to spatial_cond_max px get the audio + mouth vector as a learned map
        # (a transposed conv from 1x1 to the level's size) instead of constant channels:
        # a canvas on which a code can place a mouth, which constant channels cannot
        self.spatial = nn.ModuleDict({
            str(level): nn.ConvTranspose2d(audio_dim + mouth_dim, cond_channels, size, 1, 0)
            for level, size in enumerate(sizes) if size <= spatial_cond_max})
        joint = face_dim + audio_dim + mouth_dim
        self.from_vector = nn.Sequential(
            nn.ConvTranspose2d(joint, chans[-1], bottom_size, 1, 0, bias=False),
            make_norm(norm, chans[-1]),
            nn.LeakyReLU(0.2, inplace=True),
        )
        self.condition = nn.Sequential(nn.Linear(audio_dim + mouth_dim, cond_channels),
                                       nn.LayerNorm(cond_channels))
        self.fuse = nn.ModuleList(
            [ConvBlock(2 * c + cond_channels, c, norm=norm) for c in chans]
        )
        self.up = nn.ModuleList([UpBlock(chans[i + 1], chans[i], norm)
                                 for i in range(len(chans) - 1)])
        self.to_rgb = nn.Sequential(nn.Conv2d(chans[0], out_channels, 1), nn.Sigmoid())

    def forward(self, face: torch.Tensor, audio: torch.Tensor, mouth: torch.Tensor,
                skips: list[torch.Tensor]) -> torch.Tensor:
        """Vectors (B, *) and skips (full resolution first) -> image (B, 3, S, S) in [0, 1]."""
        vector = torch.cat([face, audio, mouth.to(face.dtype)], dim=1)
        cond = self.condition(torch.cat([audio, mouth.to(audio.dtype)], dim=1))
        x = self.from_vector(vector[:, :, None, None])
        pair = torch.cat([audio, mouth.to(audio.dtype)], dim=1)
        for level in range(len(skips) - 1, -1, -1):
            conv, norm, act = self.fuse[level]
            if str(level) in self.spatial:
                canvas = self.spatial[str(level)](pair[:, :, None, None].to(x.dtype))
                x = act(norm(conv(torch.cat([x, skips[level], canvas], dim=1))))
            else:
                x = act(norm(conv_with_constant_channels(
                    conv, torch.cat([x, skips[level]], dim=1), cond)))
            if level > 0:
                x = self.up[level - 1](x)
        return self.to_rgb(x)
