"""Memory-code usage: collapse onto one code must be visible."""

import math

import torch

from lightning_modules.training.code_usage import CodeUsage, entropy


def test_collapse_and_spread_usage_are_told_apart():
    usage = CodeUsage(4)
    usage.update(torch.tensor([[1.0, 0, 0, 0]] * 3))
    collapsed = usage.compute()
    torch.testing.assert_close(collapsed, torch.tensor([1.0, 0, 0, 0]))
    assert entropy(collapsed) < 1e-6
    usage.reset()
    usage.update(torch.softmax(torch.zeros(5, 4), dim=1))
    usage.update(torch.eye(4))
    spread = usage.compute()
    torch.testing.assert_close(spread.sum(), torch.tensor(1.0))
    assert abs(float(entropy(spread)) - math.log(4)) < 1e-5
