"""EarlyStopping that tolerates a fit without validation."""

from __future__ import annotations

from typing import Any

from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.utilities import rank_zero_info


class RunEarlyStopping(EarlyStopping):
    """Lightning's EarlyStopping, except when validation is off (a corpus with no val split):
    a val metric can then never arrive, and Lightning's ``strict`` check would end the run
    with an error at the first epoch; here it is said once and training runs to its budget.
    With validation on, a monitored key that is missing still fails (``strict``), so a typo
    in the metric name is not silently ignored."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self._said_no_validation = False

    def _run_early_stopping_check(self, trainer: Any) -> None:
        if self.monitor not in trainer.callback_metrics and not trainer.enable_validation:
            if not self._said_no_validation:
                self._said_no_validation = True
                rank_zero_info(f"RunEarlyStopping: validation is off and {self.monitor!r} is "
                               f"not logged: no early stopping in this run")
            return
        super()._run_early_stopping_check(trainer)
