"""Image grids for validation samples and memory-bank pictures, written as PNG."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from PIL import Image
from torchvision.utils import make_grid

from datamodules.atomic_files import atomic_path


def sample_grid(masked: torch.Tensor, generated: torch.Tensor, target: torch.Tensor,
                max_rows: int = 8) -> np.ndarray:
    """(B, 3, S, S) tensors in [0, 1] -> uint8 (H, W, 3) grid of up to max_rows rows."""
    rows = min(max_rows, masked.shape[0])
    triplets = torch.stack([masked[:rows], generated[:rows], target[:rows]], dim=1)
    return image_grid(triplets.flatten(0, 1), columns=3)


def image_grid(images: torch.Tensor, columns: int, padding: int = 2) -> np.ndarray:
    """(N, 3, S, S) in [0, 1] -> uint8 (H, W, 3), `columns` images per row."""
    grid = make_grid(images.float().clamp(0, 1).cpu(), nrow=max(1, columns), padding=padding,
                     pad_value=1.0)
    return (grid.permute(1, 2, 0).numpy() * 255.0 + 0.5).astype(np.uint8)


def save_png(path: str | os.PathLike, image: np.ndarray) -> Path:
    """Write atomically so a viewer never opens half a file."""
    path = Path(path)
    with atomic_path(path, suffix=".png") as tmp:
        Image.fromarray(image).save(tmp, format="PNG")
    return path
