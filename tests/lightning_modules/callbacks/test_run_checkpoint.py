"""last.ckpt must be the latest state, also when the monitored metric stopped improving."""

from __future__ import annotations

import lightning as L
import pytest
import torch
from lightning.pytorch.demos.boring_classes import BoringModel

from lightning_modules.callbacks import RunCheckpoint


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
