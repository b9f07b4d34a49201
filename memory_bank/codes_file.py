"""Reading and writing a memory-code file: safetensors (no code runs on load) + metadata."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Any

import torch
from safetensors import safe_open
from safetensors.torch import save_file

from datamodules.atomic_files import atomic_path

CODES_KEY = "codes"


def save_codes(path: str | os.PathLike, codes: torch.Tensor, meta: dict[str, Any]) -> Path:
    """Write (n, d) codes with JSON metadata atomically (temp file, then rename)."""
    path = Path(path)
    with atomic_path(path) as tmp:
        save_file({CODES_KEY: codes.detach().float().contiguous().cpu()}, str(tmp),
                  metadata={"lipmem": json.dumps(meta)})
    return path


def load_codes(path: str | os.PathLike) -> tuple[torch.Tensor, dict[str, Any]]:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"memory code file {path} does not exist")
    try:
        with safe_open(str(path), framework="pt") as fh:
            codes = fh.get_tensor(CODES_KEY)
            meta = json.loads((fh.metadata() or {}).get("lipmem", "{}"))
    except Exception as exc:
        raise ValueError(f"memory code file {path} is not a readable lipmem safetensors file "
                         f"with a '{CODES_KEY}' tensor ({type(exc).__name__}: {exc})") from exc
    if codes.dim() != 2:
        raise ValueError(f"memory code file {path}: codes have shape {tuple(codes.shape)}, "
                         "expected (n, dim)")
    return codes, meta
