"""Conv + normalisation + activation units shared by the encoder and decoder."""

from __future__ import annotations

from torch import nn

NORMS = ("batch", "group")


def make_norm(kind: str, channels: int) -> nn.Module:
    """BatchNorm (default) keeps each image's absolute colour and brightness, which a
    per-sample norm (GroupNorm) normalises away and the decoder must then re-infer; GroupNorm
    is there for tiny per-GPU batches (or use trainer.sync_batchnorm=true under DDP)."""
    if kind == "batch":
        return nn.BatchNorm2d(channels)
    if kind == "group":
        return nn.GroupNorm(8 if channels % 8 == 0 else 1, channels)
    raise ValueError(f"norm={kind!r}: expected one of {NORMS}")


class ConvBlock(nn.Sequential):
    """conv -> GroupNorm -> activation, the method's 'convolution, activation, normalisation'."""

    def __init__(self, in_ch: int, out_ch: int, kernel: int = 3, stride: int = 1,
                 padding: int | None = None, norm: str = "batch") -> None:
        pad = kernel // 2 if padding is None else padding
        super().__init__(
            nn.Conv2d(in_ch, out_ch, kernel, stride, pad, bias=False),
            make_norm(norm, out_ch),
            nn.LeakyReLU(0.2, inplace=True),
        )


class UpBlock(nn.Sequential):
    """transposed conv (x2) -> GroupNorm -> activation."""

    def __init__(self, in_ch: int, out_ch: int, norm: str = "batch") -> None:
        super().__init__(
            nn.ConvTranspose2d(in_ch, out_ch, 4, 2, 1, bias=False),
            make_norm(norm, out_ch),
            nn.LeakyReLU(0.2, inplace=True),
        )


def stage_sizes(image_size: int) -> list[int]:
    """Spatial sizes of the encoder stages: halve while even and above 4 (96 -> 48 -> ... -> 3)."""
    if image_size < 16:
        raise ValueError(f"image_size={image_size}: must be at least 16")
    sizes = [image_size]
    while sizes[-1] > 4 and sizes[-1] % 2 == 0:
        sizes.append(sizes[-1] // 2)
    if sizes[-1] > 8:
        raise ValueError(f"image_size={image_size}: halving stops at {sizes[-1]} px; use a size "
                         "like 32, 48, 64, 96, 128 or 256 that halves down to 3-8 px")
    return sizes


def stage_channels(num_stages: int, base: int, maximum: int) -> list[int]:
    return [min(base * 2**i, maximum) for i in range(num_stages)]
