"""The decoder's shortcut for broadcast channels must equal convolving the broadcast maps."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.nets.constant_channel_conv import conv_with_constant_channels


def broadcast_conv(conv: nn.Conv2d, x: torch.Tensor, vector: torch.Tensor) -> torch.Tensor:
    maps = vector[:, :, None, None].expand(-1, -1, x.shape[2], x.shape[3])
    return conv(torch.cat([x, maps], dim=1))


@pytest.mark.parametrize(("kernel", "stride", "padding", "dilation", "bias", "size"), [
    (3, 1, 1, 1, False, (12, 12)),   # the decoder's fuse convs
    (3, 1, 1, 1, True, (3, 3)),      # the 3 px bottom stage: every pixel touches the border
    (5, 2, 2, 1, True, (11, 9)),     # strided, odd and non-square
    (3, 1, 2, 2, False, (7, 10)),    # dilated
    (4, 1, 0, 1, False, (6, 6)),     # no padding: the vector's part is a plain constant
])
def test_equals_convolving_broadcast_maps(kernel, stride, padding, dilation, bias, size):
    torch.manual_seed(0)
    conv = nn.Conv2d(5 + 3, 4, kernel, stride, padding, dilation, bias=bias).double()
    x = torch.randn(2, 5, *size, dtype=torch.float64, requires_grad=True)
    vector = torch.randn(2, 3, dtype=torch.float64, requires_grad=True)
    expected = broadcast_conv(conv, x, vector)
    got = conv_with_constant_channels(conv, x, vector)
    torch.testing.assert_close(got, expected)
    # and the same gradients for the input, the vector and the weights (training uses it)
    grads = torch.autograd.grad(expected.square().sum(), [x, vector, conv.weight])
    grads_got = torch.autograd.grad(got.square().sum(), [x, vector, conv.weight])
    for a, b in zip(grads_got, grads):
        torch.testing.assert_close(a, b)


def test_refuses_a_conv_it_cannot_shortcut():
    x, vector = torch.randn(1, 5, 8, 8), torch.randn(1, 3)
    with pytest.raises(ValueError, match="9 input channels but got 5 image channels \\+ 3"):
        conv_with_constant_channels(nn.Conv2d(9, 4, 3, padding=1), x, vector)
    with pytest.raises(ValueError, match="padding_mode='reflect'"):
        conv_with_constant_channels(nn.Conv2d(8, 4, 3, padding=1, padding_mode="reflect"),
                                    x, vector)
