"""Rebuilding a net from constructor arguments stored in a file, without trusting them.

Checkpoints, autoencoder files and sync experts carry their net's constructor arguments so
they can be rebuilt without the training config. Those arguments are data: a few bytes can
ask for a net of hundreds of billions of parameters. So the net is first built on the
``meta`` device (shapes only, no memory), its tensors are compared with the ones the file
actually holds, and only a net whose every tensor the file provides is built for real: the
memory it takes is bounded by the file's own size.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn


def build_from_record(cls: type[nn.Module], kwargs: Any, state: Mapping[str, torch.Tensor],
                      where: str) -> nn.Module:
    """``cls(**kwargs)`` with ``state`` loaded (strict), or ValueError naming ``where`` when
    the arguments are not a mapping, are refused by ``cls``, or describe tensors other than
    the ones in ``state``."""
    if not isinstance(kwargs, Mapping) or not all(isinstance(k, str) for k in kwargs):
        raise ValueError(f"{where}: the constructor arguments must be a mapping of names, "
                         f"got {type(kwargs).__name__}")
    try:
        with torch.device("meta"):
            shapes = {k: tuple(v.shape) for k, v in cls(**kwargs).state_dict().items()}
    except (TypeError, ValueError, RuntimeError) as exc:
        raise ValueError(f"{where}: {cls.__name__}({dict(kwargs)}) cannot be built "
                         f"({type(exc).__name__}: {exc})") from exc
    stored = {k: tuple(v.shape) for k, v in state.items()}
    missing = sorted(set(shapes) - set(stored))
    unexpected = sorted(set(stored) - set(shapes))
    wrong = sorted(k for k in set(shapes) & set(stored) if shapes[k] != stored[k])
    if missing or unexpected or wrong:
        details = [f"missing {missing[:5]}" if missing else "",
                   f"unexpected {unexpected[:5]}" if unexpected else "",
                   "shapes differ: " + ", ".join(f"{k} {stored[k]} vs {shapes[k]}"
                                                 for k in wrong[:5]) if wrong else ""]
        raise ValueError(f"{where}: the stored weights do not match the recorded architecture "
                         f"{cls.__name__}({dict(kwargs)}): " + "; ".join(d for d in details if d))
    net = cls(**kwargs)
    net.load_state_dict(dict(state), strict=True)
    return net


__all__ = ["build_from_record"]
