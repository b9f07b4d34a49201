"""Memory of n mouth-shape codes and their audio-weighted fusion (claim 1, steps 4-5)."""

from __future__ import annotations

import torch
from torch import nn

# How the generator uses the memory (LipSyncGenerator(memory_mode=...); the ablation's arms):
#   softmax: fused = softmax weights @ codes, the method.
#   argmax:  fused = the single most likely code (one-hot weights, straight-through gradient).
#   none:    no memory; the decoder's mouth input is an MLP of the audio feature instead.
MEMORY_MODES = ("softmax", "argmax", "none")


def straight_through_argmax(weights: torch.Tensor) -> torch.Tensor:
    """(B, n) softmax rows -> exactly one-hot rows (the most likely code) in the forward pass,
    with the softmax's gradient in the backward pass, so the mapping head still trains."""
    hard = torch.nn.functional.one_hot(weights.argmax(dim=-1), weights.shape[-1]).to(weights)
    return hard + (weights - weights.detach())


class MemoryFusion(nn.Module):
    """Fused mouth feature = weights @ codes.

    The codes are a buffer, not a parameter: they are cluster centres computed outside
    training (the memory bank) and must not drift under the optimiser. Being a persistent
    buffer, they travel inside every checkpoint, so a trained model carries its bank.
    """

    codes: torch.Tensor

    def __init__(self, num_codes: int = 80, code_dim: int = 256) -> None:
        super().__init__()
        if num_codes <= 0:
            raise ValueError(f"num_codes={num_codes}: the memory needs at least one code")
        if code_dim <= 0:
            raise ValueError(f"code_dim={code_dim}: must be positive")
        self.num_codes = num_codes
        self.code_dim = code_dim
        # Placeholder until real codes are loaded; `loaded` tells the two apart in checkpoints.
        self.register_buffer("codes", torch.zeros(num_codes, code_dim))
        self.register_buffer("loaded", torch.zeros((), dtype=torch.bool))

    @torch.no_grad()
    def load_codes(self, codes: torch.Tensor) -> None:
        """Install an (n, d) code matrix, refusing one whose shape disagrees with the model."""
        if codes.shape != (self.num_codes, self.code_dim):
            raise ValueError(
                f"memory codes have shape {tuple(codes.shape)} but the generator expects "
                f"(num_codes={self.num_codes}, code_dim={self.code_dim})"
            )
        if not torch.isfinite(codes).all():
            raise ValueError("memory codes contain NaN or infinite values")
        self.codes.copy_(codes.to(self.codes))
        self.loaded.fill_(True)

    def forward(self, weights: torch.Tensor) -> torch.Tensor:
        """(B, n) weights -> (B, d) fused mouth feature."""
        return weights.to(self.codes.dtype) @ self.codes
