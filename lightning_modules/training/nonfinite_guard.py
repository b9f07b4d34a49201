"""Skip optimizer steps whose loss is not finite; stop after K of them in a row.

One NaN step poisons Adam's moment estimates and every weight after it, so a step with a
NaN/inf loss (or gradient norm) is skipped: no backward, no optimizer step, the weights and
optimizer state stay those of the last good step. The forward pass has already moved the
batch-norm running statistics (buffers, not weights) by then, so they are snapshotted
before the forward (:class:`RunningStats`) and put back when the batch turns out bad:
otherwise one NaN batch would make every later evaluation NaN. An occasional bad batch costs one step; a
run that has diverged for good produces nothing but bad steps, and after
``max_consecutive`` of them in a row it is stopped with a checkpoint of the (untouched)
weights, instead of burning the rest of its budget.

Under DDP every rank must take the same decision, or the ranks that do call backward wait
forever in the gradient all-reduce for the ones that do not: :meth:`agree` sums the local
flags over ranks (``reduce`` is the strategy's ``reduce``; an identity on one device).
"""

from __future__ import annotations

from collections.abc import Callable

import torch

Reduce = Callable[[torch.Tensor], torch.Tensor]


class NonFiniteLossError(RuntimeError):
    """Training stopped after too many consecutive non-finite steps."""


def is_bad(value: torch.Tensor) -> bool:
    """True when any element is NaN or +-inf."""
    return not bool(torch.isfinite(value.detach()).all())


class RunningStats:
    """Copies of every batch-norm running mean / var / count under a module."""

    def __init__(self, module: torch.nn.Module) -> None:
        self.saved = [(buf, buf.detach().clone())
                      for m in module.modules()
                      if isinstance(m, torch.nn.modules.batchnorm._NormBase)
                      and m.track_running_stats
                      for buf in (m.running_mean, m.running_var, m.num_batches_tracked)
                      if buf is not None]

    @torch.no_grad()
    def restore(self) -> None:
        for buf, copy in self.saved:
            buf.copy_(copy)


class NonFiniteGuard:
    def __init__(self, max_consecutive: int = 10) -> None:
        if isinstance(max_consecutive, bool) or not isinstance(max_consecutive, int) \
                or max_consecutive < 1:
            raise ValueError(f"max_nonfinite_steps={max_consecutive!r}: must be an integer >= 1")
        self.max_consecutive = max_consecutive
        self.skipped_steps = 0     # optimizer steps skipped, whole run
        self.bad_batches = 0       # batches with at least one skipped step, whole run
        self.consecutive = 0       # bad batches in a row, up to now

    @staticmethod
    def agree(loss: torch.Tensor, reduce: Reduce, extra: torch.Tensor | None = None
              ) -> tuple[bool, torch.Tensor | None]:
        """(any rank's ``loss`` is non-finite, ``extra`` summed over ranks).

        ``extra`` (a 1-D vector, e.g. per-batch counts) rides along in the same all-reduce,
        so logging rank-summed counts costs no second collective.
        """
        flag = torch.tensor([1.0 if is_bad(loss) else 0.0], device=loss.device)
        parts = [flag] if extra is None else [flag, extra.to(loss.device, torch.float32)]
        summed = reduce(torch.cat(parts))
        return bool(summed[0] > 0), (None if extra is None else summed[1:])

    def record(self, skipped_steps: int) -> bool:
        """Count one batch's skipped optimizer steps; True when the run must stop."""
        self.skipped_steps += skipped_steps
        if skipped_steps:
            self.bad_batches += 1
            self.consecutive += 1
        else:
            self.consecutive = 0
        return self.consecutive >= self.max_consecutive

    def message(self, checkpoint: str, details: str = "") -> str:
        return (f"{self.consecutive} consecutive training batches had a non-finite loss or "
                f"gradient norm (model.max_nonfinite_steps={self.max_consecutive}; "
                f"{self.skipped_steps} optimizer steps skipped in this run){details}. The run "
                f"has diverged: stopping. The weights of the last finite step (skipped steps "
                f"never change them) are saved in {checkpoint}; lower the learning rates or "
                "check the data, then resume with --ckpt_path that file.")
