"""Audio encoder: a log-mel window -> audio feature (linear, self-attention, conv, norm)."""

from __future__ import annotations

import torch
from torch import nn


class AudioEncoder(nn.Module):
    """Mel frames are projected, mixed by self-attention (context before and after the video
    frame, which is why the window spans >= 5 frames), then convolved and pooled."""

    def __init__(self, n_mels: int = 80, mel_frames: int = 16, dim: int = 256, heads: int = 4,
                 attention_layers: int = 1, dropout: float = 0.0) -> None:
        super().__init__()
        if mel_frames < 4:
            raise ValueError(f"mel_frames={mel_frames}: need at least 4 mel frames of context")
        self.n_mels = n_mels
        self.mel_frames = mel_frames
        self.dim = dim
        self.project = nn.Linear(n_mels, dim)
        self.position = nn.Parameter(torch.zeros(1, mel_frames, dim))
        nn.init.trunc_normal_(self.position, std=0.02)
        layer = nn.TransformerEncoderLayer(dim, heads, dim_feedforward=2 * dim, dropout=dropout,
                                           activation="gelu", batch_first=True, norm_first=True)
        self.attention = nn.TransformerEncoder(layer, attention_layers, enable_nested_tensor=False)
        self.conv = nn.Sequential(
            nn.Conv1d(dim, dim, 3, 2, 1), nn.BatchNorm1d(dim), nn.LeakyReLU(0.2, inplace=True),
            nn.Conv1d(dim, dim, 3, 2, 1), nn.BatchNorm1d(dim), nn.LeakyReLU(0.2, inplace=True),
        )
        self.out_norm = nn.LayerNorm(dim)

    def forward(self, mel: torch.Tensor) -> torch.Tensor:
        """mel (B, 1, n_mels, mel_frames) -> (B, dim)."""
        if mel.dim() != 4 or mel.shape[1:] != (1, self.n_mels, self.mel_frames):
            raise ValueError(f"mel must be (B, 1, {self.n_mels}, {self.mel_frames}), "
                             f"got {tuple(mel.shape)}")
        x = self.project(mel[:, 0].transpose(1, 2)) + self.position  # (B, T, dim)
        x = self.attention(x)
        x = self.conv(x.transpose(1, 2)).mean(dim=2)
        return self.out_norm(x)
