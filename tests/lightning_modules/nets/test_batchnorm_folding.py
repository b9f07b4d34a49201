"""Folding BatchNorm for inference must not change what the generator draws."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from lightning_modules.nets import LipSyncGenerator
from lightning_modules.nets.batchnorm_folding import fold_batchnorm

TINY = {"image_size": 32, "num_codes": 6, "embed_dim": 16, "audio_dim": 16,
        "base_channels": 8, "max_channels": 16, "mapping_hidden": 16, "cond_channels": 4}


def generator(norm: str = "batch") -> LipSyncGenerator:
    torch.manual_seed(0)
    net = LipSyncGenerator(norm=norm, **TINY)
    net.memory.load_codes(torch.randn(net.num_codes, net.memory.code_dim))
    for m in net.modules():   # statistics far from the identity init, as after training
        if isinstance(m, nn.BatchNorm2d):
            m.running_mean.uniform_(-1, 1)
            m.running_var.uniform_(0.2, 3)
            m.weight.data.uniform_(0.5, 2)
            m.bias.data.uniform_(-0.5, 0.5)
    return net.eval()


def test_folded_generator_draws_the_same_faces():
    net = generator()
    batchnorms = sum(isinstance(m, nn.BatchNorm2d) for m in net.modules())
    folded = copy.deepcopy(net)
    assert fold_batchnorm(folded) == batchnorms > 0
    assert not any(isinstance(m, nn.BatchNorm2d) for m in folded.modules())
    face, mel = torch.rand(3, 3, 32, 32), torch.randn(3, 1, 80, 16)
    with torch.no_grad():
        expected, got = net(face, mel), folded(face, mel)
    torch.testing.assert_close(got.image, expected.image, atol=1e-5, rtol=1e-4)
    torch.testing.assert_close(got.weights, expected.weights)


def test_nothing_to_fold_with_group_norm_and_refused_in_training():
    assert fold_batchnorm(generator("group")) == 0
    with pytest.raises(ValueError, match="eval mode"):
        fold_batchnorm(generator().train())
