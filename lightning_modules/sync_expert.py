"""The sync expert: trains a SyncNet to tell in-sync from off-sync face/audio pairs.

Pairs per window of ``window`` frames (the batch's ``frames_per_window`` must be at least
that; the centred ``window`` frames are used) and the mel window of their centre frame:

* positive: the window's own audio;
* shifted negative: the same frames' audio ``off_sync_min_shift..max`` frames away in the
  same clip (``mel_off``, cut by the datamodule with ``off_sync_min_shift > 0``): the hard
  case, same voice and face, wrong moment;
* other-clip negative: the audio of the next window in the batch, unless it is the same clip.

Loss: binary cross-entropy on ``scale * cosine + bias`` with a learned scale and bias
(Wav2Lip's expert loss with SigLIP's learned temperature). BCE rather than InfoNCE because
the expert's output is used as an absolute per-pair probability: as a generator loss
(-log P(sync) of one generated window, as Wav2Lip does) and as an accuracy at 0.5;
InfoNCE only ranks pairs within a batch, and its batch negatives are mostly other clips,
not the shifted audio that a sync judge must reject. Negatives are weighted so that the
two classes count equally.

The checkpoint carries ``checkpoint["lipmem_sync_expert"]`` (net constructor arguments and
the data geometry), so
:func:`lightning_modules.checkpoints.sync_expert_file.load_sync_expert` rebuilds the net with
``torch.load(weights_only=True)`` from a file or a ``syncnet-RUN:best`` reference.
"""

from __future__ import annotations

import math
from typing import Any

import lightning as L
import torch
import torch.nn.functional as F
from torch import nn
from torchmetrics import MeanMetric
from torchmetrics.classification import BinaryAccuracy, BinaryAUROC

from lightning_modules.checkpoints.sync_expert_file import RECORD_FORMAT, RECORD_KEY, SYNC_NET_CLASS
from lightning_modules.nets.sync_net import SyncNet, centre_window


