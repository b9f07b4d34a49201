"""GAN objectives for the PatchGAN logits maps."""

from __future__ import annotations

import torch
import torch.nn.functional as F

GAN_MODES = ("hinge", "lsgan")


def discriminator_loss(real_logits: torch.Tensor, fake_logits: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "hinge":
        return 0.5 * (F.relu(1.0 - real_logits).mean() + F.relu(1.0 + fake_logits).mean())
    if mode == "lsgan":
        return 0.5 * ((real_logits - 1.0).pow(2).mean() + fake_logits.pow(2).mean())
    raise ValueError(f"gan_mode={mode!r}: expected one of {GAN_MODES}")


def generator_adversarial_loss(fake_logits: torch.Tensor, mode: str) -> torch.Tensor:
    if mode == "hinge":
        return -fake_logits.mean()
    if mode == "lsgan":
        return (fake_logits - 1.0).pow(2).mean()
    raise ValueError(f"gan_mode={mode!r}: expected one of {GAN_MODES}")
