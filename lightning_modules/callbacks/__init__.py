"""Trainer callbacks (training-side glue; no model code here)."""

from lightning_modules.callbacks.early_stopping import RunEarlyStopping
from lightning_modules.callbacks.graceful_stop import GracefulStop
from lightning_modules.callbacks.model_artifact import ModelArtifact
from lightning_modules.callbacks.run_checkpoint import RunCheckpoint
from lightning_modules.callbacks.val_media_logger import ValMediaLogger

__all__ = ["GracefulStop", "ModelArtifact", "RunCheckpoint", "RunEarlyStopping", "ValMediaLogger"]
