"""Wav2Lip's expert sync loss: -log P(in sync) of generated windows, by a frozen sync expert.

The expert (``lipmem fit --config configs/sync_expert.yaml``) is loaded from a reference or
a file and never trained further (its parameters take no gradient and it stays in eval
mode, so its BatchNorm statistics do not drift toward generated faces). Generated frames
must come as windows of at least the expert's ``window`` consecutive frames
(``data.frames_per_window >= 5``); the centred window and the centre frame's mel are scored.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from lightning_modules.checkpoints.sync_expert_file import load_sync_expert
from lightning_modules.nets.sync_net import centre_window


class SyncLoss(nn.Module):
    def __init__(self, expert: str, registry: str | None = None) -> None:
        super().__init__()
        loaded = load_sync_expert(expert, registry)
        self.ref = loaded.ref
        self.net = loaded.net.eval()
        for p in self.net.parameters():
            p.requires_grad_(False)
        self.register_buffer("scale", torch.tensor(loaded.scale), persistent=False)
        self.register_buffer("bias", torch.tensor(loaded.bias), persistent=False)

    @property
    def window(self) -> int:
        return self.net.window

    def train(self, mode: bool = True) -> SyncLoss:
        super().train(mode)
        self.net.eval()
        return self

    def forward(self, fake: torch.Tensor, mel: torch.Tensor) -> torch.Tensor:
        """fake (B, T, 3, S, S) in [0, 1], mel (B, T, 1, n_mels, F) -> mean -log P(sync)."""
        faces = centre_window(fake, self.window)
        cosine = self.net(faces, mel[:, mel.shape[1] // 2])
        logits = cosine * self.scale + self.bias
        return F.binary_cross_entropy_with_logits(logits, torch.ones_like(logits))
