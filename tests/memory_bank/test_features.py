"""Stage 2 of the bank: lower-face features streamed from real shards."""

import numpy as np
import pytest
import torch

from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.manifest import load_manifest, split_clips
from lightning_modules.nets import MouthAutoencoderNet
from memory_bank.features import (
    Features,
    encode_lower_faces,
    load_features,
    lower_face_images,
    save_features,
)


def datamodule(root) -> LipSyncDataModule:
    return LipSyncDataModule(root=str(root), image_size=48, batch_size=8, num_workers=0)


@pytest.fixture(scope="module")
def net():
    torch.manual_seed(0)
    return MouthAutoencoderNet(48, embed_dim=16, audio_dim=16, base_channels=8, max_channels=16,
                               cond_channels=4).eval()


def test_sample_covers_every_training_clip_not_the_first_frames(tiny_corpus, net):
    dm = datamodule(tiny_corpus)
    clips = split_clips(load_manifest(tiny_corpus), "train")
    feats = encode_lower_faces(net.encode, dm.memory_batches(60), 60)
    assert feats.features.shape == (60, 16) and feats.features.dtype == np.float32
    assert len(set(feats.keys.tolist())) == clips  # every clip, every speaker contributes
    per_clip = {k: sorted(feats.frames[feats.keys == k].tolist()) for k in set(feats.keys)}
    spans = [f[-1] - f[0] for f in per_clip.values()]
    assert min(spans) > 30  # spread through each 75-frame clip, not its first frames


def test_only_the_masked_lower_face_is_encoded(tiny_corpus):
    dm = datamodule(tiny_corpus)
    batch = next(iter(dm.memory_batches(8)))
    images = lower_face_images(batch, "cpu")
    hidden = batch["mask"][0, 0].bool()
    changed = dict(batch, face=batch["face"].clone())
    changed["face"][..., ~hidden] = 255 - changed["face"][..., ~hidden]  # repaint the upper face
    torch.testing.assert_close(lower_face_images(changed, "cpu"), images)
    assert images[..., ~hidden].abs().max() == 0 and images[..., hidden].abs().max() > 0


def test_features_file_round_trip_and_bad_files(tmp_path):
    feats = Features(np.random.default_rng(0).normal(size=(10, 4)).astype(np.float32),
                     np.array([f"clip{i % 3}" for i in range(10)]), np.arange(10))
    path = save_features(tmp_path / "f.npz", feats)
    back = load_features(path)
    np.testing.assert_array_equal(back.features, feats.features)
    np.testing.assert_array_equal(back.keys, feats.keys)
    assert not list(tmp_path.glob(".*"))  # no temp file left behind
    (tmp_path / "bad.npz").write_bytes(b"not a zip")
    with pytest.raises(ValueError, match="bad.npz"):
        load_features(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="missing.npz"):
        load_features(tmp_path / "missing.npz")
