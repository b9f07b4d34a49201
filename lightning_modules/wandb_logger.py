"""W&B logging that works with and without a server, writing only under the run folder.

Offline unless credentials exist: a run on an air-gapped cluster still records everything
for a later `wandb sync`. wandb keeps files in four places (run data, artifacts staging,
cache, settings); all four are pointed inside `save_dir` so nothing lands in $HOME.
"""

from __future__ import annotations

import netrc
import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

MODES = ("auto", "online", "offline", "disabled")


def has_wandb_credentials() -> bool:
    if os.environ.get("WANDB_API_KEY"):
        return True
    try:
        host = os.environ.get("WANDB_BASE_URL", "https://api.wandb.ai").split("://")[-1]
        return netrc.netrc().authenticators(host.split("/")[0]) is not None
    except (FileNotFoundError, netrc.NetrcParseError, OSError):
        return False


def resolve_mode(mode: str) -> str:
    if mode not in MODES:
        raise ValueError(f"trainer.logger mode={mode!r}: expected one of {MODES}")
    if mode != "auto":
        return mode
    env = os.environ.get("WANDB_MODE")
    if env in ("online", "offline", "disabled"):
        return env
    return "online" if has_wandb_credentials() else "offline"


class LipmemWandbLogger(WandbLogger):
    """WandbLogger with `mode='auto'` and every W&B file kept under `save_dir`."""

    def __init__(self, save_dir: str | None = None, project: str = "lipmem",
                 name: str | None = None, mode: str = "auto", group: str | None = None,
                 tags: list[str] | None = None, id: str | None = None,
                 resume: str | None = None, job_type: str | None = None,
                 log_model: bool = False, **kwargs: Any) -> None:
        """id: continue that W&B run (`lipmem fit --ckpt_path` fills it from the checkpoint);
        resume: wandb.init's resume, default 'allow' when an id is given."""
        self.mode = resolve_mode(mode)
        if save_dir is None:
            raise ValueError("LipmemWandbLogger needs save_dir (the CLI fills it with "
                             "trainer.default_root_dir)")
        root = Path(save_dir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        for var, sub in (("WANDB_DIR", ""), ("WANDB_DATA_DIR", "wandb-data"),
                         ("WANDB_CACHE_DIR", "wandb-cache"), ("WANDB_CONFIG_DIR", "wandb-config"),
                         ("WANDB_ARTIFACT_DIR", "wandb-artifacts")):
            path = root / sub if sub else root
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)
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
