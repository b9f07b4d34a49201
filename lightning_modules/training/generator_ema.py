"""An exponential moving average of the generator's weights, with its BatchNorm recalibrated.

GAN generators are judged by an average of their recent weights (StyleGAN, BigGAN): the
live weights swing from step to step, so checkpoints a few dozen batches apart can draw
quite different mouths. The average is what validation, eval, infer and published models
use. Its BatchNorm statistics are averaged along with the weights, and before each
validation they are recomputed exactly for the averaged weights from the last training
batches (``recalibrate``), so the eval-mode network matches the weights it carries.
"""

from __future__ import annotations

from collections import deque
from typing import Any

import torch
from torch import nn
from torch.optim.swa_utils import AveragedModel, update_bn

# where a LipSyncGAN checkpoint keeps the averaged generator (its attribute generator_ema)
EMA_PREFIX = "generator_ema.averaged.module."


def generator_state(state_dict: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """The generator weights a LipSyncGAN checkpoint publishes, keyed ``generator.*``: its
    EMA (``generator_ema.module.*``) when it has one, else the live weights."""
    prefix = EMA_PREFIX if any(k.startswith(EMA_PREFIX) for k in state_dict) else "generator."
    return {"generator." + k[len(prefix):]: v for k, v in state_dict.items()
            if k.startswith(prefix)}



class _Inputs(nn.Module):
    """Lets ``update_bn`` feed the generator keyword inputs (it passes one object)."""

    def __init__(self, generator: nn.Module) -> None:
        super().__init__()
        self.generator = generator

    def forward(self, inputs: dict[str, torch.Tensor]) -> Any:
        return self.generator(**inputs)


class GeneratorEMA(nn.Module):
    """``decay``: the long-run EMA decay; early on it is min(decay, (1 + n) / (warmup + n))
    after n updates, so a short run is not dominated by its random start: the average then
    spans about the last n / (warmup - 1) updates (a tenth of the run at the default 10)."""

    def __init__(self, generator: nn.Module, decay: float = 0.999,
                 recalibration_batches: int = 8, warmup: float = 10.0) -> None:
        super().__init__()
        if not 0.0 < decay < 1.0:
            raise ValueError(f"model.ema_decay={decay}: must be in (0, 1) (or null: no EMA)")
        if warmup <= 1.0:
            raise ValueError(f"model.ema_warmup={warmup}: must be > 1")
        self.warmup = float(warmup)
        if recalibration_batches < 0:
            raise ValueError(f"recalibration_batches={recalibration_batches}: must be >= 0")
        self.decay = decay
        self.averaged = AveragedModel(generator, avg_fn=self._average, use_buffers=True)
        self.averaged.requires_grad_(False)  # never optimised; DDP must not wait for grads
        self._recent: deque[dict[str, torch.Tensor]] = deque(maxlen=recalibration_batches)

    @property
    def module(self) -> nn.Module:
        return self.averaged.module

    def _average(self, averaged: torch.Tensor, current: torch.Tensor,
                 num_averaged: torch.Tensor) -> torch.Tensor:
        if not averaged.is_floating_point():
            return current  # counters and flags follow the live model
        n = float(num_averaged)
        decay = min(self.decay, (1.0 + n) / (self.warmup + n))
        return averaged + (current - averaged) * (1.0 - decay)

    @torch.no_grad()
    def copy_from(self, generator: nn.Module) -> None:
        """Restart the average at ``generator``'s weights and buffers."""
        self.averaged.n_averaged.zero_()
        self.averaged.update_parameters(generator)
        self._recent.clear()

    @torch.no_grad()
    def update(self, generator: nn.Module, inputs: dict[str, torch.Tensor]) -> None:
        """One EMA step; ``inputs`` (generator keyword arguments of this training batch) are
        kept for recalibration."""
        self.averaged.update_parameters(generator)
        if self._recent.maxlen:
            self._recent.append({k: v.detach() for k, v in inputs.items() if v is not None})

    @torch.no_grad()
    def recalibrate(self) -> bool:
        """Recompute the averaged model's BatchNorm statistics on the kept training batches
        (cumulative average, as torch.optim.swa_utils.update_bn); False when none are kept."""
        if not self._recent:
            return False
        was_training = self.module.training
        update_bn(list(self._recent), _Inputs(self.module))
        self.module.train(was_training)
        return True
