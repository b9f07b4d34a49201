"""The memory bank's autoencoder: the generator's own ImageEncoder and Decoder classes.

The method (claim 3) builds the memory codes with an encoder of the same architecture as the
generator's image encoder and a decoder like its decoder. The constructor therefore takes the
generator's config keys (same names, same meaning), so a bank built with a generator's
`init_args` lives in that generator's code space, and its weights can seed the generator.

Two designs, chosen by ``context``:

* ``context=True`` (default): the decoder is used exactly as in the generator. A second
  encoder of the same class (the generator's image encoder) reads the *masked* face and
  feeds the decoder its face feature and skips; the mouth encoder's code of the lower face
  enters where the generator's fused mouth feature does. Identity, skin and lighting reach
  the decoder through the visible face, so the code only has to say what the visible face
  cannot: the mouth. Its cluster centres are then mouth shapes shared by speakers, and its
  decoder already draws a mouth from a code, which is what the generator's decoder needs.
  With ``code_input="normalised"`` the mouth encoder sees the lower face standardised per
  crop and channel, so colour and brightness cannot make codes of one speaker alike.
* ``context=False``: a plain autoencoder of the lower-face crop (zero skips). Its code has
  to carry everything, identity first, so its cluster centres are mostly speakers; kept for
  comparison and for banks built before the context design.
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets.blocks import stage_sizes
from lightning_modules.nets.composite import composite, feather_pixels, feathered_alpha
from lightning_modules.nets.decoder import Decoder
from lightning_modules.nets.image_encoder import ImageEncoder

CODE_INPUTS = ("raw", "normalised")


def standardise_lower_face(lower: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """Per crop and channel: (x - mean) / std over the hidden pixels, 0 elsewhere."""
    mask = mask.to(lower.dtype).expand(lower.shape[0], 1, *lower.shape[2:])
    count = mask.sum(dim=(2, 3), keepdim=True).clamp_min(1.0)
    mean = (lower * mask).sum(dim=(2, 3), keepdim=True) / count
    var = (((lower - mean) * mask) ** 2).sum(dim=(2, 3), keepdim=True) / count
    return (lower - mean) / (var + 1e-4).sqrt() * mask


class MouthAutoencoderNet(nn.Module):
    """lower face -> code (embed_dim) -> decoder (+ masked face when ``context``) -> face."""

    def __init__(self, image_size: int = 96, embed_dim: int = 256, audio_dim: int = 256,
                 base_channels: int = 32, max_channels: int = 256, cond_channels: int = 32,
                 norm: str = "batch", context: bool = True, code_input: str = "normalised",
                 composite_feather: float | None = 0.04, spatial_cond_max: int = 0) -> None:
        super().__init__()
        if code_input not in CODE_INPUTS:
            raise ValueError(f"code_input={code_input!r}: expected one of {CODE_INPUTS}")
        # Everything needed to rebuild the net from an exported file (memory_bank.encoder_file).
        self.config = {"image_size": image_size, "embed_dim": embed_dim, "audio_dim": audio_dim,
                       "base_channels": base_channels, "max_channels": max_channels,
                       "cond_channels": cond_channels, "norm": norm, "context": context,
                       "code_input": code_input, "composite_feather": composite_feather,
                       "spatial_cond_max": spatial_cond_max}
        self.image_size = image_size
        self.embed_dim = embed_dim
        self.audio_dim = audio_dim
        self.context = context
        self.code_input = code_input
        self.feather_px = (None if composite_feather is None
                           else feather_pixels(composite_feather, image_size))
        self.encoder = ImageEncoder(3, image_size, base_channels, max_channels, embed_dim, norm)
        self.context_encoder = (ImageEncoder(3, image_size, base_channels, max_channels,
                                             embed_dim, norm) if context else None)
        self.decoder = Decoder(self.encoder.skip_channels, self.encoder.bottom_size, embed_dim,
                               audio_dim, embed_dim, cond_channels, norm=norm,
                               spatial_cond_max=spatial_cond_max)
        # (masked faces uint8 (N, 3, S, S), mask (1, 1, S, S)) to draw codes into; set when
        # the net is loaded from a file that carries them (memory_bank.encoder_file)
        self.examples: tuple[torch.Tensor, torch.Tensor] | None = None

    def encode(self, lower_face: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """(B, 3, S, S) ``face * mask`` and the (B or 1, 1, S, S) mask -> (B, embed_dim)."""
        if self.code_input == "normalised":
            lower_face = standardise_lower_face(lower_face, mask)
        return self.encoder.embed(lower_face)

    def decode(self, code: torch.Tensor, masked_face: torch.Tensor | None = None,
               mask: torch.Tensor | None = None) -> torch.Tensor:
        """(B, embed_dim) codes -> (B, 3, S, S) images in [0, 1]; with ``context`` the
        mouth is drawn into ``masked_face`` (B or 1 faces, ``face * (1 - mask)``)."""
        b = code.shape[0]
        audio = code.new_zeros(b, self.audio_dim)
        if not self.context:
            skips = [code.new_zeros(b, c, s, s)
                     for c, s in zip(self.encoder.skip_channels, stage_sizes(self.image_size))]
            return self.decoder(code, audio, code, skips)
        if masked_face is None or mask is None:
            raise ValueError("a context autoencoder decodes a code into a masked face: pass "
                             "masked_face and mask")
        masked_face = masked_face.expand(b, *masked_face.shape[1:])
        face_feature, skips = self.context_encoder(masked_face)
        image = self.decoder(face_feature, audio, code, skips)
        if self.feather_px is not None:
            image = composite(image, masked_face, feathered_alpha(mask, self.feather_px))
        return image

    def forward(self, face: torch.Tensor, mask: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Faces (B, 3, S, S) in [0, 1] and their mask -> (reconstruction, code). Without
        ``context`` the reconstruction is of the lower face ``face * mask`` only."""
        code = self.encode(face * mask, mask)
        if not self.context:
            return self.decode(code), code
        return self.decode(code, face * (1.0 - mask), mask), code

    def target(self, face: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        """What ``forward`` reconstructs."""
        return face if self.context else face * mask

    def generator_parts(self) -> tuple[nn.Module, nn.Module]:
        """(the module that plays the generator's image encoder, the decoder)."""
        return (self.context_encoder if self.context else self.encoder), self.decoder


@torch.no_grad()
def copy_matching(source: nn.Module, target: nn.Module) -> tuple[list[str], list[str]]:
    """Copy every tensor whose name and shape agree; returns (copied, skipped) names.

    Used to start the generator's image encoder and decoder from a trained mouth
    autoencoder. A generator with a reference frame has 6 input channels where the
    autoencoder has 3: that first convolution is skipped, not guessed.
    """
    src = source.state_dict()
    dst = target.state_dict()
    copied, skipped = [], []
    for name, tensor in dst.items():
        if name in src and src[name].shape == tensor.shape:
            tensor.copy_(src[name])
            copied.append(name)
        else:
            skipped.append(name)
    return copied, skipped


@torch.no_grad()
def silence_audio_inputs(decoder: Decoder, face_dim: int, audio_dim: int) -> None:
    """Zero the decoder weights that read the audio feature.

    An autoencoder's decoder always saw zeros there, so those weights never trained; in the
    generator they would turn the audio feature into noise over a decoder that already
    draws faces. Zeroed, the audio path starts silent and grows from its gradient.
    """
    decoder.from_vector[0].weight[face_dim:face_dim + audio_dim].zero_()  # (in, out, k, k)
    decoder.condition[0].weight[:, :audio_dim].zero_()  # Linear(cat(audio, mouth))
    for canvas in decoder.spatial.values():  # ConvTranspose2d(cat(audio, mouth)), (in, out, k, k)
        canvas.weight[:audio_dim].zero_()
