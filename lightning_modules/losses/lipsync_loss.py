"""The generator's weighted loss and the discriminator's loss, one module (taming-style).

The module owns the discriminator and perceptual (LPIPS / ST-LPIPS) network, so a config swaps the whole objective
at one key and every weight (`model.loss.l1_weight`, ...) is a plain sweepable number.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.losses.adversarial import (
    GAN_MODES,
    discriminator_loss,
    generator_adversarial_loss,
)
from lightning_modules.losses.perceptual import LPIPSLoss
from lightning_modules.losses.region_l1 import check_emphasis, region_l1
from lightning_modules.nets.discriminator import PatchDiscriminator


class LipSyncLoss(nn.Module):
    """G: l1_weight * L1 + adv_weight * adversarial + lpips_weight * perceptual (claims 5-6).

    The perceptual term is LPIPS or ST-LPIPS (`lpips_backbone`, see losses.perceptual) and is
    logged under its own name, `g_lpips` or `g_stlpips`."""

    def __init__(self, l1_weight: float = 10.0, adv_weight: float = 0.1, lpips_weight: float = 1.0,
                 gan_mode: str = "hinge", adv_start_step: int = 0, lpips_net: str = "alex",
                 lpips_backbone: str = "auto", disc_channels: int = 32, disc_layers: int = 3,
                 mask_l1_emphasis: float = 10.0, mouth_l1_emphasis: float = 0.0,
                 require_l1_highest: bool = True,
                 sync_weight: float = 0.0, sync_expert: str | None = None,
                 sync_registry: str | None = None) -> None:
        """sync_weight > 0 adds Wav2Lip's expert sync loss (-log P(sync) by the frozen sync
        expert ``sync_expert``, a `syncnet-RUN:best` reference or .ckpt file); it needs
        data.frames_per_window >= the expert's window (5). Off by default."""
        super().__init__()
        for name, value in (("l1_weight", l1_weight), ("adv_weight", adv_weight),
                            ("lpips_weight", lpips_weight)):
            if value < 0:
                raise ValueError(f"model.loss.{name}={value}: loss weights must be >= 0")
        if require_l1_highest and not (l1_weight > adv_weight and l1_weight > lpips_weight):
            raise ValueError(
                f"model.loss.l1_weight={l1_weight} must exceed adv_weight={adv_weight} and "
                f"lpips_weight={lpips_weight} (the method weights L1 highest); set "
                "model.loss.require_l1_highest=false to explore outside that region"
            )
        if gan_mode not in GAN_MODES:
            raise ValueError(f"model.loss.gan_mode={gan_mode!r}: expected one of {GAN_MODES}")
        check_emphasis("model.loss.mask_l1_emphasis", mask_l1_emphasis)
        check_emphasis("model.loss.mouth_l1_emphasis", mouth_l1_emphasis)
        if adv_start_step < 0:
            raise ValueError(f"model.loss.adv_start_step={adv_start_step}: must be >= 0")
        if sync_weight < 0:
            raise ValueError(f"model.loss.sync_weight={sync_weight}: loss weights must be >= 0")
        if sync_weight > 0 and not sync_expert:
            raise ValueError(f"model.loss.sync_weight={sync_weight} needs model.loss.sync_expert "
                             "(a sync expert reference such as syncnet-RUN:best, trained with "
                             "`lipmem fit --config configs/sync_expert.yaml`)")
        self.l1_weight = l1_weight
        self.adv_weight = adv_weight
        self.lpips_weight = lpips_weight
        self.gan_mode = gan_mode
        self.adv_start_step = adv_start_step
        self.mask_l1_emphasis = mask_l1_emphasis
        self.mouth_l1_emphasis = mouth_l1_emphasis
        self.discriminator = PatchDiscriminator(3, disc_channels, disc_layers)
        self.perceptual = LPIPSLoss(lpips_net, lpips_backbone)
        self.sync_weight = sync_weight
        self.sync = None
        if sync_weight > 0:
            from lightning_modules.losses.sync_loss import SyncLoss

            self.sync = SyncLoss(str(sync_expert), sync_registry)

    def l1(self, fake: torch.Tensor, real: torch.Tensor, mask: torch.Tensor | None) -> torch.Tensor:
        """Per-pixel L1 with the generated region weighted ``1 + mask_l1_emphasis`` and the
        mouth box ``mouth_l1_emphasis`` more (losses.region_l1), still a mean absolute error.

        The visible upper face comes back through the skips almost for free; without the
        emphasis it dominates the plain mean and the model is slow to learn that the mouth
        follows the audio (the same imbalance Wav2Lip reports for its lip region).
        """
        return region_l1(fake, real, mask, self.mask_l1_emphasis, self.mouth_l1_emphasis)

    def generator_loss(self, fake: torch.Tensor, real: torch.Tensor, step: int,
                       mask: torch.Tensor | None = None, mel: torch.Tensor | None = None,
                       frames_per_window: int = 1
                       ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        """Weighted sum for the generator step (mask: (B, 1, S, S), 1 = generated region).

        The adversarial term is always computed and multiplied by 0 before
        `adv_start_step`, so the discriminator takes part in every backward pass and DDP
        needs no `find_unused_parameters`.
        """
        l1 = self.l1(fake, real, mask)
        adv = generator_adversarial_loss(self.discriminator(fake), self.gan_mode)
        lp = self.perceptual(fake.float(), real.float()) if self.lpips_weight > 0 else fake.new_zeros(())
        adv_factor = self.adv_weight if step >= self.adv_start_step else 0.0
        total = self.l1_weight * l1 + adv_factor * adv + self.lpips_weight * lp
        logs = {"g_total": total.detach(), "g_l1": l1.detach(), "g_adv": adv.detach(),
                f"g_{self.perceptual.metric_name}": lp.detach()}  # g_lpips or g_stlpips
        if self.sync is not None:
            sync = self.sync_loss(fake, mel, frames_per_window)
            total = total + self.sync_weight * sync
            logs.update(g_total=total.detach(), g_sync=sync.detach())
        return total, logs

    def sync_loss(self, fake: torch.Tensor, mel: torch.Tensor | None,
                  frames_per_window: int) -> torch.Tensor:
        """The expert's -log P(sync) of the generated windows: fake (B*T, 3, S, S) and mel
        (B*T, 1, n_mels, F) with T = frames_per_window consecutive frames per window."""
        if mel is None:
            raise ValueError("model.loss.sync_weight > 0 needs the mel windows (mel=...)")
        if frames_per_window < self.sync.window:
            raise ValueError(f"model.loss.sync_weight > 0: data.frames_per_window="
                             f"{frames_per_window} is below the sync expert's window "
                             f"{self.sync.window}")
        b = fake.shape[0] // frames_per_window
        return self.sync(fake.reshape(b, frames_per_window, *fake.shape[1:]).float(),
                         mel.reshape(b, frames_per_window, *mel.shape[1:]).float())

    def discriminator_loss(self, fake: torch.Tensor, real: torch.Tensor
                           ) -> tuple[torch.Tensor, dict[str, torch.Tensor]]:
        real_logits = self.discriminator(real)
        fake_logits = self.discriminator(fake.detach())
        loss = discriminator_loss(real_logits, fake_logits, self.gan_mode)
        return loss, {"d_total": loss.detach(), "d_real_logit": real_logits.detach().mean(),
                      "d_fake_logit": fake_logits.detach().mean()}
