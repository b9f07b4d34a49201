"""The trained mouth autoencoder as a file: safetensors weights + the net's config.

An encoder artifact must be loadable without running code (no pickle) and rebuildable
without the training config, so the constructor arguments travel in the file's metadata.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

from safetensors import safe_open
from safetensors.torch import save_file

from datamodules.atomic_files import atomic_path
from lightning_modules.nets.from_record import build_from_record
from lightning_modules.nets.mouth_autoencoder import MouthAutoencoderNet

ENCODER_FILE = "autoencoder.safetensors"


def save_autoencoder(path: str | os.PathLike, net: MouthAutoencoderNet,
                     meta: dict[str, Any]) -> Path:
    path = Path(path)
    tensors = {k: v.detach().float().contiguous().cpu() if v.is_floating_point()
               else v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    with atomic_path(path) as tmp:
        save_file(tensors, str(tmp), metadata={"lipmem": json.dumps({**meta, "net": net.config})})
    return path


def load_autoencoder(path: str | os.PathLike) -> tuple[MouthAutoencoderNet, dict[str, Any]]:
    """Rebuild the net from the file alone; refuses files that are not lipmem autoencoders."""
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"autoencoder file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            meta = json.loads((fh.metadata() or {}).get("lipmem", "{}"))
            state = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118 - safe_open is not a dict
    except Exception as exc:
        raise ValueError(f"autoencoder file {path} is not a readable safetensors file "
                         f"({type(exc).__name__}: {exc})") from exc
    if not isinstance(meta, dict) or "net" not in meta:
        raise ValueError(f"autoencoder file {path} has no 'net' config in its metadata: not "
                         "written by lipmem bank build")
    net = build_from_record(MouthAutoencoderNet, meta["net"], state, f"autoencoder file {path}")
    return net.eval(), meta
