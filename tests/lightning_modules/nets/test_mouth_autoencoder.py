"""The bank's autoencoder is the generator's encoder/decoder architecture (claim 3)."""

import torch

from lightning_modules.nets import LipSyncGenerator, MouthAutoencoderNet, copy_matching

DIMS = dict(embed_dim=32, audio_dim=24, base_channels=8, max_channels=32, cond_channels=8)


def generator(**kw) -> LipSyncGenerator:
    return LipSyncGenerator(image_size=48, num_codes=6, attention_heads=2, mapping_hidden=16,
                            **DIMS, **kw)


def test_reconstruction_passes_through_the_code_only():
    torch.manual_seed(0)
    net = MouthAutoencoderNet(48, **DIMS).eval()
    images = torch.rand(3, 3, 48, 48)
    recon, code = net(images)
    assert recon.shape == images.shape and code.shape == (3, 32)
    # No skip carries the input: the output is a function of the code alone.
    torch.testing.assert_close(net.decode(code), recon)
    other = net.decode(torch.randn(3, 32))
    assert (other - recon).abs().mean() > 1e-4


def test_weights_carry_over_to_the_generator():
    torch.manual_seed(0)
    net = MouthAutoencoderNet(48, **DIMS)
    gen = generator()
    copied, skipped = copy_matching(net.encoder, gen.image_encoder)
    assert not skipped and copied
    _, skipped_dec = copy_matching(net.decoder, gen.decoder)
    assert not skipped_dec
    x = torch.rand(2, 3, 48, 48)
    net.eval(), gen.eval()
    torch.testing.assert_close(gen.image_encoder.embed(x), net.encode(x))


def test_reference_generator_skips_only_the_six_channel_input_conv():
    net = MouthAutoencoderNet(48, **DIMS)
    gen = generator(use_reference=True)
    _, skipped = copy_matching(net.encoder, gen.image_encoder)
    assert len(skipped) == 1 and skipped[0].startswith("stages.0.0.")  # the first conv
