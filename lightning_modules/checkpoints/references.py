"""`--ckpt_path` takes a reference, and a resumed fit continues its W&B run.

Lightning's own values (`last`, `best`, `hpc`, `registry`) and existing files pass through
unchanged; anything else is resolved like every lipmem artifact (`model-RUN:best`,
`model-RUN:v3`, `wandb:entity/project/model-RUN:latest`), sha256-checked, and replaced by
the checkpoint file inside the artifact.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

LIGHTNING_CKPT_VALUES = ("last", "best", "hpc", "registry")
RUN_ID = re.compile(r"[A-Za-z0-9_-]{1,128}")


def resolve_ckpt_path(ckpt_path: str | None, registry: str | None = None) -> str | None:
    if not ckpt_path or ckpt_path in LIGHTNING_CKPT_VALUES or Path(ckpt_path).is_file():
        return ckpt_path
    from lightning_modules.callbacks.model_artifact import CKPT_FILE, MODEL_TYPE
    from memory_bank.artifacts.references import resolve_reference
    from memory_bank.artifacts.registry import ArtifactVersion, LocalRegistry

    target = resolve_reference(ckpt_path, registry=LocalRegistry(registry) if registry else None,
                               expected_type=MODEL_TYPE)
    if isinstance(target, ArtifactVersion):
        return str(target.file(CKPT_FILE))
    if target.is_dir():
        raise ValueError(f"--ckpt_path {ckpt_path!r} is a folder without artifact.json; pass a "
                         ".ckpt file or a model reference such as model-RUN:best")
    return str(target)


def local_ckpt_file(ckpt_path: str | None, default_root_dir: str | None) -> Path | None:
    """The file `ckpt_path` will load, where that can be known before the Trainer exists
    (`last` = RunCheckpoint's `{default_root_dir}/checkpoints/last.ckpt`)."""
    if not ckpt_path:
        return None
    if ckpt_path == "last":
        path = Path(default_root_dir or ".") / "checkpoints" / "last.ckpt"
        return path if path.is_file() else None
    path = Path(ckpt_path)
    return path if path.is_file() else None


def wandb_run_id(ckpt_file: Path) -> str | None:
    """The W&B run id ModelArtifact stored in the checkpoint (loaded without running code)."""
    import torch

    from lightning_modules.callbacks.model_artifact import CKPT_KEY

    try:
        checkpoint: dict[str, Any] = torch.load(ckpt_file, map_location="cpu", weights_only=True,
                                                mmap=True)
    except Exception as exc:
        raise ValueError(f"checkpoint {ckpt_file} cannot be read safely "
                         f"(torch.load weights_only=True: {type(exc).__name__}: {exc})") from exc
    info = checkpoint.get(CKPT_KEY) or {}
    run_id = info.get("wandb_run_id") if isinstance(info, dict) else None
    if run_id is None:
        return None
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id):  # it names folders
        raise ValueError(f"checkpoint {ckpt_file}: {CKPT_KEY}.wandb_run_id={run_id!r} is not a "
                         "W&B run id (letters, digits, '_', '-')")
    return run_id


def load_checkpoint(ref: str, registry: str | None = None,
                    what: str = "model") -> tuple[Path, dict[str, Any]]:
    """Resolve a model reference or path and read the checkpoint without running code:
    artifact files are sha256-checked on resolve, run-folder files against their sidecar,
    then ``torch.load(weights_only=True)`` (digest.load_checkpoint_safely)."""
    from lightning_modules.checkpoints.digest import load_checkpoint_safely

    try:
        path = resolve_ckpt_path(str(ref), registry)
    except Exception as exc:
        raise ValueError(f"{what} {str(ref)!r} does not resolve: {exc}") from exc
    if path is None or path in LIGHTNING_CKPT_VALUES or not Path(path).is_file():
        raise FileNotFoundError(f"{what} {str(ref)!r}: no checkpoint file at {path!r}")
    checkpoint = load_checkpoint_safely(path, warn_missing=False)
    if "state_dict" not in checkpoint:
        raise ValueError(f"checkpoint {path} has no state_dict (not a Lightning checkpoint)")
    return Path(path), checkpoint
