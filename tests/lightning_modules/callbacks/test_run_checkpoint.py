"""last.ckpt must be the latest state, also when the monitored metric stopped improving;
monitors of val metrics degrade gracefully when a fit has no validation."""

from __future__ import annotations

import warnings

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_modules.callbacks import RunCheckpoint, RunEarlyStopping


class GettingWorse(BoringModel):
    """Scores rise every epoch: only epoch 0 is ever the best (mode=min)."""

    def training_step(self, batch, batch_idx):
        self.log("train/score", float(self.current_epoch), on_epoch=True, on_step=False)
        return super().training_step(batch, batch_idx)

    def validation_step(self, batch, batch_idx):
        self.log("val/score", float(self.current_epoch))
        return super().validation_step(batch, batch_idx)


@pytest.mark.parametrize("validate", [True, False])
def test_last_is_the_latest_epoch_not_the_best(tmp_path, validate):
    callback = RunCheckpoint(monitor="val/score" if validate else "train/score", mode="min",
                             save_top_k=1, save_last=True, filename="best-{epoch}")
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1,
                        max_epochs=3, limit_train_batches=2, limit_val_batches=1 if validate else 0,
                        logger=False, enable_progress_bar=False, enable_model_summary=False,
                        callbacks=[callback])
    trainer.fit(GettingWorse())
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2 and last["global_step"] == 6   # Lightning 2.6 alone: epoch 0
    assert sorted(p.name for p in (tmp_path / "checkpoints").glob("best-*.ckpt")) == [
        "best-epoch=0.ckpt"]


def _fit_without_validation(tmp_path, callbacks) -> L.Trainer:
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1,
                        max_epochs=3, limit_train_batches=2, limit_val_batches=0, logger=False,
                        enable_progress_bar=False, enable_model_summary=False,
                        callbacks=callbacks)
    trainer.fit(GettingWorse())
    return trainer


def test_no_validation_keeps_last_only_and_says_so_once(tmp_path, caplog):
    """A val metric never arrives when validation is off: no best checkpoint, no crash, and
    one clear line instead of Lightning's "did you call log(...)?" hint every epoch."""
    callback = RunCheckpoint(monitor="val/score", mode="min", save_top_k=1, save_last=True,
                             filename="best-{epoch}")
    with caplog.at_level("INFO"), warnings.catch_warnings(record=True) as warned:
        warnings.simplefilter("always")
        _fit_without_validation(tmp_path, [callback])
    assert not [w for w in warned if "could not find the monitored key" in str(w.message)]
    said = [r for r in caplog.records if "validation is off" in r.getMessage()]
    assert len(said) == 1 and "keeping last.ckpt only" in said[0].getMessage()
    last = torch.load(tmp_path / "checkpoints" / "last.ckpt", weights_only=True)
    assert last["epoch"] == 2
    assert not list((tmp_path / "checkpoints").glob("best-*.ckpt"))


def test_early_stopping_waits_for_validation_but_keeps_typos_fatal(tmp_path):
    stopper = RunEarlyStopping(monitor="val/score", mode="min", patience=0)
    trainer = _fit_without_validation(tmp_path / "off", [stopper])
    assert trainer.current_epoch == 3 and not stopper.stopped_epoch  # ran its whole budget
    # with validation on, a metric that is never logged is still an error
    typo = RunEarlyStopping(monitor="val/scroe", mode="min")
    trainer = L.Trainer(default_root_dir=str(tmp_path / "on"), accelerator="cpu", devices=1,
                        max_epochs=1, limit_train_batches=2, limit_val_batches=1, logger=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[typo])
    with pytest.raises(RuntimeError, match="val/scroe"):
        trainer.fit(GettingWorse())
