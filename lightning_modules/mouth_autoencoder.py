"""Training the memory bank's autoencoder on lower-face crops from the training shards."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_only
from torchmetrics import MeanMetric

from lightning_modules.losses.perceptual import LPIPSLoss
from lightning_modules.losses.region_l1 import check_emphasis, region_l1
from lightning_modules.media.visualize import image_grid, save_png
from lightning_modules.nets.mouth_autoencoder import MouthAutoencoderNet

INPUTS = ("lower_face", "full_face")


class MouthAutoencoder(L.LightningModule):
    """L1 + LPIPS reconstruction of what the bank's codes must describe.

    A context net (the default) reconstructs the whole face from the masked face plus the
    lower face's code, with the generator's loss shape: the hidden region's pixels weigh
    ``1 + mask_l1_emphasis`` in the L1 and the mouth box ``mouth_l1_emphasis`` more
    (losses.region_l1), so the code and decoder learn the mouth early. A plain net (``context=False``) reconstructs
    `face * mask`; there `input: lower_face` (default) trains on exactly what is encoded
    afterwards, and `full_face` follows the patent text literally (train on faces, encode
    lower halves later; the lower-half crops are then off the training distribution).
    """

    def __init__(self, net: MouthAutoencoderNet, lr: float = 1e-3, l1_weight: float = 1.0,
                 lpips_weight: float = 0.1, lpips_net: str = "alex",
                 lpips_backbone: str = "auto", input: str = "lower_face",
                 num_val_images: int = 8, mask_l1_emphasis: float = 10.0,
                 mouth_l1_emphasis: float = 20.0) -> None:
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
        check_emphasis("model.mask_l1_emphasis", mask_l1_emphasis)
        check_emphasis("model.mouth_l1_emphasis", mouth_l1_emphasis)
        self.mask_l1_emphasis = mask_l1_emphasis
        self.mouth_l1_emphasis = mouth_l1_emphasis
        self.lpips = LPIPSLoss(lpips_net, lpips_backbone) if lpips_weight > 0 else None
        self.val_l1 = MeanMetric()
        self._val_pair: tuple[torch.Tensor, torch.Tensor] | None = None

    def images(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor]:
        """(faces (N, 3, S, S) in [0, 1], masks (N, 1, S, S)) of a batch's frames."""
        face = batch["face"]
        face = face.flatten(0, 1) if face.dim() == 5 else face
        face = face.to(self.device).float() / 255.0
        mask = batch["mask"].to(self.device).float()
        if mask.shape[0] != face.shape[0]:
            mask = mask.repeat_interleave(face.shape[0] // mask.shape[0], dim=0)
        return face, mask

    def reconstruct(self, batch: dict[str, Any]) -> tuple[torch.Tensor, torch.Tensor,
                                                          torch.Tensor, torch.Tensor]:
        """(reconstruction, target, code, mask)."""
        face, mask = self.images(batch)
        if not self.net.context and self.input == "full_face":
            code = self.net.encoder.embed(face)
            return self.net.decode(code), face, code, mask
        recon, code = self.net(face, mask)
        return recon, self.net.target(face, mask), code, mask

    def _l1(self, recon: torch.Tensor, target: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        if not self.net.context:  # the target is the lower face alone
            return (recon - target).abs().mean()
        return region_l1(recon, target, mask, self.mask_l1_emphasis, self.mouth_l1_emphasis)

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        recon, target, code, mask = self.reconstruct(batch)
        l1 = self._l1(recon, target, mask)
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
        recon, target, _, mask = self.reconstruct(batch)
        err = (recon - target).abs()
        masked = (err * mask).sum() / (mask.sum() * 3).clamp_min(1.0)
        self.val_l1.update(masked, weight=target.shape[0])
        self.log("val/l1_masked", self.val_l1, on_epoch=True, prog_bar=True,
                 batch_size=target.shape[0])
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
