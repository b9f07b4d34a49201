"""A trained sync expert read back from its checkpoint: the SyncNet and its scale/bias.

The checkpoint carries ``checkpoint["lipmem_sync_expert"]`` (the net's constructor
arguments and the data geometry, written by the SyncExpert LightningModule), so the net is
rebuilt from plain data after ``torch.load(weights_only=True)``; the record may name only
the one SyncNet class. Losses and evaluation load experts here without importing the
LightningModule.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from lightning_modules.nets.from_record import build_from_record
from lightning_modules.nets.sync_net import SyncNet

RECORD_KEY = "lipmem_sync_expert"
RECORD_FORMAT = 1
SYNC_NET_CLASS = "lightning_modules.nets.sync_net.SyncNet"
NET_CLASSES = {SYNC_NET_CLASS: SyncNet}


@dataclass
class LoadedSyncExpert:
    """A trained expert ready to score: the net, its scale/bias and its data geometry."""

    net: SyncNet
    scale: float
    bias: float
    geometry: dict[str, Any]
    checkpoint: str
    ref: str

    def probability(self, cosine: torch.Tensor) -> torch.Tensor:
        return torch.sigmoid(cosine * self.scale + self.bias)


def load_sync_expert(ref: str | Path, registry: str | None = None,
                     device: str | torch.device = "cpu") -> LoadedSyncExpert:
    """A SyncNet in eval mode from a checkpoint file or a reference (``syncnet-RUN:best``),
    read with ``weights_only=True`` and rebuilt from the record in the checkpoint."""
    from lightning_modules.checkpoints.references import load_checkpoint

    path, checkpoint = load_checkpoint(str(ref), registry, what="sync expert")
    record = checkpoint.get(RECORD_KEY) if isinstance(checkpoint, dict) else None
    if not isinstance(record, dict) or "net" not in record:
        raise ValueError(f"checkpoint {path} has no {RECORD_KEY!r} record: not a sync expert "
                         "checkpoint (train one with `lipmem fit --config "
                         "configs/sync_expert.yaml`)")
    cls = NET_CLASSES.get(record.get("net_class", ""))
    if cls is None:
        raise ValueError(f"checkpoint {path}: net_class {record.get('net_class')!r} is not one "
                         f"of {sorted(NET_CLASSES)}")
    state = checkpoint.get("state_dict", {})
    net_state = {k.removeprefix("net."): v for k, v in state.items() if k.startswith("net.")}
    net = build_from_record(cls, record["net"], net_state, f"checkpoint {path}: sync expert")
    scale = float(state["log_scale"].exp()) if "log_scale" in state else 1.0
    bias = float(state["bias"]) if "bias" in state else 0.0
    return LoadedSyncExpert(net.eval().to(device), scale, bias, dict(record.get("geometry") or {}),
                            str(path), str(ref))
