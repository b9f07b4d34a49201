"""Contracts of the method's sub-models (claims 1 and 7)."""

import pytest
import torch

from lightning_modules.nets import (
    AudioEncoder,
    AudioMapping,
    ImageEncoder,
    LipSyncGenerator,
    MemoryFusion,
    PatchDiscriminator,
)


def small_generator(**kw) -> LipSyncGenerator:
    args = dict(image_size=48, num_codes=12, embed_dim=32, audio_dim=32, base_channels=8,
                max_channels=32, attention_heads=2, mapping_hidden=32, cond_channels=8)
    args.update(kw)
    return LipSyncGenerator(**args)


def test_mapping_gives_one_weight_per_code_summing_to_one():
    mapping = AudioMapping(audio_dim=16, num_codes=80, hidden_dim=32)
    w = mapping(torch.randn(5, 16))
    assert w.shape == (5, 80)
    assert torch.all(w >= 0)
    torch.testing.assert_close(w.sum(dim=1), torch.ones(5))


def test_fusion_is_weighted_sum_of_codes():
    fusion = MemoryFusion(num_codes=6, code_dim=4)
    codes = torch.randn(6, 4)
    fusion.load_codes(codes)
    w = torch.softmax(torch.randn(3, 6), dim=1)
    torch.testing.assert_close(fusion(w), w @ codes)
    one_hot = torch.eye(6)[[2]]
    torch.testing.assert_close(fusion(one_hot), codes[[2]])


def test_fusion_refuses_codes_of_the_wrong_shape_or_nonfinite():
    fusion = MemoryFusion(num_codes=6, code_dim=4)
    with pytest.raises(ValueError, match=r"\(num_codes=6, code_dim=4\)"):
        fusion.load_codes(torch.randn(5, 4))
    bad = torch.randn(6, 4)
    bad[0, 0] = float("nan")
    with pytest.raises(ValueError, match="NaN"):
        fusion.load_codes(bad)
    assert not fusion.loaded


@pytest.mark.parametrize("n", [0, -3])
def test_non_positive_memory_size_is_refused(n):
    with pytest.raises(ValueError, match="num_codes"):
        small_generator(num_codes=n)


def test_codes_are_a_buffer_the_optimiser_never_touches():
    g = small_generator()
    g.memory.load_codes(torch.randn(12, 32))
    before = g.memory.codes.clone()
    assert "memory.codes" in g.state_dict()
    assert all(p is not g.memory.codes for p in g.parameters())
    opt = torch.optim.Adam(g.parameters(), lr=0.1)
    for _ in range(3):
        out = g(torch.rand(2, 3, 48, 48), torch.randn(2, 1, 80, 16))
        out.image.mean().backward()
        opt.step()
        opt.zero_grad()
    torch.testing.assert_close(g.memory.codes, before)


def test_decoder_uses_the_fused_mouth_feature():
    torch.manual_seed(0)
    g = small_generator().eval()
    x, mel = torch.rand(2, 3, 48, 48), torch.randn(2, 1, 80, 16)
    g.memory.load_codes(torch.randn(12, 32))
    a = g(x, mel).image
    g.memory.load_codes(torch.randn(12, 32) * 3)
    b = g(x, mel).image
    assert (a - b).abs().mean() > 1e-3


def test_generator_output_shapes_for_each_supported_size():
    for size in (32, 48, 64, 96, 128):
        g = small_generator(image_size=size)
        out = g(torch.rand(1, 3, size, size), torch.randn(1, 1, 80, 16))
        assert out.image.shape == (1, 3, size, size)
        assert out.image.min() >= 0 and out.image.max() <= 1
        assert out.weights.shape == (1, 12)


def test_reference_frame_adds_encoder_channels_and_is_required():
    g = small_generator(use_reference=True)
    out = g(torch.rand(2, 3, 48, 48), torch.randn(2, 1, 80, 16), torch.rand(2, 3, 48, 48))
    assert out.image.shape == (2, 3, 48, 48)
    with pytest.raises(ValueError, match="use_reference"):
        g(torch.rand(2, 3, 48, 48), torch.randn(2, 1, 80, 16))


def test_audio_encoder_rejects_wrong_mel_shape():
    enc = AudioEncoder(n_mels=80, mel_frames=16, dim=32, heads=2)
    assert enc(torch.randn(3, 1, 80, 16)).shape == (3, 32)
    with pytest.raises(ValueError, match=r"\(B, 1, 80, 16\)"):
        enc(torch.randn(3, 1, 80, 12))


def test_image_encoder_rejects_sizes_that_do_not_halve_down():
    with pytest.raises(ValueError, match="image_size=100"):
        ImageEncoder(image_size=100)


def test_discriminator_gives_a_patch_map():
    d = PatchDiscriminator(base_channels=8)
    assert d(torch.rand(2, 3, 96, 96)).shape == (2, 1, 10, 10)


def test_group_norm_variant_builds_and_unknown_norm_is_refused():
    g = small_generator(norm="group")
    assert g(torch.rand(2, 3, 48, 48), torch.randn(2, 1, 80, 16)).image.shape == (2, 3, 48, 48)
    with pytest.raises(ValueError, match="norm='layer'"):
        small_generator(norm="layer")


def test_output_keeps_the_visible_input_outside_the_feathered_mask():
    from datamodules.masks import LowerFaceMask

    g = small_generator().eval()
    g.memory.load_codes(torch.randn(12, 32))
    mask = LowerFaceMask(image_size=48).tensor()[None]
    face = torch.rand(3, 3, 48, 48)
    masked = face * (1 - mask)
    with torch.no_grad():
        out = g(masked, torch.randn(3, 1, 80, 16), mask=mask).image
        raw = g(masked, torch.randn(3, 1, 80, 16)).image
    seam = g.feather_px  # round(0.04 * 48) = 2 px of blend outside the mask
    far = torch.nn.functional.max_pool2d(mask, 2 * seam + 3, 1, seam + 1) == 0
    assert seam == 2 and far.sum() > 0.5 * 48 * 48
    assert torch.equal(out * far, face * far)          # exactly the input, not a re-drawing
    assert ((out - face).abs() * mask).sum() > 0       # the hidden region is generated
    assert ((raw - face).abs() * far).sum() > 0        # without the mask: the decoder's face
    plain = small_generator(composite_feather=None).eval()
    plain.memory.load_codes(torch.randn(12, 32))
    with torch.no_grad():
        whole = plain(masked, torch.randn(3, 1, 80, 16), mask=mask).image
    assert ((whole - face).abs() * far).sum() > 0      # composite_feather=None: no blend


def test_feathered_alpha_is_one_on_the_mask_and_fades_to_zero_outside():
    from lightning_modules.nets.composite import feathered_alpha

    mask = torch.zeros(1, 1, 16, 16)
    mask[..., 8:, 4:12] = 1
    alpha = feathered_alpha(mask, 3)
    assert torch.equal(alpha[mask.bool()], torch.ones(int(mask.sum())))
    assert alpha[0, 0, 7, 8] == pytest.approx(0.75) and alpha[0, 0, 5, 8] == pytest.approx(0.25)
    assert alpha[0, 0, 4, 8] == 0 and alpha[0, 0, 0, 0] == 0
