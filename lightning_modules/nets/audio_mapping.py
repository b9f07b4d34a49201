"""Audio mapping: audio feature -> n softmax weights, one per memory mouth code (claim 7)."""

from __future__ import annotations

import torch
from torch import nn


class AudioMapping(nn.Module):
    """linear -> activation -> normalisation -> linear -> softmax; weights sum to 1."""

    def __init__(self, audio_dim: int = 256, num_codes: int = 80, hidden_dim: int = 256,
                 temperature: float = 1.0) -> None:
        super().__init__()
        if num_codes <= 0:
            raise ValueError(f"num_codes={num_codes}: the memory needs at least one code")
        if temperature <= 0:
            raise ValueError(f"temperature={temperature}: must be positive")
        self.num_codes = num_codes
        self.temperature = temperature
        self.net = nn.Sequential(
            nn.Linear(audio_dim, hidden_dim),
            nn.GELU(),
            nn.LayerNorm(hidden_dim),
            nn.Linear(hidden_dim, num_codes),
        )

    def logits(self, audio_feature: torch.Tensor) -> torch.Tensor:
        return self.net(audio_feature)

    def forward(self, audio_feature: torch.Tensor) -> torch.Tensor:
        """(B, audio_dim) -> (B, num_codes), non-negative, rows sum to 1."""
        return torch.softmax(self.logits(audio_feature).float() / self.temperature, dim=-1)
