"""Does a bank hold mouth shapes? Two numbers that say so, where the corpus can tell.

Every encoded frame is assigned to its nearest code (`kmeans.assign`). A bank of mouth shapes has clusters
that mix speakers (a closed mouth looks closed on every face) and whose membership explains
the mouth's shape; a bank of speakers has one-speaker clusters whose membership says little
about the mouth. With the speaker of every frame and, on corpora with a ground-truth mouth
track (the synthetic one), its openness:

* ``single_speaker_share``: share of non-empty clusters whose frames are >= 90 % one speaker
  (0 is ideal; a speaker-coded bank scores near 1);
* ``openness_variance_explained``: the share of the openness variance that cluster
  membership explains, 1 - within-cluster SS / total SS (1 is ideal; the R^2 of predicting a
  frame's openness by its cluster's mean).

Cluster sizes are reported everywhere.
"""

from __future__ import annotations

from typing import Any

import numpy as np

SINGLE_SPEAKER_AT = 0.9


def bank_metrics(labels: np.ndarray, num_codes: int, speakers: np.ndarray | None = None,
                 openness: np.ndarray | None = None) -> dict[str, Any]:
    """Metrics of an assignment of M frames to ``num_codes`` clusters (see module doc)."""
    labels = np.asarray(labels, np.int64)
    sizes = np.bincount(labels, minlength=num_codes)
    out: dict[str, Any] = {"frames": int(labels.size), "cluster_sizes": sizes.tolist(),
                           "empty_clusters": int((sizes == 0).sum()),
                           "largest_cluster_share": float(sizes.max() / max(1, labels.size))}
    if speakers is not None and len(speakers) == labels.size and all(s != "" for s in speakers):
        names, spk = np.unique(np.asarray(speakers), return_inverse=True)
        counts = np.zeros((num_codes, names.size), np.int64)
        np.add.at(counts, (labels, spk), 1)
        used = sizes > 0
        top = counts[used].max(1) / sizes[used]
        out["speakers"] = int(names.size)
        out["single_speaker_share"] = float((top >= SINGLE_SPEAKER_AT).mean())
        out["mean_top_speaker_share"] = float(top.mean())
    if openness is not None and len(openness) == labels.size and \
            np.isfinite(np.asarray(openness, np.float64)).all():
        values = np.asarray(openness, np.float64)
        total = ((values - values.mean()) ** 2).sum()
        sums = np.bincount(labels, weights=values, minlength=num_codes)
        means = sums / np.maximum(sizes, 1)
        within = ((values - means[labels]) ** 2).sum()
        out["openness_variance_explained"] = float(1.0 - within / total) if total > 0 else None
    return out
