"""Fold eval-mode BatchNorm into the convolution before it, for inference.

In eval mode a BatchNorm is a fixed per-channel affine map, so it can be merged into the
preceding convolution's weights and bias (torch's own `fuse_conv_bn_eval`): the same output
up to float rounding, one pass over every feature map fewer. Used when a generator is loaded
for `lipmem infer` / `lipmem eval`, never in training, where the statistics still move.
"""

from __future__ import annotations

from itertools import pairwise

from torch import nn
from torch.nn.utils.fusion import fuse_conv_bn_eval


def fold_batchnorm(model: nn.Module) -> int:
    """Merge every BatchNorm2d that directly follows a Conv2d / ConvTranspose2d inside an
    nn.Sequential into that convolution (the BatchNorm becomes Identity, so module indices and
    unpacking stay valid). In place; returns how many were folded."""
    if model.training:
        raise ValueError("fold_batchnorm needs a model in eval mode: in training BatchNorm "
                         "uses batch statistics, which cannot be folded")
    folded = 0
    for seq in model.modules():
        if not isinstance(seq, nn.Sequential):
            continue
        names = list(seq._modules)
        for conv_name, norm_name in pairwise(names):
            conv, norm = seq._modules[conv_name], seq._modules[norm_name]
            if (isinstance(conv, (nn.Conv2d, nn.ConvTranspose2d)) and isinstance(norm, nn.BatchNorm2d)
                    and norm.track_running_stats):
                seq._modules[conv_name] = fuse_conv_bn_eval(
                    conv, norm, transpose=isinstance(conv, nn.ConvTranspose2d))
                seq._modules[norm_name] = nn.Identity()
                folded += 1
    return folded
