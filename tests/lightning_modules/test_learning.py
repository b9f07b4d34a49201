"""The model listens: after a few hundred steps, the true audio explains the mouth better
than audio from another moment of the same clip, and both beat the untrained model.

A generator that ignores the audio and draws an average mouth scores the same with either
audio, so it fails here. ~3 minutes on 2 CPU cores; deterministic by seed.

The training runs on one intra-op thread: 48 px layers gain little from two, and a thread team
on a machine that is busy with other work waits at every op for a descheduled member (with two
threads beside another two-thread job on 2 cores this test ran 8x slower and timed out).
"""

from __future__ import annotations

import lightning as L
import pytest
import torch

from datamodules.lipsync_datamodule import LipSyncDataModule
from lightning_modules.lipsync_gan import LipSyncGAN
from lightning_modules.losses import LipSyncLoss
from lightning_modules.nets import LipSyncGenerator
from memory_bank.memory_config import MemoryConfig

STEPS = 400          # batches (each one D step + one G step)
SHIFT_FRAMES = 37    # "another moment of the same clip" (clips are 100 frames; wraps)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, corpus_factory):
    return corpus_factory(tmp_path_factory.mktemp("learn_corpus"), speakers=5, clips_per_speaker=4,
                       clip_seconds=4.0, image_size=48, test_speakers=0)


def data(root, shift: int = 0) -> LipSyncDataModule:
    return LipSyncDataModule(root=str(root), image_size=48, batch_size=16, num_workers=1,
                             windows_per_clip=8, val_windows_per_clip=16, batches_per_epoch=50,
                             audio_shift_frames=shift)


@pytest.fixture
def one_thread():
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.mark.timeout(900)
def test_mouth_follows_the_audio(corpus, tmp_path, one_thread):
    L.seed_everything(0)
    generator = LipSyncGenerator(image_size=48, num_codes=16, embed_dim=64, audio_dim=64,
                                 base_channels=16, max_channels=64, attention_heads=2,
                                 mapping_hidden=64, cond_channels=16)
    model = LipSyncGAN(generator, LipSyncLoss(lpips_backbone="random", disc_channels=16),
                       g_lr=1e-3,
                       memory=MemoryConfig(source="bootstrap", bootstrap_frames=256))
    common = dict(accelerator="cpu", devices=1, logger=False, enable_progress_bar=False,
                  enable_model_summary=False, enable_checkpointing=False,
                  default_root_dir=str(tmp_path))

    def mouth_l1(shift: int) -> float:
        metrics = L.Trainer(**common).validate(model, data(corpus, shift), verbose=False)[0]
        return metrics["val/l1_mouth"]

    untrained = mouth_l1(0)
    L.Trainer(max_steps=2 * STEPS, num_sanity_val_steps=0, limit_val_batches=0,
              **common).fit(model, data(corpus))
    true_audio, other_audio = mouth_l1(0), mouth_l1(SHIFT_FRAMES)
    print(f"mouth L1: untrained {untrained:.4f}, true audio {true_audio:.4f}, "
          f"shifted audio {other_audio:.4f}")
    assert true_audio < 0.97 * other_audio, "the mouth does not follow the audio"
    assert other_audio < 0.6 * untrained and true_audio < 0.6 * untrained
