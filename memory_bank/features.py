"""Stage 2 of the bank: embed lower-face crops of sampled training frames.

Frames come from `LipSyncDataModule.memory_batches`, which spreads windows evenly over every
training clip of every speaker, so the sample covers the corpus' mouth shapes instead of the
first M frames. Batches stream from the shards; only the (M, d) feature matrix is kept.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

from datamodules.atomic_files import atomic_path


@dataclass
class Features:
    features: np.ndarray   # (M, d) float32
    keys: np.ndarray       # (M,) clip key of each row
    frames: np.ndarray     # (M,) frame index of each row within its clip
    speakers: np.ndarray | None = None   # (M,) speaker of each row ("" = unknown)
    openness: np.ndarray | None = None   # (M,) ground-truth mouth openness (NaN = no track)

    def __len__(self) -> int:
        return int(self.features.shape[0])


def _row_masks(batch: dict[str, Any], rows: int, device: torch.device | str) -> torch.Tensor:
    """The batch's (B, 1, S, S) masks repeated for its T frames per window: (rows, 1, S, S)."""
    mask = batch["mask"].to(device).float()
    if rows != mask.shape[0]:
        mask = mask.repeat_interleave(rows // mask.shape[0], dim=0)
    return mask


def lower_face_images(batch: dict[str, Any], device: torch.device | str) -> torch.Tensor:
    """`face * mask`: only the hidden (generated) region kept, as (N, 3, S, S) in [0, 1]."""
    face = batch["face"]
    face = face.flatten(0, 1) if face.dim() == 5 else face
    return face.to(device).float() / 255.0 * _row_masks(batch, face.shape[0], device)


def _row_ids(batch: dict[str, Any], count: int) -> tuple[list[str], list[int], list[str],
                                                          list[float]]:
    """Clip key, frame index, speaker and ground-truth openness (NaN: no track) of each
    flattened row (windows hold T consecutive frames)."""
    keys, frames = batch.get("key"), batch.get("frame")
    if keys is None or frames is None:
        return [""] * count, [-1] * count, [""] * count, [float("nan")] * count
    per = count // max(1, len(keys))
    first = torch.as_tensor(frames).reshape(-1)
    rows = (first[:, None] + torch.arange(per)[None]).reshape(-1)
    speakers = batch.get("speaker") or [""] * len(keys)
    mouth = batch.get("mouth")
    openness = ([float(v) for v in torch.as_tensor(mouth)[..., 0].reshape(-1)]
                if mouth is not None else [float("nan")] * count)
    return ([k for k in keys for _ in range(per)], [int(f) for f in rows],
            [s for s in speakers for _ in range(per)], openness)


@torch.no_grad()
def encode_lower_faces(encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                       batches: Iterable[dict[str, Any]], max_frames: int,
                       device: torch.device | str = "cpu", progress: bool = False) -> Features:
    """Embed up to max_frames lower-face crops with ``encode(face * mask, mask)``; rows fill
    a preallocated matrix, with each row's clip, frame, speaker and openness beside it."""
    features: np.ndarray | None = None
    keys: list[str] = []
    frames: list[int] = []
    speakers: list[str] = []
    openness: list[float] = []
    count = 0
    with Progress(TextColumn("encoding lower faces"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not progress, transient=False) as bar:
        task = bar.add_task("encode", total=max_frames)
        for batch in batches:
            images = lower_face_images(batch, device)
            emb = encode(images, _row_masks(batch, images.shape[0], device)).float().cpu().numpy()
            if features is None:
                features = np.empty((max_frames, emb.shape[1]), dtype=np.float32)
            take = min(emb.shape[0], max_frames - count)
            features[count:count + take] = emb[:take]
            k, f, spk, op = _row_ids(batch, emb.shape[0])
            keys.extend(k[:take])
            frames.extend(f[:take])
            speakers.extend(spk[:take])
            openness.extend(op[:take])
            count += take
            bar.update(task, completed=count)
            if count >= max_frames:
                break
    if features is None or count == 0:
        raise ValueError("no frames to encode (is the training split empty?)")
    if not np.isfinite(features[:count]).all():
        raise ValueError("the encoder produced non-finite features; the autoencoder weights "
                         "are broken (NaN/inf)")
    return Features(features[:count], np.asarray(keys), np.asarray(frames, dtype=np.int64),
                    np.asarray(speakers), np.asarray(openness, dtype=np.float32))


def save_features(path: str | os.PathLike, feats: Features) -> Path:
    """npz written to a temp name and renamed: a killed job never leaves a half file."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to other names
        extra = {name: value for name, value in (("speakers", feats.speakers),
                                                 ("openness", feats.openness))
                 if value is not None}
        np.savez(tmp, features=feats.features, keys=feats.keys, frames=feats.frames, **extra)
    return path


def load_features(path: str | os.PathLike) -> Features:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            feats = Features(data["features"].astype(np.float32), data["keys"], data["frames"],
                             data.get("speakers"),
                             data["openness"].astype(np.float32) if "openness" in data
                             else None)
    except (KeyError, ValueError, OSError) as exc:
        raise ValueError(f"features file {path} is not a lipmem features npz with 'features', "
                         f"'keys' and 'frames' arrays ({type(exc).__name__}: {exc})") from exc
    if feats.features.ndim != 2:
        raise ValueError(f"features file {path}: features have shape {feats.features.shape}, "
                         "expected (frames, dim)")
    return feats
