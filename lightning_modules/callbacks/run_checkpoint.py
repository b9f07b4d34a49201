"""ModelCheckpoint that keeps checkpoints under the run folder by default, each with a
sha256 sidecar (`last.ckpt.sha256`) that `--ckpt_path` verifies before loading."""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info


class RunCheckpoint(ModelCheckpoint):
    """`dirpath: null` means `{trainer.default_root_dir}/checkpoints`.

    Lightning's own default nests checkpoints under the logger's project and run id; a run
    folder that holds its checkpoints, samples and W&B files side by side is easier to hand
    around, and follows `--trainer.default_root_dir` without a second key to keep in step.

    Every checkpoint it writes gets `{file}.sha256` (see lightning_modules.checkpoints.digest):
    a local checkpoint has no registry manifest, and this is what lets a resumed or
    evaluated run refuse a file changed after it was written.

    When validation is off (a corpus with no val split) and the monitored metric is never
    logged, it keeps `last.ckpt` only and says so once, instead of Lightning's repeated
    "could not find the monitored key" hint.
    """

    def __init__(self, *args: Any, last_every_n_train_steps: int = 0, **kwargs: Any) -> None:
        """last_every_n_train_steps: also rewrite `last.ckpt` every N optimizer steps (the GAN
        steps twice per batch), so a crash mid-epoch loses at most N steps; 0 = only when
        Lightning saves (epoch end). One callback owns `last.ckpt`: a second ModelCheckpoint
        with save_last would write `last-v1.ckpt`, which `--ckpt_path last` does not read."""
        super().__init__(*args, **kwargs)
        if isinstance(last_every_n_train_steps, bool) or not isinstance(
                last_every_n_train_steps, int) or last_every_n_train_steps < 0:
            raise ValueError(f"last_every_n_train_steps={last_every_n_train_steps!r}: must be an "
                             "integer >= 0 (0 = off)")
        if last_every_n_train_steps and not self.save_last:
            raise ValueError(f"last_every_n_train_steps={last_every_n_train_steps} needs "
                             "save_last: true (it rewrites last.ckpt)")
        self.last_every_n_train_steps = last_every_n_train_steps
        self._said_no_validation = False

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)
        n = self.last_every_n_train_steps
        if n and trainer.global_step % n == 0 and not self._should_skip_saving_checkpoint(trainer):
            saved = self._last_global_step_saved
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))
            # Lightning skips any save at a step it already saved: the epoch-end top-k
            # checkpoint at this same step must still be written
            self._last_global_step_saved = saved

    def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_train_epoch_end(trainer, pl_module)
        if self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        super().on_validation_end(trainer, pl_module)
        if not self._should_save_on_train_epoch_end(trainer):
            self._save_last_if_stale(trainer)

    def _save_last_if_stale(self, trainer: Any) -> None:
        """Since Lightning 2.6, `save_last: true` rewrites last.ckpt only at a step where a
        top-k checkpoint was written, so with save_top_k=1 `last` was the *best* state:
        `--ckpt_path last` went back in time and the `latest` artifact was the best one.
        last.ckpt here is always the latest save point (epoch end / validation)."""
        if self.save_last is True and not self._should_skip_saving_checkpoint(trainer):
            self._save_last_checkpoint(trainer, self._monitor_candidates(trainer))

    def _save_topk_checkpoint(self, trainer: Any, monitor_candidates: dict[str, Any]) -> None:
        if self.monitor is not None and self.monitor not in monitor_candidates \
                and not trainer.enable_validation:
            if not self._said_no_validation:
                self._said_no_validation = True
                keeps = "keeping last.ckpt only" if self.save_last else "saving no checkpoint"
                rank_zero_info(f"RunCheckpoint: validation is off and {self.monitor!r} is not "
                               f"logged: {keeps} (no best checkpoint)")
            return
        super()._save_topk_checkpoint(trainer, monitor_candidates)

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        """A resumed checkpoint's callback state names checkpoint files, and Lightning later
        deletes the worst of `best_k_models`; its own guard lets `dirpath/../x` and remote
        URLs through. A checkpoint is data: only files directly in this folder are kept."""
        super().load_state_dict(state_dict)
        folder = Path(self.dirpath).resolve() if self.dirpath else None

        def ours(path: Any) -> bool:
            return (folder is not None and isinstance(path, str) and "://" not in path
                    and Path(path).resolve().parent == folder)

        self.best_k_models = {k: v for k, v in self.best_k_models.items() if ours(k)}
        for attr in ("kth_best_model_path", "best_model_path", "last_model_path"):
            if getattr(self, attr) and not ours(getattr(self, attr)):
                setattr(self, attr, "")

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        if self.dirpath is None:
            self.dirpath = os.path.join(trainer.default_root_dir, "checkpoints")
        super().setup(trainer, pl_module, stage)

    def _save_checkpoint(self, trainer: Any, filepath: str) -> None:
        from lightning_modules.checkpoints.digest import remove_digest, write_digest

        if trainer.is_global_zero:  # never leave a stale digest beside a rewritten file
            remove_digest(filepath)
        super()._save_checkpoint(trainer, filepath)
        if trainer.is_global_zero and os.path.isfile(filepath):
            write_digest(filepath)

    def _remove_checkpoint(self, trainer: Any, filepath: str) -> None:
        from lightning_modules.checkpoints.digest import remove_digest

        super()._remove_checkpoint(trainer, filepath)
        if trainer.is_global_zero:
            remove_digest(filepath)
