"""The ablation's memory modes really build different generators."""

import pytest
import torch

from lightning_modules.nets import LipSyncGenerator
from lightning_modules.nets.memory_fusion import MEMORY_MODES, straight_through_argmax


def small_generator(memory_mode: str, **kw) -> LipSyncGenerator:
    torch.manual_seed(0)
    args = {"image_size": 48, "num_codes": 12, "embed_dim": 32, "audio_dim": 32,
            "base_channels": 8, "max_channels": 32, "attention_heads": 2, "mapping_hidden": 32,
            "cond_channels": 8, "memory_mode": memory_mode, **kw}
    gen = LipSyncGenerator(**args).eval()
    gen.memory.load_codes(torch.randn(12, 32))
    return gen


def inputs(batch: int = 4) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(1)
    # mel_frames defaults to 16; distinct mel windows so the argmax picks differ per row
    return torch.rand(batch, 3, 48, 48, generator=g), torch.randn(batch, 1, 80, 16, generator=g) * 3


def test_modes_and_default():
    assert MEMORY_MODES == ("softmax", "argmax", "none")
    assert LipSyncGenerator(image_size=48, num_codes=4, embed_dim=16, audio_dim=16,
                            base_channels=8, max_channels=16, mapping_hidden=16,
                            cond_channels=4).memory_mode == "softmax"
    with pytest.raises(ValueError, match="memory_mode='hard'"):
        small_generator("hard")


def test_argmax_puts_all_weight_on_the_most_likely_code_yet_the_mapping_head_trains():
    gen = small_generator("argmax").train()
    face, mel = inputs()
    out = gen(face, mel)
    w = out.weights
    assert set(w.detach().unique().tolist()) <= {0.0, 1.0}
    assert torch.equal(w.detach().sum(1), torch.ones(len(w)))
    soft = gen.audio_mapping(gen.audio_encoder(mel))
    assert torch.equal(w.detach().argmax(1), soft.argmax(1))       # the most likely code
    torch.testing.assert_close(out.fused_mouth, gen.memory.codes[soft.argmax(1)])
    out.image.mean().backward()
    grads = [p.grad for p in gen.audio_mapping.parameters()]
    assert all(g is not None for g in grads)
    assert sum(float(g.abs().sum()) for g in grads) > 0           # straight-through gradient


def test_straight_through_forward_is_exactly_one_hot():
    soft = torch.softmax(torch.randn(5, 7), dim=1).requires_grad_()
    hard = straight_through_argmax(soft)
    assert torch.equal(hard.detach(), torch.eye(7)[soft.argmax(1)])
    (hard * torch.arange(7.0)).sum().backward()
    assert soft.grad is not None and soft.grad.abs().sum() > 0


def test_none_ignores_the_codes_and_uses_no_code():
    gen = small_generator("none")
    face, mel = inputs()
    with torch.no_grad():
        before = gen(face, mel)
        gen.memory.load_codes(torch.randn(12, 32) * 10)
        after = gen(face, mel)
    torch.testing.assert_close(before.image, after.image, rtol=0, atol=0)
    assert torch.equal(before.weights, torch.zeros(4, 12))          # code usage: none used
    # the mapping head becomes audio -> mouth feature: same MLP, embed_dim outputs
    assert gen.audio_mapping.net[-1].out_features == 32
    softmax = small_generator("softmax")
    sizes = [sum(p.numel() for p in m.parameters()) for m in (gen, softmax)]
    assert abs(sizes[0] - sizes[1]) / sizes[1] < 0.02  # comparable size


def test_softmax_differs_from_argmax_and_none_and_depends_on_the_codes():
    face, mel = inputs()
    gens = {mode: small_generator(mode) for mode in MEMORY_MODES}
    with torch.no_grad():
        outs = {mode: gen(face, mel) for mode, gen in gens.items()}
        soft = outs["softmax"]
        assert soft.weights.min() > 0 and soft.weights.max() < 1    # a real mixture
        torch.testing.assert_close(soft.weights.sum(1), torch.ones(4))
        torch.testing.assert_close(soft.fused_mouth, soft.weights @ gens["softmax"].memory.codes)
        for other in ("argmax", "none"):
            assert not torch.allclose(soft.image, outs[other].image)
        gen = small_generator("softmax")
        gen.memory.load_codes(torch.randn(12, 32) * 10)
        assert not torch.allclose(gen(face, mel).image, soft.image)


def test_memory_mode_is_in_the_saved_constructor_config():
    gen = small_generator("argmax")
    assert gen.config["memory_mode"] == "argmax"
    rebuilt = LipSyncGenerator(**gen.config)
    assert rebuilt.memory_mode == "argmax"