class SyncExpert(L.LightningModule):
    def __init__(self, net: SyncNet, lr: float = 1e-3, weight_decay: float = 0.0,
                 init_scale: float = 10.0, other_clip_negatives: bool = True) -> None:
        super().__init__()
        if lr <= 0:
            raise ValueError(f"model.lr={lr}: must be > 0")
        if init_scale <= 0:
            raise ValueError(f"model.init_scale={init_scale}: must be > 0")
        self.save_hyperparameters(ignore=["net"])
        self.net = net
        self.lr, self.weight_decay = lr, weight_decay
        self.other_clip_negatives = other_clip_negatives
        self.log_scale = nn.Parameter(torch.tensor(math.log(init_scale)))
        self.bias = nn.Parameter(torch.zeros(()))
        self.geometry: dict[str, Any] = {}
        for stage in ("val", "test"):
            setattr(self, f"{stage}_auc_shifted", BinaryAUROC())
            setattr(self, f"{stage}_acc_shifted", BinaryAccuracy())
            setattr(self, f"{stage}_acc_other", BinaryAccuracy())
            setattr(self, f"{stage}_loss", MeanMetric())

    # ------------------------------------------------------------------ pairs
    def logits(self, cosine: torch.Tensor) -> torch.Tensor:
        return cosine * self.log_scale.exp() + self.bias

    def sync_probability(self, faces: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """P(in sync) per pair: faces (B, W, 3, S, S) in [0, 1], mels (B, n_mels, F)."""
        return torch.sigmoid(self.logits(self.net(faces, mels)))

    def _pairs(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        w = self.net.window
        faces = centre_window(batch["face"], w).float().div(255.0)
        centre = batch["face"].shape[1] // 2
        mel = batch["mel"][:, centre, 0].float()
        v = self.net.embed_faces(faces)
        a = self.net.embed_audio(mel)
        out = {"pos": (v * a).sum(-1)}
        if "mel_off" in batch:
            a_off = self.net.embed_audio(batch["mel_off"][:, centre, 0].float())
            out["shifted"] = (v * a_off).sum(-1)
        elif self.training:
            raise ValueError("the batch has no 'mel_off': set data.off_sync_min_shift > 0 so "
                             "the datamodule cuts shifted-audio negatives for the sync expert")
        keys = batch.get("key")
        if self.other_clip_negatives and v.shape[0] > 1:
            other = (v * a.roll(1, dims=0)).sum(-1)
            if keys is not None:
                differs = torch.tensor([k != r for k, r in zip(keys, keys[-1:] + keys[:-1],
                                                              strict=True)], device=v.device)
            else:
                differs = torch.ones_like(other, dtype=torch.bool)
            out["other"] = other[differs]
        return out

    def _loss(self, pairs: dict[str, torch.Tensor]) -> torch.Tensor:
        pos = self.logits(pairs["pos"])
        negs = [self.logits(pairs[k]) for k in ("shifted", "other") if k in pairs
                and pairs[k].numel()]
        loss = F.binary_cross_entropy_with_logits(pos, torch.ones_like(pos))
        if negs:
            neg = torch.cat(negs)
            loss = 0.5 * loss + 0.5 * F.binary_cross_entropy_with_logits(neg, torch.zeros_like(neg))
        return loss

    # ------------------------------------------------------------------ steps
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> torch.Tensor:
        pairs = self._pairs(batch)
        loss = self._loss(pairs)
        n = pairs["pos"].shape[0]
        logs = {"train/loss": loss, "train/scale": self.log_scale.exp().detach(),
                "train/cos_pos": pairs["pos"].mean().detach()}
        if "shifted" in pairs:
            logs["train/cos_shifted"] = pairs["shifted"].mean().detach()
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=n, prog_bar=False)
        self.log("train/loss_step", loss.detach(), prog_bar=True, on_step=True, batch_size=n)
        return loss

    def _evaluate(self, batch: dict[str, Any], stage: str) -> None:
        pairs = self._pairs(batch)
        n = pairs["pos"].shape[0]
        getattr(self, f"{stage}_loss").update(self._loss(pairs), weight=n)
        pos = torch.sigmoid(self.logits(pairs["pos"]))
        ones = torch.ones_like(pos, dtype=torch.long)
        logged = ["loss"]
        if "shifted" in pairs:
            shifted = torch.sigmoid(self.logits(pairs["shifted"]))
            scores = torch.cat([pos, shifted])
            labels = torch.cat([ones, torch.zeros_like(ones)])
            getattr(self, f"{stage}_auc_shifted").update(scores, labels)
            getattr(self, f"{stage}_acc_shifted").update(scores, labels)
            logged += ["auc_shifted", "acc_shifted"]
        if "other" in pairs and pairs["other"].numel():
            other = torch.sigmoid(self.logits(pairs["other"]))
            getattr(self, f"{stage}_acc_other").update(
                torch.cat([pos, other]),
                torch.cat([ones, torch.zeros(other.shape[0], dtype=torch.long,
                                             device=other.device)]))
            logged.append("acc_other")
        for name in logged:
            self.log(f"{stage}/{name}", getattr(self, f"{stage}_{name}"), on_step=False,
                     on_epoch=True, prog_bar=name == "auc_shifted", batch_size=n)

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "val")

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def configure_optimizers(self) -> torch.optim.Optimizer:
        return torch.optim.AdamW(self.parameters(), lr=self.lr, weight_decay=self.weight_decay)

    # ------------------------------------------------------------------ checkpoint record
    def setup(self, stage: str) -> None:
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        if datamodule is not None and hasattr(datamodule, "mel_frames"):
            check_data(self.net, datamodule)
            self.geometry = {"image_size": int(datamodule.image_size), "fps": int(datamodule.fps),
                             "sample_rate": int(datamodule.sample_rate),
                             "audio_seconds": float(datamodule.audio_seconds)}

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint[RECORD_KEY] = {"format": RECORD_FORMAT,
                                  "net_class": SYNC_NET_CLASS,
                                  "net": dict(self.net.config), "geometry": dict(self.geometry)}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.geometry = dict((checkpoint.get(RECORD_KEY) or {}).get("geometry") or {})


def check_data(net: SyncNet, datamodule: Any) -> None:
    """The data must match the net: image size, mel window, and enough frames per window."""
    problems = []
    if int(datamodule.image_size) != net.image_size:
        problems.append(f"data.image_size={datamodule.image_size} but "
                        f"model.net.init_args.image_size={net.image_size}")
    if int(datamodule.mel_frames) != net.mel_frames:
        problems.append(f"data.audio_seconds={datamodule.audio_seconds} gives "
                        f"{datamodule.mel_frames} mel frames but model.net.init_args.mel_frames="
                        f"{net.mel_frames}")
    if int(datamodule.frames_per_window) < net.window:
        problems.append(f"data.frames_per_window={datamodule.frames_per_window} is below "
                        f"model.net.init_args.window={net.window}")
    if problems:
        raise ValueError("sync expert config mismatch: " + "; ".join(problems))
