"""Initial memory codes when no memory bank is used (`model.memory.source: bootstrap`).

The method builds the memory from a separately trained autoencoder (`lipmem bank build`).
For quick experiments and tests, `lipmem fit` can instead bootstrap codes the same way with
the generator's own, still untrained, image encoder: encode the lower-face region of
training frames, k-means them, keep the centres. Random conv features still separate mouth
shapes by their pixels, so the codes differ per cluster; the decoder learns what they mean.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from typing import Any

import torch

from memory_bank.features import encode_lower_faces
from memory_bank.kmeans import KMeansResult, kmeans, refine


def bootstrap_codes(encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                    batches: Iterable[dict[str, Any]], num_codes: int, *, max_samples: int = 4096,
                    seed: int = 0, device: torch.device | str = "cpu"
                    ) -> tuple[torch.Tensor, KMeansResult, int]:
    """Returns (codes (n, d), the clustering result, frames encoded)."""
    feats = encode_lower_faces(encode, batches, max_samples, device)
    result = kmeans(feats.features, num_codes, seed=seed)
    return torch.from_numpy(result.centroids), result, len(feats)


def refit_codes(encode: Callable[[torch.Tensor, torch.Tensor], torch.Tensor],
                batches: Iterable[dict[str, Any]], codes: torch.Tensor, mode: str, *,
                max_samples: int = 4096, seed: int = 0, device: torch.device | str = "cpu"
                ) -> tuple[torch.Tensor, KMeansResult, int]:
    """A fine-tune's memory codes on new data, from the base model's `codes` and encoder:
    ``rebuild`` clusters the new lower faces afresh; ``refine`` moves each base code to the
    centre of the new faces nearest to it (code i keeps its index, so the audio-mapping
    head's weights still point at similar mouth shapes). Returns (codes, result, frames)."""
    if mode not in ("rebuild", "refine"):
        raise ValueError(f"refit mode {mode!r}: expected 'rebuild' or 'refine'")
    feats = encode_lower_faces(encode, batches, max_samples, device)
    if mode == "rebuild":
        result = kmeans(feats.features, codes.shape[0], seed=seed)
    else:
        result = refine(feats.features, codes.detach().cpu().float().numpy(), seed=seed)
    return torch.from_numpy(result.centroids), result, len(feats)
