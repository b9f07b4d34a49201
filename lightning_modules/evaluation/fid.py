"""FID of generated against ground-truth frames, when the Inception weights are on disk.

torchmetrics' FrechetInceptionDistance runs torch-fidelity's Inception v3, which downloads
its weights on first use; nothing is downloaded here. FID runs only when torch-fidelity is
installed and the weights file is in the torch hub cache
(``$TORCH_HOME/hub/checkpoints/weights-inception-2015-12-05-6726825d.pth``); otherwise it is
skipped with a note saying which of the two is missing.
"""

from __future__ import annotations

import importlib.util
from pathlib import Path

import numpy as np
import torch

INCEPTION_FILE = "weights-inception-2015-12-05-6726825d.pth"


def inception_weights_path() -> Path:
    return Path(torch.hub.get_dir()) / "checkpoints" / INCEPTION_FILE


def fid_unavailable_reason() -> str | None:
    """None when FID can run offline, else why not (for the report's notes)."""
    if importlib.util.find_spec("torch_fidelity") is None:
        return ("fid skipped: torch-fidelity is not installed (pip install torch-fidelity, and "
                f"put {INCEPTION_FILE} into {inception_weights_path().parent})")
    if not inception_weights_path().is_file():
        return (f"fid skipped: Inception weights not found at {inception_weights_path()} "
                "(nothing is downloaded; copy the file there or set $TORCH_HOME)")
    return None


class FID:
    """Accumulates Inception features of generated and real frames (uint8 (T, S, S, 3))."""

    def __init__(self, device: str | torch.device = "cpu", batch_size: int = 64) -> None:
        from torchmetrics.image.fid import FrechetInceptionDistance

        self.device = torch.device(device)
        self.batch_size = batch_size
        self.metric = FrechetInceptionDistance(
            feature=2048, feature_extractor_weights_path=str(inception_weights_path()),
        ).to(self.device)
        self.frames = 0

    @torch.no_grad()
    def update(self, generated: np.ndarray, ground_truth: np.ndarray) -> None:
        for start in range(0, generated.shape[0], self.batch_size):
            for frames, real in ((ground_truth, True), (generated, False)):
                x = torch.from_numpy(np.ascontiguousarray(frames[start:start + self.batch_size]))
                self.metric.update(x.permute(0, 3, 1, 2).to(self.device), real=real)
        self.frames += generated.shape[0]

    def compute(self) -> float:
        if self.frames < 2:
            raise ValueError("FID needs at least 2 frames")
        return float(self.metric.compute())
