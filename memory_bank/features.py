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

    def __len__(self) -> int:
        return int(self.features.shape[0])


def lower_face_images(batch: dict[str, Any], device: torch.device | str) -> torch.Tensor:
    """`face * mask`: only the hidden (generated) region kept, as (N, 3, S, S) in [0, 1]."""
    face = batch["face"]
    face = face.flatten(0, 1) if face.dim() == 5 else face
    mask = batch["mask"].to(device)
    if face.shape[0] != mask.shape[0]:
        mask = mask.repeat_interleave(face.shape[0] // mask.shape[0], dim=0)
    return face.to(device).float() / 255.0 * mask


def _row_ids(batch: dict[str, Any], count: int) -> tuple[list[str], list[int]]:
    """Clip key and frame index of each flattened row (windows hold T consecutive frames)."""
    keys, frames = batch.get("key"), batch.get("frame")
    if keys is None or frames is None:
        return [""] * count, [-1] * count
    per = count // max(1, len(keys))
    first = torch.as_tensor(frames).reshape(-1)
    rows = (first[:, None] + torch.arange(per)[None]).reshape(-1)
    return [k for k in keys for _ in range(per)], [int(f) for f in rows]


@torch.no_grad()
def encode_lower_faces(encode: Callable[[torch.Tensor], torch.Tensor],
                       batches: Iterable[dict[str, Any]], max_frames: int,
                       device: torch.device | str = "cpu", progress: bool = False) -> Features:
    """Embed up to max_frames lower-face crops; rows fill a preallocated matrix."""
    features: np.ndarray | None = None
    keys: list[str] = []
    frames: list[int] = []
    count = 0
    with Progress(TextColumn("encoding lower faces"), BarColumn(), MofNCompleteColumn(),
                  TimeElapsedColumn(), disable=not progress, transient=False) as bar:
        task = bar.add_task("encode", total=max_frames)
        for batch in batches:
            images = lower_face_images(batch, device)
            emb = encode(images).float().cpu().numpy()
            if features is None:
                features = np.empty((max_frames, emb.shape[1]), dtype=np.float32)
            take = min(emb.shape[0], max_frames - count)
            features[count:count + take] = emb[:take]
            k, f = _row_ids(batch, emb.shape[0])
            keys.extend(k[:take])
            frames.extend(f[:take])
            count += take
            bar.update(task, completed=count)
            if count >= max_frames:
                break
    if features is None or count == 0:
        raise ValueError("no frames to encode (is the training split empty?)")
    if not np.isfinite(features[:count]).all():
        raise ValueError("the encoder produced non-finite features; the autoencoder weights "
                         "are broken (NaN/inf)")
    return Features(features[:count], np.asarray(keys), np.asarray(frames, dtype=np.int64))


def save_features(path: str | os.PathLike, feats: Features) -> Path:
    """npz written to a temp name and renamed: a killed job never leaves a half file."""
    path = Path(path)
    with atomic_path(path, suffix=".npz") as tmp:  # np.savez appends .npz to other names
        np.savez(tmp, features=feats.features, keys=feats.keys, frames=feats.frames)
    return path


def load_features(path: str | os.PathLike) -> Features:
    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"features file {path} does not exist")
    try:
        with np.load(path, allow_pickle=False) as data:
            feats = Features(data["features"].astype(np.float32), data["keys"], data["frames"])
    except (KeyError, ValueError, OSError) as exc:
        raise ValueError(f"features file {path} is not a lipmem features npz with 'features', "
                         f"'keys' and 'frames' arrays ({type(exc).__name__}: {exc})") from exc
    if feats.features.ndim != 2:
        raise ValueError(f"features file {path}: features have shape {feats.features.shape}, "
                         "expected (frames, dim)")
    return feats
