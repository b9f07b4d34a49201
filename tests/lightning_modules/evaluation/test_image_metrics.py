"""PSNR / SSIM / LPIPS on full face and mouth box: ideal on identical frames, worse otherwise."""

from __future__ import annotations

import numpy as np
import pytest

from lightning_modules.evaluation.image_metrics import PSNR_CAP, ImageMetrics


def _frames(seed: int, n: int = 6, size: int = 48) -> np.ndarray:
    return np.random.default_rng(seed).integers(0, 256, (n, size, size, 3), dtype=np.uint8)


def test_identical_frames_give_the_ideal_values():
    metrics = ImageMetrics(48, lpips_backbone="random")
    frames = _frames(0)
    metrics.update(frames, frames.copy())
    out = metrics.compute()
    for region in ("face", "mouth"):
        assert out[f"psnr_{region}"] == PSNR_CAP
        assert out[f"ssim_{region}"] == pytest.approx(1.0, abs=1e-6)
        assert out[f"lpips_{region}"] == pytest.approx(0.0, abs=1e-6)


def test_a_changed_mouth_is_seen_more_in_the_mouth_box_than_on_the_face():
    real = _frames(1)
    fake = real.copy()
    y0, y1, x0, x1 = ImageMetrics(48, lpips_backbone="random").box
    fake[:, y0:y1, x0:x1] = 255 - fake[:, y0:y1, x0:x1]
    metrics = ImageMetrics(48, lpips_backbone="random")
    metrics.update(fake, real)
    out = metrics.compute()
    assert out["psnr_mouth"] < out["psnr_face"] < PSNR_CAP
    assert out["ssim_mouth"] < out["ssim_face"] < 1.0
    assert out["lpips_mouth"] > 0.0


def test_shape_mismatch_and_empty_input_are_clear_errors():
    metrics = ImageMetrics(48, lpips_backbone="random")
    with pytest.raises(ValueError, match="before any frames"):
        metrics.compute()
    with pytest.raises(ValueError, match="differ in shape"):
        metrics.update(_frames(0, n=2), _frames(0, n=3))
