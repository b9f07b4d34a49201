"""The generator's EMA: its average, its BatchNorm statistics, and who uses it."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from lightning_modules.training.generator_ema import GeneratorEMA


class TinyNet(nn.Module):
    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(4, 4)
        self.norm = nn.BatchNorm1d(4)
        self.register_buffer("flag", torch.zeros((), dtype=torch.bool))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.norm(self.lin(x))


@pytest.mark.parametrize("warmup", [10.0, 4.0])
def test_the_average_warms_up_then_follows_the_decay(warmup):
    torch.manual_seed(0)
    live = TinyNet()
    ema = GeneratorEMA(live, decay=0.9, recalibration_batches=0, warmup=warmup)
    assert not any(p.requires_grad for p in ema.parameters())  # never optimised, DDP-safe
    ema.copy_from(live)
    expected = live.lin.weight.detach().clone()
    for n in range(1, 40):
        with torch.no_grad():
            live.lin.weight.add_(1.0)
        live.flag.fill_(n % 2 == 1)
        ema.update(live, {})
        decay = min(0.9, (1 + n) / (warmup + n))
        expected = expected + (live.lin.weight.detach() - expected) * (1 - decay)
        torch.testing.assert_close(ema.module.lin.weight, expected)
        assert bool(ema.module.flag) == bool(live.flag)  # non-float buffers follow the live net


def test_recalibration_gives_the_averaged_weights_their_own_batch_statistics():
    torch.manual_seed(0)
    live = TinyNet()
    ema = GeneratorEMA(live, decay=0.5, recalibration_batches=3)
    ema.copy_from(live)
    batches = [torch.randn(32, 4) * 3 + 5 for _ in range(5)]
    for x in batches:
        ema.update(live, {"x": x})
    assert ema.recalibrate()
    with torch.no_grad():  # only the last three batches are kept; statistics average them
        features = [ema.module.lin(x) for x in batches[-3:]]
    mean = torch.stack([f.mean(0) for f in features]).mean(0)
    var = torch.stack([f.var(0) for f in features]).mean(0)
    torch.testing.assert_close(ema.module.norm.running_mean, mean, rtol=1e-4, atol=1e-4)
    torch.testing.assert_close(ema.module.norm.running_var, var, rtol=1e-4, atol=1e-4)
    assert not ema.module.training or ema.module.training == live.training


def test_decay_outside_zero_one_is_refused():
    with pytest.raises(ValueError, match="ema_decay"):
        GeneratorEMA(TinyNet(), decay=1.0)
    with pytest.raises(ValueError, match="ema_warmup"):
        GeneratorEMA(TinyNet(), warmup=1.0)

