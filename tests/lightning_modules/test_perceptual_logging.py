"""Training logs name the perceptual distance by its network: `stlpips` when ST-LPIPS
measured it, never `lpips` (real Trainer, real shards, CSV logger)."""

from __future__ import annotations

import csv

import lightning as L
from lightning.pytorch.loggers import CSVLogger

from datamodules.lipsync_datamodule import LipSyncDataModule
from lightning_modules.lipsync_gan import LipSyncGAN
from lightning_modules.losses import LipSyncLoss
from lightning_modules.mouth_autoencoder import MouthAutoencoder
from lightning_modules.nets import LipSyncGenerator, MouthAutoencoderNet
from memory_bank.memory_config import MemoryConfig

TINY = {"image_size": 48, "embed_dim": 32, "audio_dim": 32, "base_channels": 8,
        "max_channels": 32, "cond_channels": 8}


def _fit(model: L.LightningModule, root, tmp_path) -> set[str]:
    """Two batches; returns the metric names the logger wrote."""
    data = LipSyncDataModule(root=str(root), image_size=48, batch_size=4, num_workers=0,
                             windows_per_clip=4, val_windows_per_clip=2, batches_per_epoch=2)
    logger = CSVLogger(tmp_path, name="logs")
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1,
                        max_epochs=1, logger=logger, log_every_n_steps=1,
                        enable_progress_bar=False, enable_model_summary=False,
                        enable_checkpointing=False, num_sanity_val_steps=0,
                        limit_val_batches=1)
    trainer.fit(model, data)
    with open(logger.experiment.metrics_file_path, newline="") as f:
        rows = list(csv.DictReader(f))
    return {k for row in rows for k, v in row.items() if v not in ("", None)}


def test_gan_logs_train_g_stlpips_with_st_lpips(tiny_corpus, tmp_path):
    generator = LipSyncGenerator(num_codes=8, attention_heads=2, mapping_hidden=32, **TINY)
    model = LipSyncGAN(generator, LipSyncLoss(lpips_backbone="stlpips", disc_channels=8),
                       memory=MemoryConfig(source="bootstrap", bootstrap_frames=32))
    keys = _fit(model, tiny_corpus, tmp_path)
    assert "train/g_stlpips" in keys and "train/g_l1" in keys
    assert not any("g_lpips" in k for k in keys), sorted(keys)


def test_bank_autoencoder_logs_train_stlpips_with_st_lpips(tiny_corpus, tmp_path):
    model = MouthAutoencoder(MouthAutoencoderNet(**TINY), lpips_backbone="stlpips")
    keys = _fit(model, tiny_corpus, tmp_path)
    assert "train/stlpips" in keys and "train/l1" in keys
    assert "train/lpips" not in keys, sorted(keys)
