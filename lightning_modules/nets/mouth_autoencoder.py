"""The memory bank's autoencoder: the generator's own ImageEncoder and Decoder classes.

The method (claim 3) builds the memory codes with an encoder of the same architecture as
the generator's image encoder and a decoder like its decoder. The constructor therefore
takes the generator's config keys (same names, same meaning), so a bank built with a
generator's `init_args` lives in that generator's code space, and its weights can seed the
generator (`copy_matching`).
"""

from __future__ import annotations

import torch
from torch import nn

from lightning_modules.nets.blocks import stage_sizes
from lightning_modules.nets.decoder import Decoder
from lightning_modules.nets.image_encoder import ImageEncoder


class MouthAutoencoderNet(nn.Module):
    """lower-face crop (only the masked region kept) -> code (embed_dim) -> reconstruction.

    The decoder gets zeros for the encoder skips and the audio feature: with skips the
    full-resolution path would copy the input and the code would learn nothing, so the
    whole image has to pass through the code. The code enters the decoder in both places
    the generator's fused mouth feature does (bottleneck and per-stage condition), which
    is what lets the decoder weights carry over to the generator.
    """

    def __init__(self, image_size: int = 96, embed_dim: int = 256, audio_dim: int = 256,
                 base_channels: int = 32, max_channels: int = 256, cond_channels: int = 32,
                 norm: str = "batch") -> None:
        super().__init__()
        # Everything needed to rebuild the net from an exported file (memory_bank.encoder_file).
        self.config = {"image_size": image_size, "embed_dim": embed_dim, "audio_dim": audio_dim,
                       "base_channels": base_channels, "max_channels": max_channels,
                       "cond_channels": cond_channels, "norm": norm}
        self.image_size = image_size
        self.embed_dim = embed_dim
        self.audio_dim = audio_dim
        self.encoder = ImageEncoder(3, image_size, base_channels, max_channels, embed_dim, norm)
        self.decoder = Decoder(self.encoder.skip_channels, self.encoder.bottom_size, embed_dim,
                               audio_dim, embed_dim, cond_channels, norm=norm)

    def encode(self, image: torch.Tensor) -> torch.Tensor:
        return self.encoder.embed(image)

    def decode(self, code: torch.Tensor) -> torch.Tensor:
        """(B, embed_dim) code -> (B, 3, S, S) image in [0, 1]."""
        b = code.shape[0]
        skips = [code.new_zeros(b, c, s, s)
                 for c, s in zip(self.encoder.skip_channels, stage_sizes(self.image_size))]
        audio = code.new_zeros(b, self.audio_dim)
        return self.decoder(code, audio, code, skips)

    def forward(self, image: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Returns (reconstruction, code)."""
        code = self.encode(image)
        return self.decode(code), code


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
