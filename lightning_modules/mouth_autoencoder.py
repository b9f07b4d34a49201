"""Training the memory bank's autoencoder on lower-face crops from the training shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics import MeanMetric

from lightning_modules.losses.perceptual import LPIPSLoss
from lightning_modules.nets.mouth_autoencoder import MouthAutoencoderNet
from lightning_modules.visualize import image_grid, save_png
from memory_bank.features import lower_face_images

INPUTS = ("lower_face", "full_face")


class MouthAutoencoder(L.LightningModule):
    """L1 + LPIPS reconstruction of `face * mask` (the region the generator must produce).

    `input: lower_face` (default) trains on exactly what is encoded afterwards, the masked
    lower-face region, so the code's capacity goes to the mouth and jaw. `full_face` follows
    the patent text literally (train on faces, encode lower halves later); the lower-half
    crops are then off the training distribution.
    """

    def __init__(self, net: MouthAutoencoderNet, lr: float = 1e-3, l1_weight: float = 1.0,
                 lpips_weight: float = 0.1, lpips_net: str = "alex",
                 lpips_backbone: str = "auto", input: str = "lower_face",
                 num_val_images: int = 8) -> None:
        super().__init__()
        if input not in INPUTS:
            raise ValueError(f"model.input={input!r}: expected one of {INPUTS}")
        if lr <= 0:
            raise ValueError(f"model.lr={lr}: must be > 0")
        if l1_weight < 0 or lpips_weight < 0 or l1_weight + lpips_weight == 0:
            raise ValueError(f"model.l1_weight={l1_weight}, model.lpips_weight={lpips_weight}: "
                             "weights must be >= 0 and not both zero")
        self.net = net
        self.lr = lr
        self.l1_weight = l1_weight
        self.lpips_weight = lpips_weight
        self.input = input
        self.num_val_images = num_val_images
        self.lpips = LPIPSLoss(lpips_net, lpips_backbone) if lpips_weight > 0 else None
        self.val_l1 = MeanMetric()
        self._val_pair: tuple[torch.Tensor, torch.Tensor] | None = None

    def images(self, batch: dict[str, Any]) -> torch.Tensor:
        """The autoencoder's input and target: (N, 3, S, S) floats in [0, 1]."""
        if self.input == "lower_face":
            return lower_face_images(batch, self.device)  # exactly what the bank encodes
        face = batch["face"]
        face = face.flatten(0, 1) if face.dim() == 5 else face
        return face.to(self.device).float() / 255.0

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        target = self.images(batch)
        recon, code = self.net(target)
        l1 = (recon - target).abs().mean()
        loss = self.l1_weight * l1
        logs = {"train/l1": l1, "train/code_std": code.detach().std(dim=0).mean()}
        if self.lpips is not None:
            perceptual = self.lpips(recon, target)
            loss = loss + self.lpips_weight * perceptual
            logs[f"train/{self.lpips.metric_name}"] = perceptual  # lpips or stlpips
        logs["train/loss"] = loss
        self.log_dict(logs, on_step=True, prog_bar=False, batch_size=target.shape[0])
        self.log("train/l1_bar", l1, prog_bar=True, logger=False, batch_size=target.shape[0])
        return loss

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        target = self.images(batch)
        recon, _ = self.net(target)
        self.val_l1.update((recon - target).abs().mean(), weight=target.shape[0])
        self.log("val/l1", self.val_l1, on_epoch=True, prog_bar=True, batch_size=target.shape[0])
        if self._val_pair is None:
            self._val_pair = (target.cpu(), recon.float().cpu())

    def on_validation_epoch_end(self) -> None:
        if self._val_pair is not None and not self.trainer.sanity_checking:
            self._write_grid(*self._val_pair)
        self._val_pair = None

    @rank_zero_only
    def _write_grid(self, target: torch.Tensor, recon: torch.Tensor) -> None:
        n = min(self.num_val_images, target.shape[0])
        grid = image_grid(torch.cat([target[:n], recon[:n]]), columns=n)  # inputs over outputs
        save_png(Path(self.trainer.default_root_dir) / "samples" / "autoencoder_val_latest.png",
                 grid)

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.Adam(self.net.parameters(), lr=self.lr, betas=(0.9, 0.999))
