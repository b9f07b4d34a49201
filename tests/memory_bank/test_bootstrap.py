"""Codes built by the model's own encoder: bootstrap for a bankless fit, refit for a fine-tune."""

import pytest
import torch

from datamodules.lipsync_datamodule import LipSyncDataModule
from lightning_modules.nets import MouthAutoencoderNet
from memory_bank.bootstrap import bootstrap_codes, refit_codes
from memory_bank.kmeans import assign

FRAMES = 96
CODES = 6


@pytest.fixture(scope="module")
def encoded(tiny_corpus):
    """The tiny corpus' datamodule and a fixed random encoder, plus bootstrap codes from them."""
    torch.manual_seed(0)
    net = MouthAutoencoderNet(48, embed_dim=16, audio_dim=16, base_channels=8, max_channels=16,
                              cond_channels=4).eval()
    dm = LipSyncDataModule(root=str(tiny_corpus), image_size=48, batch_size=8, num_workers=0)
    codes, result, frames = bootstrap_codes(net.encode, dm.memory_batches(FRAMES), CODES)
    assert codes.shape == (CODES, 16) and frames == FRAMES and result.method.startswith("faiss")
    return net, dm, codes


def test_refine_moves_each_code_and_keeps_its_index(encoded):
    net, dm, codes = encoded
    # a start near the codes in reverse order: a fresh clustering would renumber them
    # (each moved by a fifth of the smallest gap between codes: a random encoder's features
    # lie close together)
    gap = torch.pdist(codes).min()
    torch.manual_seed(1)
    noise = torch.nn.functional.normalize(torch.randn_like(codes), dim=1)
    start = codes.flip(0) + 0.2 * gap * noise
    refined, result, frames = refit_codes(net.encode, dm.memory_batches(FRAMES), start, "refine")
    assert frames == FRAMES and result.method == "faiss_refine" and refined.shape == start.shape
    assert not torch.allclose(refined, start)  # moved onto the data
    # refined code i sits at the centre that start i came from: index i kept its meaning
    owner, _ = assign(refined.numpy(), codes.numpy())
    assert owner.tolist() == list(range(CODES))[::-1]


def test_rebuild_clusters_afresh_and_bad_modes_are_named(encoded):
    net, dm, codes = encoded
    far = torch.full_like(codes, 1e3)  # rebuild ignores where the codes were
    rebuilt, result, _ = refit_codes(net.encode, dm.memory_batches(FRAMES), far, "rebuild")
    assert result.method != "faiss_refine" and rebuilt.shape == codes.shape
    torch.testing.assert_close(rebuilt, codes)  # the same features and seed as the bootstrap
    with pytest.raises(ValueError, match="'keep'"):
        refit_codes(net.encode, dm.memory_batches(FRAMES), codes, "keep")
