"""W&B logging that works with and without a server, writing only under the run folder.

Offline unless credentials exist for the W&B server wandb is configured for (WANDB_BASE_URL,
or the `base_url` that `wandb login --host` writes into W&B's settings): a run on an
air-gapped cluster still records everything for a later `wandb sync`. wandb keeps files in
four places (run data, artifacts staging, cache, settings); all four are pointed inside
`save_dir` so nothing lands in $HOME. The mode and the server are decided from the user's
own settings first, since the settings folder is one of the four.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

from memory_bank.artifacts.wandb_mode import (
    FOLDER_VARS,
    MODES,
    has_wandb_credentials,
    remember_user_folders,
    resolve_mode,
    wandb_host,
)

__all__ = ["FOLDER_VARS", "MODES", "LipmemWandbLogger", "has_wandb_credentials", "resolve_mode",
           "wandb_host"]

class LipmemWandbLogger(WandbLogger):
    """WandbLogger with `mode='auto'` and every W&B file kept under `save_dir`."""

    def __init__(self, save_dir: str | None = None, project: str = "lipmem",
                 name: str | None = None, mode: str = "auto", group: str | None = None,
                 tags: list[str] | None = None, id: str | None = None,
                 resume: str | None = None, job_type: str | None = None,
                 log_model: bool = False, **kwargs: Any) -> None:
        """id: continue that W&B run (`lipmem fit --ckpt_path` fills it from the checkpoint);
        resume: wandb.init's resume, default 'allow' when an id is given."""
        if save_dir is None:
            raise ValueError("LipmemWandbLogger needs save_dir (the CLI fills it with "
                             "trainer.default_root_dir)")
        # Decided from the user's own W&B settings, before their folder is moved below.
        self.mode = resolve_mode(mode)
        host = wandb_host() if self.mode == "online" else None
        root = Path(save_dir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        remember_user_folders()
        for var, sub in zip(FOLDER_VARS, ("", "wandb-data", "wandb-cache", "wandb-config",
                                          "wandb-artifacts"), strict=True):
            path = root / sub if sub else root
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)
        if host is not None:  # the moved settings folder no longer names the user's server
            os.environ.setdefault("WANDB_BASE_URL", host)
        # Lightning refuses offline=True with log_model; WANDB_MODE=offline does the same job.
        os.environ["WANDB_MODE"] = self.mode
        if id and resume is None:
            resume = "allow"
        if resume is not None:
            kwargs["resume"] = resume
        if job_type is not None:
            kwargs["job_type"] = job_type
        super().__init__(name=name, save_dir=str(root), project=project, group=group, tags=tags,
                         id=id, log_model=log_model, offline=False, **kwargs)
