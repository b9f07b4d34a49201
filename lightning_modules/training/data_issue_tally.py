"""Running totals of the loader's skipped / repaired samples, by category, for the logs.

The loader workers count what they skip or repair (:mod:`datamodules.data_issues`) and put
the counts since their previous batch into each batch (``batch["issues"]``); a worker's
counters never reach the main process any other way. Training: the per-batch vectors are
summed over DDP ranks (riding along in the non-finite-loss all-reduce, see
:class:`lightning_modules.training.nonfinite_guard.NonFiniteGuard`) and accumulated here, so
``data/skipped/{reason}`` is cumulative over the run and over all ranks. Validation:
``val/data/skipped/{reason}`` is the count of one val pass, summed over ranks at its end.
Counts a worker makes after its last batch of an epoch are lost with the worker.
"""

from __future__ import annotations

from typing import Any

import torch

from datamodules.data_issues import ISSUES, SKIP_REASONS, issue_counts, metric_names


class DataIssueTally:
    def __init__(self) -> None:
        self.counts = torch.zeros(len(ISSUES), dtype=torch.int64)

    @staticmethod
    def local(batch: Any) -> torch.Tensor | None:
        """This rank's counts in ``batch`` (None when the loader does not report them)."""
        issues = batch.get("issues") if isinstance(batch, dict) else None
        if not isinstance(issues, torch.Tensor) or issues.numel() != len(ISSUES):
            return None
        return issues.reshape(-1)

    def add(self, summed: torch.Tensor) -> None:
        self.counts += summed.detach().round().to("cpu", torch.int64).reshape(-1)

    @property
    def skipped(self) -> int:
        counts = issue_counts(self.counts)
        return sum(counts[name] for name in SKIP_REASONS)

    def metrics(self, prefix: str = "data") -> dict[str, float]:
        """``data/skipped/{reason}``, ``data/repaired/{reason}`` (non-zero ones) + totals."""
        return metric_names(issue_counts(self.counts), prefix)

    def log_eval(self, module: Any, batch: Any, stage: str) -> None:
        """Log one eval batch's counts, summed over the epoch and the ranks (every reason,
        zeros too, so every rank logs the same keys)."""
        issues = self.local(batch)
        if issues is None:
            return
        for name, value in metric_names(issue_counts(issues), f"{stage}/data",
                                        include_zero=True).items():
            module.log(name, value, on_step=False, on_epoch=True, reduce_fx="sum",
                       sync_dist=True, batch_size=1)
