"""Which space the bank's clusters are found in, and how centres go back to code space.

Codes of one clip share what does not change within it: the speaker's face, skin, lighting,
camera. Clustering raw codes therefore finds speakers first. Subtracting each clip's mean
code (``centre_per: clip``) leaves what changes within a clip, which on a talking face is
mostly the mouth, so clusters gather one mouth shape from many speakers. The memory codes
are then the members' mean *raw* codes: back in the space the autoencoder's decoder (and
the generator's) reads, and, averaged over many speakers, without any one identity.
"""

from __future__ import annotations

from dataclasses import replace

import numpy as np

from memory_bank.kmeans import KMeansResult, assign

CENTRE_PER = ("clip", "speaker", "none")


def clustering_space(features: np.ndarray, groups: np.ndarray | None, centre_per: str
                     ) -> np.ndarray:
    """``features`` minus the mean of their group (clip key or speaker), or unchanged."""
    if centre_per not in CENTRE_PER:
        raise ValueError(f"bank.centre_per={centre_per!r}: expected one of {CENTRE_PER}")
    if centre_per == "none":
        return features
    if groups is None or len(groups) != len(features) or any(g == "" for g in groups):
        raise ValueError(f"bank.centre_per={centre_per}: every encoded frame needs its "
                         f"{centre_per} (the features file does not record them); use "
                         "bank.centre_per=none")
    _, index = np.unique(np.asarray(groups), return_inverse=True)
    counts = np.bincount(index).astype(np.float64)
    means = np.zeros((counts.size, features.shape[1]), np.float64)
    np.add.at(means, index, features)
    means /= counts[:, None]
    return (features - means[index]).astype(np.float32)


def centres_in_code_space(result: KMeansResult, space: np.ndarray, raw: np.ndarray,
                          centre_per: str) -> tuple[KMeansResult, np.ndarray]:
    """(the result with its centroids replaced by the members' mean raw codes, the labels).

    Labels come from the clustering space, where the clusters were found. A cluster with
    no member (k-means leaves none; a random member always has itself) keeps its centre.
    """
    labels = assign(space, result.centroids)[0]
    if centre_per == "none":
        return result, labels
    sums = np.zeros((result.k, raw.shape[1]), np.float64)
    np.add.at(sums, labels, raw)
    sizes = np.bincount(labels, minlength=result.k)
    codes = np.where(sizes[:, None] > 0, sums / np.maximum(sizes, 1)[:, None],
                     result.centroids).astype(np.float32)
    extra = {**result.extra, "centre_per": centre_per,
             "inertia_space": f"{centre_per}-centred codes"}
    return replace(result, centroids=np.ascontiguousarray(codes), extra=extra), labels
