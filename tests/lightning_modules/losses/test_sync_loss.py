"""The expert sync loss (standalone module; not yet wired into LipSyncGAN)."""

from __future__ import annotations

import torch

from lightning_modules.losses.sync_loss import SyncLoss


def test_sync_loss_prefers_real_in_sync_windows_and_only_trains_the_generator(eval_models,
                                                                             tiny_corpus):
    from datamodules.lipsync_datamodule import LipSyncDataModule

    loss = SyncLoss(f"{eval_models['expert']}:best", str(eval_models["registry"].root))
    assert not any(p.requires_grad for p in loss.parameters())
    loss.train()
    assert not loss.net.training
    dm = LipSyncDataModule(root=str(tiny_corpus), image_size=48, frames_per_window=5,
                           off_sync_min_shift=3, num_workers=0, batch_size=32,
                           val_windows_per_clip=32)
    batch = next(iter(dm.test_dataloader()))
    faces = (batch["face"].float() / 255.0).requires_grad_(True)
    in_sync = loss(faces, batch["mel"])
    off_sync = loss(faces, batch["mel_off"])
    assert in_sync < off_sync
    in_sync.backward()
    assert faces.grad is not None and faces.grad.abs().sum() > 0
    torch.testing.assert_close(loss(faces.detach(), batch["mel"]), in_sync.detach())


def test_lipsync_loss_adds_the_weighted_sync_term_only_when_asked(eval_models):
    import pytest

    from lightning_modules.losses import LipSyncLoss

    ref = f"{eval_models['expert']}:best"
    registry = str(eval_models["registry"].root)
    fake, real = torch.rand(10, 3, 48, 48), torch.rand(10, 3, 48, 48)
    mel = torch.randn(10, 1, 80, 16)
    off = LipSyncLoss(lpips_backbone="random")
    base, logs = off.generator_loss(fake, real, 0, None, mel, 5)
    assert off.sync is None and "g_sync" not in logs
    on = LipSyncLoss(lpips_backbone="random", sync_weight=2.0, sync_expert=ref,
                     sync_registry=registry)
    on.load_state_dict(off.state_dict(), strict=False)  # same discriminator and LPIPS
    total, logs = on.generator_loss(fake, real, 0, None, mel, 5)
    torch.testing.assert_close(total, base + 2.0 * logs["g_sync"])
    with pytest.raises(ValueError, match="frames_per_window=1"):
        on.generator_loss(fake, real, 0, None, mel, 1)
    with pytest.raises(ValueError, match="sync_expert"):
        LipSyncLoss(lpips_backbone="random", sync_weight=1.0)


def test_gan_fit_with_the_sync_loss_logs_it(eval_models, tiny_corpus, lipmem_cli):
    tmp = eval_models["tmp"]
    out = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
                      f"--trainer.default_root_dir={tmp / 'gan_sync'}",
                      "--data.frames_per_window=5", "--trainer.max_steps=4",
                      "--model.loss.sync_weight=1.0",
                      f"--model.loss.sync_expert={eval_models['expert']}:best",
                      f"--model.loss.sync_registry={eval_models['registry'].root}",
                      "--trainer.logger=lightning.pytorch.loggers.CSVLogger",
                      f"--trainer.logger.save_dir={tmp / 'gan_sync'}"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    metrics = next((tmp / "gan_sync").rglob("metrics.csv")).read_text()
    assert "train/g_sync" in metrics.splitlines()[0]
