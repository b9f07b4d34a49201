"""Initial memory codes before a trained memory bank exists.

The method builds the memory from a separately trained autoencoder (claims 2-4). Until a
bank is supplied (`model.memory_source`), `lipmem fit` bootstraps one the same way with the
generator's own, still untrained, image encoder: encode the lower-face region of training
frames, k-means them, keep the centres. Random conv features still separate mouth shapes
by their pixels, so the codes differ per cluster; the decoder learns what they mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import numpy as np
import torch

from memory_bank.kmeans import KMeansResult, kmeans


@torch.no_grad()
def encode_lower_faces(encode: Callable[[torch.Tensor], torch.Tensor],
                       batches: Iterable[dict[str, Any]], max_samples: int,
                       device: torch.device | str = "cpu") -> np.ndarray:
    """Embed `face * mask` (only the hidden lower-face region kept) for up to max_samples frames."""
    feats: list[np.ndarray] = []
    count = 0
    for batch in batches:
        face = batch["face"]
        face = face.flatten(0, 1) if face.dim() == 5 else face
        mask = batch["mask"].to(device)
        if face.shape[0] != mask.shape[0]:
            mask = mask.repeat_interleave(face.shape[0] // mask.shape[0], dim=0)
        images = face.to(device).float() / 255.0 * mask
        feats.append(encode(images).float().cpu().numpy())
        count += images.shape[0]
        if count >= max_samples:
            break
    if not feats:
        raise ValueError("no frames to bootstrap memory codes from (empty training split?)")
    return np.concatenate(feats)[:max_samples]


def bootstrap_codes(encode: Callable[[torch.Tensor], torch.Tensor],
                    batches: Iterable[dict[str, Any]], num_codes: int, *, max_samples: int = 4096,
                    seed: int = 0, device: torch.device | str = "cpu"
                    ) -> tuple[torch.Tensor, KMeansResult, int]:
    """Returns (codes (n, d), the clustering result, frames encoded)."""
    features = encode_lower_faces(encode, batches, max_samples, device)
    result = kmeans(features, num_codes, seed=seed)
    return torch.from_numpy(result.centroids), result, int(features.shape[0])
