"""Whole-clip generation cuts audio exactly as training does, and a generator is rebuilt from
its checkpoint alone; fine-tuning starts from another run's weights."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.lipsync_datamodule import LipSyncDataModule
from lightning_modules.generation.clip_generation import (
    MODEL_RECORD_KEY,
    Geometry,
    frame_mels,
    generate_clip,
    generate_frames,
    load_generator,
    model_record,
)
from lightning_modules.lipsync_gan import LipSyncGAN
from lightning_modules.losses import LipSyncLoss
from lightning_modules.nets import LipSyncGenerator
from lightning_modules.training.generator_ema import EMA_PREFIX, generator_state
from memory_bank.memory_config import MemoryConfig

TINY = dict(image_size=48, num_codes=8, embed_dim=32, audio_dim=32, base_channels=8,
            max_channels=32, attention_heads=2, mapping_hidden=32, cond_channels=8)


def gan(**generator_kw) -> LipSyncGAN:
    generator = LipSyncGenerator(**{**TINY, **generator_kw})
    generator.memory.load_codes(torch.randn(generator.num_codes, generator.memory.code_dim))
    return LipSyncGAN(generator, LipSyncLoss(lpips_backbone="random", disc_channels=8),
                      memory=MemoryConfig(source="bootstrap", bootstrap_frames=32))


def save_checkpoint(module: LipSyncGAN, path, record: bool = True) -> None:
    checkpoint = {"state_dict": module.state_dict(), "global_step": 6, "epoch": 0,
                  "memory_info": {"source": "test"}}
    if record:
        checkpoint[MODEL_RECORD_KEY] = model_record(module.generator)
    torch.save(checkpoint, path)


@pytest.fixture(scope="module")
def clip(tiny_corpus):
    data = LipSyncDataModule(root=str(tiny_corpus), image_size=48, num_workers=0)
    return next(iter(data.clips("val", limit=1)))


def test_frame_mels_equal_the_training_windows(clip):
    cutter = Geometry(image_size=48).cutter()
    mels = frame_mels(clip.audio, clip.num_frames, cutter)
    whole = cutter.clip_mel(clip)
    for k in (0, 1, clip.num_frames // 2, clip.num_frames - 1):
        window = cutter.window(clip, whole, k)
        np.testing.assert_array_equal(mels[k], window["mel"][0, 0])
    shifted = frame_mels(clip.audio, clip.num_frames, cutter, shift=3)
    np.testing.assert_array_equal(shifted[:-3], mels[3:])


def test_generation_is_independent_of_batch_size(clip):
    module = gan().eval()
    geometry = Geometry(image_size=48)
    mask = geometry.lower_face_mask()
    small = generate_clip(module.generator, clip, geometry.cutter(), mask, batch_size=3)
    large = generate_clip(module.generator, clip, geometry.cutter(), mask, batch_size=64)
    assert small.images.shape == (clip.num_frames, 48, 48, 3) and small.images.dtype == np.uint8
    assert small.weights.shape == (clip.num_frames, 8)
    np.testing.assert_allclose(small.weights, large.weights, atol=1e-5)
    assert np.abs(small.images.astype(int) - large.images.astype(int)).max() <= 1


def test_the_masked_half_is_all_the_generator_sees(clip):
    """Changing pixels under the mask does not change the output."""
    module = gan().eval()
    geometry = Geometry(image_size=48)
    mask = geometry.lower_face_mask().numpy()
    mels = frame_mels(clip.audio, 4, geometry.cutter())
    faces = clip.frames[:4].copy()
    a = generate_frames(module.generator, faces, mels, mask).images
    faces[:, mask[0] > 0] = 255 - faces[:, mask[0] > 0]
    b = generate_frames(module.generator, faces, mels, mask).images
    np.testing.assert_array_equal(a, b)


def test_load_generator_rebuilds_the_same_network(tmp_path, clip):
    module = gan(mapping_temperature=0.5).eval()
    save_checkpoint(module, tmp_path / "m.ckpt")
    loaded = load_generator(tmp_path / "m.ckpt", fold_norms=False)
    assert loaded.generator.config == module.generator.config
    assert loaded.geometry.image_size == 48 and loaded.info["global_step"] == 6
    geometry = loaded.geometry
    a = generate_clip(module.generator, clip, geometry.cutter(), geometry.lower_face_mask())
    b = generate_clip(loaded.generator, clip, geometry.cutter(), geometry.lower_face_mask())
    np.testing.assert_array_equal(a.images, b.images)
    # the default load folds BatchNorm into the convolutions: no BatchNorm left, and the
    # same frames up to float rounding (at most one uint8 level, rarely)
    folded = load_generator(tmp_path / "m.ckpt")
    assert not any(isinstance(m, torch.nn.BatchNorm2d) for m in folded.generator.modules())
    c = generate_clip(folded.generator, clip, geometry.cutter(), geometry.lower_face_mask())
    diff = np.abs(c.images.astype(int) - a.images.astype(int))
    assert diff.max() <= 1 and (diff > 0).mean() < 0.01


def test_load_generator_refuses_what_it_cannot_rebuild(tmp_path):
    save_checkpoint(gan(), tmp_path / "old.ckpt", record=False)
    with pytest.raises(ValueError, match="no 'lipmem_model' record"):
        load_generator(tmp_path / "old.ckpt")
    checkpoint = torch.load(tmp_path / "old.ckpt", weights_only=True)
    checkpoint[MODEL_RECORD_KEY] = {**model_record(gan().generator), "generator_class": "os.system"}
    torch.save(checkpoint, tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="'os.system' is not one of"):
        load_generator(tmp_path / "evil.ckpt")
    with pytest.raises(ValueError, match="does not resolve"):
        load_generator("model-nothing:best", registry=str(tmp_path / "registry"))


def test_init_from_copies_weights_and_codes_but_not_training_state(tmp_path):
    source = gan()
    with torch.no_grad():  # an average that differs from the live weights
        for name, value in source.state_dict().items():
            if name.startswith(EMA_PREFIX) and value.is_floating_point():
                value.add_(0.5)
    save_checkpoint(source, tmp_path / "src.ckpt")
    target = gan()
    target._init_weights_from(str(tmp_path / "src.ckpt"))
    got, src = target.state_dict(), source.state_dict()
    average = generator_state(src)
    assert average.keys() == {k for k in src if k.startswith("generator.")}
    for key, value in src.items():
        if key.startswith("generator."):  # the generator starts from the source's average
            torch.testing.assert_close(got[key], average[key])
            assert not value.is_floating_point() or not torch.equal(got[key], value)
        elif not key.startswith("generator_ema."):
            torch.testing.assert_close(got[key], value)
    assert target.memory_info["init_from"] == str(tmp_path / "src.ckpt")
    with pytest.raises(ValueError, match="num_codes"):
        gan(num_codes=4)._init_weights_from(str(tmp_path / "src.ckpt"))
