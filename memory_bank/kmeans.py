"""K-means for memory codes: FAISS (GPU when present) seeded with k-means++.

faiss' own random initialisation lands in poor minima on clustered data (measured at 1.7x
sklearn's inertia on blobs, see shared/stack-notes.md); k-means++ seeding from sklearn
brings it to sklearn's quality while keeping faiss' speed for the Lloyd iterations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

METHODS = ("faiss_kmeans", "sklearn_kmeans")


@dataclass
class KMeansResult:
    centroids: np.ndarray   # (k, d) float32: the memory codes are these centres
    inertia: float          # sum of squared distances to the assigned centre
    sizes: np.ndarray       # (k,) points per cluster
    method: str
    device: str


def assign(features: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and squared distance for each row (exact, via faiss' flat index)."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, labels = index.search(np.ascontiguousarray(features, dtype=np.float32), 1)
    return labels[:, 0], dist[:, 0]


def kmeans(features: np.ndarray, k: int, *, method: str = "faiss_kmeans", seed: int = 0,
           niter: int = 25, use_gpu: bool | None = None) -> KMeansResult:
    """Cluster rows of `features` into k centres; `use_gpu=None` means 'if faiss sees one'."""
    x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (num_points, dim), got shape {x.shape}")
    if k <= 0:
        raise ValueError(f"k={k}: the number of memory codes must be positive")
    if x.shape[0] < k:
        raise ValueError(f"cannot form k={k} clusters from {x.shape[0]} feature vectors; "
                         "encode more frames or lower n")
    if method == "sklearn_kmeans":
        from sklearn.cluster import KMeans

        km = KMeans(k, init="k-means++", n_init=1, max_iter=max(niter, 100), random_state=seed)
        km.fit(x)
        centroids = km.cluster_centers_.astype(np.float32)
        device = "cpu"
    elif method == "faiss_kmeans":
        import faiss
        from sklearn.cluster import kmeans_plusplus

        gpu = faiss.get_num_gpus() > 0 if use_gpu is None else use_gpu
        if gpu and faiss.get_num_gpus() == 0:
            raise RuntimeError("use_gpu=True but faiss sees no GPU (is faiss-gpu installed "
                               "instead of faiss-cpu?)")
        init, _ = kmeans_plusplus(x, k, random_state=seed)
        km = faiss.Kmeans(x.shape[1], k, niter=niter, seed=seed, gpu=gpu, verbose=False,
                          max_points_per_centroid=max(1, x.shape[0]))
        km.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
        centroids = km.centroids.astype(np.float32)
        device = "gpu" if gpu else "cpu"
    else:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    labels, dist = assign(x, centroids)
    sizes = np.bincount(labels, minlength=k)
    return KMeansResult(centroids, float(dist.sum()), sizes, method, device)
