"""Hand trained models between jobs: checkpoints published as `model-{run}` artifacts.

At the end of `fit`, the last checkpoint (alias `latest`) and the best one by the
checkpoint callback's monitor (alias `best`; the same version when they coincide) are
published to the local artifact registry and logged to the W&B run, with the resolved
config and the memory bank the model was trained with. Any job then takes the model by
reference: `lipmem validate --ckpt_path model-RUN:best`.

Every checkpoint also records the W&B run id, so `lipmem fit --ckpt_path ...` resumes the
same W&B run (offline too) instead of starting a second one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

from lightning.pytorch.callbacks import Callback, ModelCheckpoint
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn

MODEL_TYPE = "model"
CKPT_FILE = "model.ckpt"
CONFIG_FILE = "config.yaml"
CKPT_KEY = "lipmem"  # checkpoint["lipmem"] = {"wandb_run_id": ..., "run_dir": ...}


def wandb_logger(trainer: Any) -> Any:
    for logger in trainer.loggers:
        if hasattr(logger, "mode") and logger.mode != "disabled":
            return logger
    return None


def run_name(trainer: Any) -> str:
    """The W&B run id when there is a W&B run, else the run folder's name."""
    logger = wandb_logger(trainer)
    raw = str(logger.version) if logger is not None and logger.version else \
        Path(trainer.default_root_dir).resolve().name
    return re.sub(r"[^A-Za-z0-9._-]", "-", raw).strip("-") or "run"


class ModelArtifact(Callback):
    def __init__(self, name: str | None = None, registry: str | None = None,
                 publish: bool = True) -> None:
        """name: artifact name, `{run}` in it = the run id (default `model-{run}`); registry:
        local registry root (default $LIPMEM_REGISTRY or ./artifacts); publish=false only
        records run ids."""
        self.name = name
        self.registry = registry
        self.publish = publish
        self.published: dict[str, str] = {}

    def on_save_checkpoint(self, trainer: Any, pl_module: Any, checkpoint: dict[str, Any]) -> None:
        logger = wandb_logger(trainer)
        checkpoint[CKPT_KEY] = {
            "wandb_run_id": str(logger.version) if logger is not None and logger.version else None,
            "run_dir": str(Path(trainer.default_root_dir).resolve()),
        }

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        if self.publish and trainer.is_global_zero:
            self._publish(trainer, pl_module)

    def _publish(self, trainer: Any, pl_module: Any) -> None:
        from memory_bank.artifacts.registry import LocalRegistry
        from memory_bank.provenance import code_version

        callbacks = [c for c in trainer.callbacks if isinstance(c, ModelCheckpoint)]
        last = next((c.last_model_path for c in callbacks if c.last_model_path), "")
        best_cb = next((c for c in callbacks if c.best_model_path), None)
        best = best_cb.best_model_path if best_cb is not None else ""
        if not last and not best:
            rank_zero_warn("ModelArtifact: no checkpoint was written, nothing to publish")
            return
        registry = LocalRegistry(self.registry) if self.registry else LocalRegistry.default()
        # `{run}` in a configured name is the run id too (e.g. `syncnet-{run}`)
        name = (self.name or "model-{run}").replace("{run}", run_name(trainer))
        config = Path(trainer.default_root_dir) / CONFIG_FILE
        common = {"run": run_name(trainer), "run_dir": str(Path(trainer.default_root_dir).resolve()),
                  "global_step": int(trainer.global_step), "epoch": int(trainer.current_epoch),
                  "memory_bank": getattr(pl_module, "memory_info", None) or None,
                  "code_version": code_version()}
        if best_cb is not None:
            score = best_cb.best_model_score
            common.update(monitor=best_cb.monitor, mode=best_cb.mode,
                          best_score=float(score) if score is not None else None)
        if best and last and Path(best).resolve() != Path(last).resolve():
            # best first: the registry moves `latest` to each new version, and it must end
            # on the last checkpoint
            targets = [(best, ["best"]), (last, ["latest"])]
        else:
            targets = [(last or best, ["latest", "best"] if best else ["latest"])]
        logger = wandb_logger(trainer)
        for path, aliases in targets:
            files = {CKPT_FILE: path}
            if config.is_file():
                files[CONFIG_FILE] = str(config)
            version = registry.publish(name, MODEL_TYPE, files,
                                       {**common, "checkpoint": Path(path).name},
                                       aliases=[a for a in aliases if a != "latest"])
            for alias in aliases:
                self.published[alias] = version.ref
            if logger is not None:
                from memory_bank.artifacts.wandb_artifacts import log_artifact

                log_artifact(logger.experiment, version, aliases=aliases)
            rank_zero_info(f"lipmem: published {Path(path).name} as {version.ref} "
                           f"({', '.join(aliases)}) to {registry.root}")
