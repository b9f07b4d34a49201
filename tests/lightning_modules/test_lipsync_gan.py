"""The GAN module under a real Trainer on real shards (tiny model, CPU)."""

from __future__ import annotations

import math

import lightning as L
import pytest
import torch

from datamodules.lipsync_datamodule import LipSyncDataModule
from lightning_modules.callbacks.val_media_logger import ValMediaLogger
from lightning_modules.lipsync_gan import LipSyncGAN, check_precision
from lightning_modules.losses import LipSyncLoss
from lightning_modules.nets import LipSyncGenerator
from memory_bank.codes_file import save_codes
from memory_bank.memory_config import MemoryConfig

TINY = dict(image_size=48, num_codes=8, embed_dim=32, audio_dim=32, base_channels=8,
            max_channels=32, attention_heads=2, mapping_hidden=32, cond_channels=8)


def tiny_model(source: str = "bootstrap", bootstrap_frames: int = 32, **kw) -> LipSyncGAN:
    kw.setdefault("memory", MemoryConfig(source=source, bootstrap_frames=bootstrap_frames))
    return LipSyncGAN(LipSyncGenerator(**TINY), LipSyncLoss(lpips_backbone="random", disc_channels=8),
                      **kw)


def tiny_data(root, **kw) -> LipSyncDataModule:
    args = dict(root=str(root), image_size=48, batch_size=4, num_workers=0, windows_per_clip=4,
                val_windows_per_clip=2, batches_per_epoch=3)
    args.update(kw)
    return LipSyncDataModule(**args)


def trainer(tmp_path, **kw) -> L.Trainer:
    args = dict(default_root_dir=str(tmp_path), accelerator="cpu", devices=1, max_epochs=1,
                logger=False, enable_progress_bar=False, enable_model_summary=False,
                num_sanity_val_steps=0, limit_val_batches=2)
    args.update(kw)
    return L.Trainer(**args)


def test_fit_alternates_d_and_g_steps_and_keeps_the_memory_fixed(tiny_corpus, tmp_path):
    model = tiny_model()
    t = trainer(tmp_path)
    t.fit(model, tiny_data(tiny_corpus))
    assert t.global_step == 2 * 3  # one D and one G optimizer step per batch
    assert model.generator.memory.loaded and model.memory_info["source"] == "bootstrap"
    codes = model.generator.memory.codes.clone()
    assert codes.abs().sum() > 0 and torch.isfinite(codes).all()
    # the val grid comes from what validation_step hands the media callback
    t2 = trainer(tmp_path, max_epochs=2, callbacks=[ValMediaLogger(video_seconds=0)])
    t2.fit(model, tiny_data(tiny_corpus))
    torch.testing.assert_close(model.generator.memory.codes, codes)  # optimisers never touch it
    assert (tmp_path / "samples" / "val_latest.png").is_file()
    assert model.last_code_usage["val"].shape == (8,)  # for the callback's histogram
    for key in ("val/l1", "val/l1_mouth", "val/psnr", "val/ssim"):
        assert key in t2.callback_metrics, key
    assert t2.callback_metrics["val/l1_mouth"] > 0
    assert 0 < float(t2.callback_metrics["val/usage_entropy"]) <= math.log(8) + 1e-5
    assert float(t2.callback_metrics["train/lr_g"]) == pytest.approx(model.g_lr)


def test_checkpoint_carries_the_memory_codes(tiny_corpus, tmp_path):
    model = tiny_model()
    t = trainer(tmp_path, enable_checkpointing=True)
    t.fit(model, tiny_data(tiny_corpus))
    ckpt = next((tmp_path / "checkpoints").glob("*.ckpt"))
    state = torch.load(ckpt, map_location="cpu", weights_only=True)["state_dict"]
    torch.testing.assert_close(state["generator.memory.codes"], model.generator.memory.codes)
    assert bool(state["generator.memory.loaded"])


def test_memory_source_file_is_loaded_and_its_shape_checked(tiny_corpus, tmp_path):
    good = save_codes(tmp_path / "good.safetensors", torch.randn(8, 32), {"n": 8})
    model = tiny_model(source=str(good))
    t = trainer(tmp_path, max_steps=2)
    t.fit(model, tiny_data(tiny_corpus))
    assert model.memory_info["resolved"] == str(good)

    bad = save_codes(tmp_path / "bad.safetensors", torch.randn(20, 32), {"n": 20})
    with pytest.raises(ValueError, match=r"n=20 codes but .*num_codes=8"):
        trainer(tmp_path, max_steps=2).fit(tiny_model(source=str(bad)), tiny_data(tiny_corpus))


def test_fp16_precision_is_refused_with_the_key():
    check_precision("bf16-mixed")
    with pytest.raises(ValueError, match="trainer.precision='16-mixed'"):
        check_precision("16-mixed")


def test_out_of_range_module_settings_fail_at_construction():
    with pytest.raises(ValueError, match="g_lr"):
        tiny_model(g_lr=0.0)
    with pytest.raises(ValueError, match="memory.bootstrap_frames=4"):
        tiny_model(bootstrap_frames=4)


def test_validation_judges_the_ema_by_mouth_shape_and_infer_loads_the_ema(tiny_corpus, tmp_path):
    from lightning_modules.generation.clip_generation import load_generator

    model = tiny_model(ema_decay=0.9)
    t = trainer(tmp_path, enable_checkpointing=True, max_epochs=2)
    t.fit(model, tiny_data(tiny_corpus))
    metrics = t.callback_metrics
    assert 0 <= float(metrics["val/openness_mae"]) <= 1  # the tiny corpus has a mouth track
    assert float(metrics["val/mouth_score"]) == pytest.approx(float(metrics["val/openness_mae"]))
    live = model.generator.state_dict()
    averaged = model.generator_ema.module.state_dict()
    differs = [k for k in live if live[k].is_floating_point() and not torch.equal(live[k],
                                                                                  averaged[k])]
    assert differs  # after 6 steps the average is not the live weights
    ckpt = next((tmp_path / "checkpoints").glob("*.ckpt"))
    loaded = load_generator(ckpt, fold_norms=False)
    assert loaded.info["weights"] == "ema"
    for key, value in loaded.generator.state_dict().items():
        torch.testing.assert_close(value, averaged[key].cpu(), msg=key)


def test_without_ema_validation_and_infer_use_the_live_weights(tiny_corpus, tmp_path):
    from lightning_modules.generation.clip_generation import load_generator

    model = tiny_model(ema_decay=None)
    assert model.eval_generator is model.generator
    t = trainer(tmp_path, enable_checkpointing=True)
    t.fit(model, tiny_data(tiny_corpus))
    loaded = load_generator(next((tmp_path / "checkpoints").glob("*.ckpt")), fold_norms=False)
    assert loaded.info["weights"] == "live"
    live = model.generator.state_dict()
    for key, value in loaded.generator.state_dict().items():
        torch.testing.assert_close(value, live[key].cpu(), msg=key)
