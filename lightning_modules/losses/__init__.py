"""Loss modules: weights are constructor arguments, so every weight is a config/sweep key."""

from lightning_modules.losses.adversarial import discriminator_loss, generator_adversarial_loss
from lightning_modules.losses.lipsync_loss import LipSyncLoss
from lightning_modules.losses.perceptual import LPIPSLoss, LPIPSWeightsMissing

__all__ = [
    "LPIPSLoss",
    "LPIPSWeightsMissing",
    "LipSyncLoss",
    "discriminator_loss",
    "generator_adversarial_loss",
]
