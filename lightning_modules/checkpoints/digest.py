"""sha256 sidecars for local run checkpoints, and loading any checkpoint without running code.

Registry artifacts carry their sha256 in ``artifact.json`` (checked on every resolve); a run
folder's ``checkpoints/last.ckpt`` has no manifest, so :class:`RunCheckpoint` writes
``last.ckpt.sha256`` beside every checkpoint it saves (``sha256sum`` format, so
``sha256sum -c last.ckpt.sha256`` works too). The old sidecar is removed *before* a
checkpoint is rewritten and the new one written after it: a crash in between leaves a
checkpoint without a sidecar (loaded with a warning), never a stale digest that would
refuse a good file.
"""

from __future__ import annotations

import os
import warnings
from pathlib import Path
from typing import Any

from datamodules.atomic_files import atomic_path, sha256_file

SIDECAR_SUFFIX = ".sha256"


class CheckpointIntegrityError(ValueError):
    """A checkpoint whose bytes differ from its recorded sha256, or that cannot be read
    without executing code."""


def sidecar_path(ckpt: str | os.PathLike) -> Path:
    ckpt = Path(ckpt)
    return ckpt.with_name(ckpt.name + SIDECAR_SUFFIX)


def remove_digest(ckpt: str | os.PathLike) -> None:
    sidecar_path(ckpt).unlink(missing_ok=True)


def write_digest(ckpt: str | os.PathLike) -> str:
    """Write ``{ckpt}.sha256`` atomically; returns the digest."""
    ckpt = Path(ckpt)
    digest = sha256_file(ckpt)
    with atomic_path(sidecar_path(ckpt)) as tmp:
        tmp.write_text(f"{digest}  {ckpt.name}\n")
    return digest


def recorded_digest(ckpt: str | os.PathLike) -> str | None:
    """The sha256 recorded beside ``ckpt``, or None without a sidecar."""
    path = sidecar_path(ckpt)
    if not path.is_file():
        return None
    fields = path.read_text().split()
    if not fields or len(fields[0]) != 64:
        raise CheckpointIntegrityError(f"{path} is not a sha256 sidecar (expected "
                                       f"'<64 hex digits>  {Path(ckpt).name}')")
    return fields[0].lower()


def verify_digest(ckpt: str | os.PathLike, warn_missing: bool = True) -> bool:
    """True when the sidecar matches; False (with a warning unless ``warn_missing=False``)
    without one; CheckpointIntegrityError naming the file and both digests on a mismatch."""
    expected = recorded_digest(ckpt)
    if expected is None:
        if not warn_missing:
            return False
        warnings.warn(f"checkpoint {ckpt} has no {sidecar_path(ckpt).name} sidecar: its "
                      "integrity cannot be checked (it is still loaded without running code)",
                      stacklevel=2)
        return False
    actual = sha256_file(ckpt)
    if actual != expected:
        raise CheckpointIntegrityError(
            f"checkpoint {ckpt} has changed since it was saved: sha256 expected {expected} "
            f"(from {sidecar_path(ckpt)}), actual {actual}; refusing to load it")
    return True


def load_checkpoint_safely(ckpt: str | os.PathLike, warn_missing: bool = True) -> dict[str, Any]:
    """``torch.load(weights_only=True)`` (tensors and plain containers only: a pickle that
    would run code is refused), after the sidecar check."""
    import torch

    verify_digest(ckpt, warn_missing)
    try:
        checkpoint = torch.load(ckpt, map_location="cpu", weights_only=True, mmap=True)
    except Exception as exc:
        raise CheckpointIntegrityError(
            f"checkpoint {ckpt} cannot be loaded safely (torch.load weights_only=True refused "
            f"it: {type(exc).__name__}: {str(exc)[:500]}); lipmem never unpickles code") from exc
    if not isinstance(checkpoint, dict):
        raise CheckpointIntegrityError(f"checkpoint {ckpt} holds a {type(checkpoint).__name__}, "
                                       "expected a Lightning checkpoint dict")
    return checkpoint
