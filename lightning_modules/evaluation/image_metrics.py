"""Reconstruction metrics of generated frames against ground truth: PSNR, SSIM and a
perceptual distance (LPIPS or ST-LPIPS) on the full face and on the mouth box
(datamodules.face_layout.mouth_box), averaged over frames.

PSNR is per frame (capped at ``PSNR_CAP`` dB so that identical frames give a finite number a
JSON reader can average) and then averaged, as lip-sync papers report it. SSIM is
torchmetrics' (Gaussian window, smaller on the mouth crop, which is only ~9 px high at 48
px). The perceptual distance is lipmem's LPIPSLoss (torchmetrics' LPIPS downloads its
backbone), reported under the network's own name: ``lpips_*`` or ``stlpips_*``. Crops smaller
than 64 px are resized to 64 px first, AlexNet needs that much.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from torchmetrics import MeanMetric
from torchmetrics.functional.image import peak_signal_noise_ratio
from torchmetrics.image import StructuralSimilarityIndexMeasure

from datamodules.face_layout import mouth_box
from lightning_modules.losses.perceptual import LPIPSLoss

PSNR_CAP = 100.0
LPIPS_MIN_SIDE = 64
REGIONS = ("face", "mouth")


def to_tensor(frames: np.ndarray) -> torch.Tensor:
    """uint8 (T, S, S, 3) -> float (T, 3, S, S) in [0, 1]."""
    if frames.ndim != 4 or frames.shape[-1] != 3 or frames.dtype != np.uint8:
        raise ValueError(f"frames must be uint8 (T, S, S, 3), got {frames.dtype} {frames.shape}")
    return torch.from_numpy(np.ascontiguousarray(frames)).permute(0, 3, 1, 2).float() / 255.0


def _ssim_kernel(height: int, width: int) -> int:
    side = min(11, height, width)
    return side if side % 2 else side - 1


class ImageMetrics:
    """Accumulates per-frame PSNR / SSIM / perceptual distance over clips; ``compute()`` gives
    flat names ``{psnr,ssim,P}_{face,mouth}``, P = ``perceptual_name`` (lpips or stlpips)."""

    def __init__(self, image_size: int, lpips_backbone: str = "auto",
                 lpips_net: str = "alex", device: str | torch.device = "cpu",
                 batch_size: int = 64) -> None:
        self.image_size = image_size
        self.box = mouth_box(image_size)
        self.device = torch.device(device)
        self.batch_size = batch_size
        self.lpips = LPIPSLoss(lpips_net, lpips_backbone).to(self.device).eval()
        self.perceptual_name = self.lpips.metric_name
        y0, y1, x0, x1 = self.box
        self.ssim = {"face": StructuralSimilarityIndexMeasure(
                         data_range=1.0, kernel_size=_ssim_kernel(image_size, image_size)),
                     "mouth": StructuralSimilarityIndexMeasure(
                         data_range=1.0, kernel_size=_ssim_kernel(y1 - y0, x1 - x0))}
        for metric in self.ssim.values():
            metric.to(self.device)
        self.psnr = {r: MeanMetric().to(self.device) for r in REGIONS}
        self.lpips_mean = {r: MeanMetric().to(self.device) for r in REGIONS}
        self.frames = 0

    def crop(self, x: torch.Tensor, region: str) -> torch.Tensor:
        if region == "face":
            return x
        y0, y1, x0, x1 = self.box
        return x[..., y0:y1, x0:x1]

    def _lpips(self, fake: torch.Tensor, real: torch.Tensor) -> torch.Tensor:
        """Per-image perceptual distance, (B,)."""
        h, w = fake.shape[-2:]
        if min(h, w) < LPIPS_MIN_SIDE:
            scale = LPIPS_MIN_SIDE / min(h, w)
            size = (round(h * scale), round(w * scale))
            fake = F.interpolate(fake, size=size, mode="bilinear", align_corners=False)
            real = F.interpolate(real, size=size, mode="bilinear", align_corners=False)
        return self.lpips.distance(fake, real)

    @torch.no_grad()
    def update(self, generated: np.ndarray, ground_truth: np.ndarray) -> None:
        if generated.shape != ground_truth.shape:
            raise ValueError(f"generated frames {generated.shape} and ground truth "
                             f"{ground_truth.shape} differ in shape")
        for start in range(0, generated.shape[0], self.batch_size):
            fake = to_tensor(generated[start:start + self.batch_size]).to(self.device)
            real = to_tensor(ground_truth[start:start + self.batch_size]).to(self.device)
            for region in REGIONS:
                f, r = self.crop(fake, region), self.crop(real, region)
                psnr = peak_signal_noise_ratio(f, r, data_range=1.0, reduction="none",
                                               dim=(1, 2, 3))
                self.psnr[region].update(psnr.clamp(max=PSNR_CAP))
                self.ssim[region].update(f, r)
                self.lpips_mean[region].update(self._lpips(f, r))
            self.frames += fake.shape[0]

    def compute(self) -> dict[str, float]:
        if not self.frames:
            raise ValueError("ImageMetrics.compute() before any frames were added")
        out: dict[str, Any] = {}
        for region in REGIONS:
            out[f"psnr_{region}"] = float(self.psnr[region].compute())
            out[f"ssim_{region}"] = float(self.ssim[region].compute())
            out[f"{self.perceptual_name}_{region}"] = float(self.lpips_mean[region].compute())
        return out
