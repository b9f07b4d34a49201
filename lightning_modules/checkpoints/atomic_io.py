"""Checkpoint writes that a kill can never truncate, wherever $TMPDIR is.

Lightning's TorchCheckpointIO saves through an fsspec transaction: the bytes go to a temp
file from ``tempfile.mkstemp()`` (in $TMPDIR) that is then ``shutil.move``d onto the target.
When $TMPDIR and the run folder are on different filesystems (node-local /tmp, run folders
on shared storage: the usual cluster layout) that move is a copy straight into the target,
so a kill during it leaves a truncated ``last.ckpt`` where the previous good one was. Here
the temp file is made beside the target and renamed over it
(:func:`datamodules.atomic_files.atomic_path`): readers see the old file or the new one,
never part of one. Remote URLs (s3://, gs://, ...) keep Lightning's own write.
"""

from __future__ import annotations

import os
from typing import Any

import torch
from fsspec.implementations.local import LocalFileSystem
from lightning.fabric.utilities.cloud_io import get_filesystem
from lightning.pytorch.plugins.io import TorchCheckpointIO

from datamodules.atomic_files import atomic_path


class AtomicCheckpointIO(TorchCheckpointIO):
    """TorchCheckpointIO whose local saves are temp-file-beside-target + rename."""

    def save_checkpoint(self, checkpoint: dict[str, Any], path: Any,
                        storage_options: Any | None = None) -> None:
        if storage_options is not None or not isinstance(get_filesystem(path), LocalFileSystem):
            super().save_checkpoint(checkpoint, path, storage_options)  # errors / remote as usual
            return
        local = str(path).removeprefix("file://")
        # temp name ends in .tmp: never mistaken for a checkpoint by a search for *.ckpt
        with atomic_path(local) as tmp, open(tmp, "wb") as fh:
            torch.save(checkpoint, fh)
            fh.flush()
            os.fsync(fh.fileno())
