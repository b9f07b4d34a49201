"""The trained mouth autoencoder as a file: safetensors weights + the net's config.

An encoder artifact must be loadable without running code (no pickle) and rebuildable
without the training config, so the constructor arguments travel in the file's metadata.
A context autoencoder decodes codes into a masked face; a few masked faces from the corpus
travel in the file too (``examples.*``), so `lipmem bank inspect` can draw each code's mouth
without the data.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from datamodules.atomic_files import atomic_path
from lightning_modules.nets.from_record import build_from_record
from lightning_modules.nets.mouth_autoencoder import MouthAutoencoderNet

ENCODER_FILE = "autoencoder.safetensors"
EXAMPLE_FACES = "examples.masked_faces"   # uint8 (N, 3, S, S): face * (1 - mask)
EXAMPLE_MASK = "examples.mask"            # uint8 (1, 1, S, S): 1 = hidden
MAX_EXAMPLES = 16


def save_autoencoder(path: str | os.PathLike, net: MouthAutoencoderNet,
                     meta: dict[str, Any], examples: tuple[torch.Tensor, torch.Tensor] | None
                     = None) -> Path:
    """``examples``: (masked faces uint8 (N, 3, S, S), mask (1, 1, S, S)) to decode into."""
    path = Path(path)
    tensors = {k: v.detach().float().contiguous().cpu() if v.is_floating_point()
               else v.detach().contiguous().cpu() for k, v in net.state_dict().items()}
    if examples is not None:
        faces, mask = examples
        tensors[EXAMPLE_FACES] = faces[:MAX_EXAMPLES].to(torch.uint8).contiguous().cpu()
        tensors[EXAMPLE_MASK] = mask.reshape(1, 1, *mask.shape[-2:]).to(torch.uint8).cpu()
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
    if not isinstance(meta, dict) or not isinstance(meta.get("net"), dict):
        message = f"autoencoder file {path} has no 'net' config in its metadata: not written " \
                  "by lipmem bank build"
        raise ValueError(message)  # noqa: TRY004 - a bad file is a ValueError for every caller
    examples = {k: state.pop(k) for k in (EXAMPLE_FACES, EXAMPLE_MASK) if k in state}
    # files from before the context design hold plain autoencoders
    config = {"context": False, "code_input": "raw", "composite_feather": None, **meta["net"]}
    net = build_from_record(MouthAutoencoderNet, config, state, f"autoencoder file {path}")
    if len(examples) == 2:
        net.examples = (examples[EXAMPLE_FACES], examples[EXAMPLE_MASK])
    return net.eval(), meta
