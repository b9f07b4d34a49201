"""A callback for tests that drive a real `lipmem fit` from outside (signals, crashes): it
writes a file once training has run a given number of batches, so the test knows when."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback


class StepMarker(Callback):
    def __init__(self, path: str, after_batches: int = 2) -> None:
        self.path = Path(path)
        self.after_batches = after_batches

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        if batch_idx + 1 >= self.after_batches and not self.path.exists():
            self.path.write_text(str(trainer.global_step))
