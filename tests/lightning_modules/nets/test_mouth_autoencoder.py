"""The bank's autoencoder is the generator's encoder/decoder architecture (claim 3)."""

import torch

from datamodules.masks import LowerFaceMask
from lightning_modules.nets import LipSyncGenerator, MouthAutoencoderNet, copy_matching
from lightning_modules.nets.mouth_autoencoder import silence_audio_inputs, standardise_lower_face

DIMS = dict(embed_dim=32, audio_dim=24, base_channels=8, max_channels=32, cond_channels=8)
MASK = LowerFaceMask(image_size=48).tensor()[None]  # (1, 1, 48, 48), 1 = hidden


def generator(**kw) -> LipSyncGenerator:
    return LipSyncGenerator(image_size=48, num_codes=6, attention_heads=2, mapping_hidden=16,
                            **DIMS, **kw)


def test_plain_reconstruction_passes_through_the_code_only():
    torch.manual_seed(0)
    net = MouthAutoencoderNet(48, **DIMS, context=False).eval()
    images = torch.rand(3, 3, 48, 48)
    recon, code = net(images, MASK)
    assert recon.shape == images.shape and code.shape == (3, 32)
    # No skip carries the input: the output is a function of the code alone.
    torch.testing.assert_close(net.decode(code), recon)
    other = net.decode(torch.randn(3, 32))
    assert (other - recon).abs().mean() > 1e-4


def test_context_reconstruction_keeps_the_visible_face_and_draws_the_code():
    torch.manual_seed(0)
    net = MouthAutoencoderNet(48, **DIMS).eval()
    faces = torch.rand(3, 3, 48, 48)
    recon, code = net(faces, MASK)
    masked = faces * (1 - MASK)
    torch.testing.assert_close(net.decode(code, masked, MASK), recon)
    far = torch.nn.functional.max_pool2d(MASK, 9, 1, 4) == 0  # well outside the feather
    assert torch.equal(recon * far, faces * far)  # the visible face is the input, exactly
    other = net.decode(torch.randn(3, 32), masked, MASK)
    assert ((other - recon).abs() * MASK).sum() / MASK.sum() > 1e-4  # the code draws the mouth
    assert torch.equal(other * far, recon * far)


def test_normalised_code_input_ignores_skin_tone_and_brightness():
    torch.manual_seed(0)
    net = MouthAutoencoderNet(48, **DIMS).eval()
    faces = torch.rand(2, 3, 48, 48) * 0.5
    scale, shift = torch.tensor([1.6, 0.7, 1.2])[:, None, None], torch.tensor([0.1, 0.3, -0.05])
    recoloured = faces * scale + shift[:, None, None]
    torch.testing.assert_close(standardise_lower_face(recoloured * MASK, MASK),
                               standardise_lower_face(faces * MASK, MASK), atol=1e-2, rtol=1e-2)
    torch.testing.assert_close(net.encode(recoloured * MASK, MASK), net.encode(faces * MASK, MASK),
                               atol=1e-2, rtol=1e-2)
    assert (recoloured - faces).abs().mean() > 0.1


def test_weights_carry_over_to_the_generator_with_its_audio_inputs_silent():
    torch.manual_seed(0)
    net = MouthAutoencoderNet(48, **DIMS)
    gen = generator()
    encoder, decoder = net.generator_parts()
    assert encoder is net.context_encoder
    copied, skipped = copy_matching(encoder, gen.image_encoder)
    assert not skipped and copied
    _, skipped_dec = copy_matching(decoder, gen.decoder)
    assert not skipped_dec
    silence_audio_inputs(gen.decoder, 32, 24)
    net.eval(), gen.eval()
    x = torch.rand(2, 3, 48, 48)
    torch.testing.assert_close(gen.image_encoder.embed(x), net.context_encoder.embed(x))
    face, skips = gen.image_encoder(x)
    mouth = torch.randn(2, 32)
    quiet = gen.decoder(face, torch.zeros(2, 24), mouth, skips)
    loud = gen.decoder(face, torch.randn(2, 24) * 5, mouth, skips)
    torch.testing.assert_close(quiet, loud)  # the audio path starts silent
    # ...and the generator's decoder draws a code as the autoencoder's does
    torch.testing.assert_close(quiet, net.decoder(face, torch.zeros(2, 24), mouth, skips))


def test_plain_autoencoder_seeds_the_encoder_from_its_mouth_encoder():
    net = MouthAutoencoderNet(48, **DIMS, context=False)
    encoder, _ = net.generator_parts()
    assert encoder is net.encoder and net.context_encoder is None


def test_reference_generator_skips_only_the_six_channel_input_conv():
    net = MouthAutoencoderNet(48, **DIMS)
    gen = generator(use_reference=True)
    _, skipped = copy_matching(net.generator_parts()[0], gen.image_encoder)
    assert len(skipped) == 1 and skipped[0].startswith("stages.0.0.")  # the first conv
