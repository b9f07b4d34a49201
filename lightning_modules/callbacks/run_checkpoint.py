"""ModelCheckpoint that keeps checkpoints under the run folder by default."""

from __future__ import annotations

import os
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint


class RunCheckpoint(ModelCheckpoint):
    """`dirpath: null` means `{trainer.default_root_dir}/checkpoints`.

    Lightning's own default nests checkpoints under the logger's project and run id; a run
    folder that holds its checkpoints, samples and W&B files side by side is easier to hand
    around, and follows `--trainer.default_root_dir` without a second key to keep in step.
    """

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        super().setup(trainer, pl_module, stage)
