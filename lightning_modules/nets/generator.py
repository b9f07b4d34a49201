"""The lip-sync generator: the method's four sub-models plus the memory, composed."""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import nn

from lightning_modules.nets.audio_encoder import AudioEncoder
from lightning_modules.nets.audio_mapping import AudioMapping
from lightning_modules.nets.composite import composite, feather_pixels, feathered_alpha
from lightning_modules.nets.decoder import Decoder
from lightning_modules.nets.image_encoder import ImageEncoder
from lightning_modules.nets.memory_fusion import (
    MEMORY_MODES,
    MemoryFusion,
    straight_through_argmax,
)


@dataclass
class GeneratorOutput:
    image: torch.Tensor          # (B, 3, S, S) in [0, 1]
    weights: torch.Tensor        # (B, n) memory attention, rows sum to 1 (argmax: one-hot;
                                 # memory_mode none: all zero, no code is used)
    fused_mouth: torch.Tensor    # (B, code_dim)


class LipSyncGenerator(nn.Module):
    """masked face (+ optional reference frame) and mel window -> face with a matching mouth."""

    def __init__(self, image_size: int = 96, use_reference: bool = False, n_mels: int = 80,
                 mel_frames: int = 16, num_codes: int = 80, embed_dim: int = 256,
                 audio_dim: int = 256, base_channels: int = 32, max_channels: int = 256,
                 attention_heads: int = 4, attention_layers: int = 1, mapping_hidden: int = 256,
                 mapping_temperature: float = 1.0, cond_channels: int = 32,
                 norm: str = "batch", memory_mode: str = "softmax",
                 composite_feather: float | None = 0.04) -> None:
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        # the constructor arguments, saved in checkpoints so `lipmem infer` rebuilds the net
        self.config = config
        if memory_mode not in MEMORY_MODES:
            raise ValueError(f"memory_mode={memory_mode!r}: expected one of {MEMORY_MODES}")
        self.memory_mode = memory_mode
        self.image_size = image_size
        # None: the decoder's whole face is the output; else only the hidden region is, blended
        # into the visible input over a seam this fraction of the side wide (nets.composite)
        self.feather_px = (None if composite_feather is None
                           else feather_pixels(composite_feather, image_size))
        self.use_reference = use_reference
        self.image_encoder = ImageEncoder(6 if use_reference else 3, image_size, base_channels,
                                          max_channels, embed_dim, norm)
        self.audio_encoder = AudioEncoder(n_mels, mel_frames, audio_dim, attention_heads,
                                          attention_layers)
        # memory_mode none: the same MLP maps audio straight to a mouth feature (embed_dim
        # outputs instead of n weights), so the decoder and the parameter count stay comparable
        mapping_out = embed_dim if memory_mode == "none" else num_codes
        self.audio_mapping = AudioMapping(audio_dim, mapping_out, mapping_hidden,
                                          mapping_temperature)
        self.memory = MemoryFusion(num_codes, embed_dim)
        self.decoder = Decoder(self.image_encoder.skip_channels, self.image_encoder.bottom_size,
                               embed_dim, audio_dim, embed_dim, cond_channels, norm=norm)

    @property
    def num_codes(self) -> int:
        return self.memory.num_codes

    def encoder_input(self, masked_face: torch.Tensor, reference: torch.Tensor | None) -> torch.Tensor:
        if self.use_reference:
            if reference is None:
                raise ValueError("generator was built with use_reference=True but got no reference")
            return torch.cat([masked_face, reference], dim=1)
        return masked_face

    def forward(self, masked_face: torch.Tensor, mel: torch.Tensor,
                reference: torch.Tensor | None = None,
                mask: torch.Tensor | None = None) -> GeneratorOutput:
        """``mask`` ((B or 1), 1, S, S), 1 = hidden: given (and composite_feather set), the
        output keeps the visible input outside the feathered mask."""
        face_feature, skips = self.image_encoder(self.encoder_input(masked_face, reference))
        audio_feature = self.audio_encoder(mel)
        if self.memory_mode == "none":
            fused = self.audio_mapping.logits(audio_feature)
            weights = audio_feature.new_zeros(audio_feature.shape[0], self.num_codes).float()
        else:
            weights = self.audio_mapping(audio_feature)
            if self.memory_mode == "argmax":
                weights = straight_through_argmax(weights)
            fused = self.memory(weights)
        image = self.decoder(face_feature, audio_feature, fused, skips)
        if mask is not None and self.feather_px is not None:
            image = composite(image, masked_face, feathered_alpha(mask, self.feather_px))
        return GeneratorOutput(image=image, weights=weights, fused_mouth=fused)

    @torch.no_grad()
    def encode_mouth(self, lower_face: torch.Tensor,
                     mask: torch.Tensor | None = None) -> torch.Tensor:
        """Embed lower-face crops (mask region kept, rest zeroed) with the image encoder, the
        space bootstrapped memory codes live in; reference channels, if any, are zero.
        ``mask`` is accepted (and unused) so this fits memory_bank.features' encoder slot."""
        if self.use_reference:
            lower_face = torch.cat([lower_face, torch.zeros_like(lower_face)], dim=1)
        return self.image_encoder.embed(lower_face)
