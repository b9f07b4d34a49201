"""Clustering for memory codes: the codes are cluster CENTRES of encoded lower-face crops.

Methods (`METHODS`):

* ``faiss_kmeans`` (default): sklearn's k-means++ seeding on a random subsample
  (`SEED_POINTS_PER_CENTROID * k` rows; best of `SEED_RESTARTS` seedings after a few faiss
  Lloyd iterations on the subsample), then `faiss.Kmeans` Lloyd iterations on ALL rows (on
  the GPU when faiss sees one), in blocks of `ITER_BLOCK`, stopping when a block improves
  the objective by less than `tol` (relative) or after `niter`. faiss' own random
  initialisation lands in poor minima on clustered data (measured at 1.7x sklearn's inertia
  on blobs, see shared/stack-notes.md); k-means++ seeding brings it to sklearn's quality.
  Seeding on all rows would be the slow part at 200k x 256 (sklearn's `kmeans_plusplus`
  works in float64: ~10 s on 2 cores), hence the subsample (benchmarks/clustering.py
  measures time and inertia against sklearn).
* ``sklearn_kmeans``: sklearn KMeans (k-means++, n_init=1), the reference.
* ``meanshift``: sklearn MeanShift, which picks the number of centres from the data. It is
  O(N^2), so it is fitted on at most `max_points` sampled rows, started from the centres of
  a k-means over-segmentation of them (sklearn's bin seeding collapses high-dimensional
  features into one bin); every row is then assigned to its nearest centre.

* ``random_members``: NOT clustering, the ablation's control: the codes are k distinct
  rows of the feature matrix drawn uniformly at random (seeded; the chosen row indices are
  in `extra["rows"]`). Sizes and inertia are those of assigning every row to them, so they
  compare with the centres'. Published under the alias `n{k}-random` (memory_bank.bank).

Every result records what the bank metadata needs: k, seed, niter and `extra` (bandwidth,
seeding sample size, fitted points, iterations, convergence).
"""

from __future__ import annotations

import math
import warnings
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np

METHODS = ("faiss_kmeans", "sklearn_kmeans", "meanshift", "random_members")

SEED_POINTS_PER_CENTROID = 64    # k-means++ seeding sample for faiss_kmeans (rows per centre)
SEED_RESTARTS = 3                # seedings tried (best after SEED_NITER Lloyd iterations on it)
SEED_NITER = 10
ITER_BLOCK = 5                   # faiss_kmeans checks for convergence every ITER_BLOCK iterations
DEFAULT_TOL = 1e-3               # faiss_kmeans: stop once a block improves the objective less
MEANSHIFT_MAX_POINTS = 5000      # rows MeanShift is fitted on (it is O(N^2))
MEANSHIFT_QUANTILE = 0.1         # estimate_bandwidth quantile when no bandwidth is given
MEANSHIFT_BANDWIDTH_SAMPLES = 1000
MEANSHIFT_ROWS_PER_SEED = 25     # mean-shift starts: k-means centres, one per 25 fitted rows
MEANSHIFT_MIN_SEEDS = 50         # (5000 rows: 200 seeds, so at most 200 centres are found)


@dataclass
class KMeansResult:
    centroids: np.ndarray   # (k, d) float32: the memory codes are these centres
    inertia: float          # sum of squared distances to the assigned (nearest) centre
    sizes: np.ndarray       # (k,) points per cluster
    method: str
    device: str
    k: int = 0              # actual number of centres (meanshift: chosen by the data)
    seed: int | None = None
    niter: int | None = None
    extra: dict[str, Any] = field(default_factory=dict)  # JSON-ready method details

    def __post_init__(self) -> None:
        if not self.k:
            self.k = int(self.centroids.shape[0])


# ------------------------------------------------------------------------------ inputs
def _prepare(features: Any) -> np.ndarray:
    """Contiguous float32 (N, d) with finite values, or a clear error."""
    with np.errstate(over="ignore"):  # values beyond float32 become inf, refused below
        x = np.ascontiguousarray(features, dtype=np.float32)
    if x.ndim != 2:
        raise ValueError(f"features must be 2-D (num_points, dim), got shape {x.shape}")
    if x.shape[0] == 0 or x.shape[1] == 0:
        raise ValueError(f"features must be non-empty, got shape {x.shape}")
    finite = np.isfinite(x).all(axis=1)
    if not finite.all():
        bad = np.flatnonzero(~finite)
        raise ValueError(f"{bad.size} of {x.shape[0]} feature rows contain NaN or inf (as "
                         f"float32; first bad rows: {bad[:5].tolist()}); drop or fix them "
                         "before clustering")
    return x


def _check_k(k: Any, num_points: int) -> int:
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)):
        raise TypeError(f"k={k!r}: the number of memory codes must be an integer")
    if k <= 0:
        raise ValueError(f"k={k}: the number of memory codes must be positive")
    if num_points < k:
        raise ValueError(f"cannot form k={k} clusters from {num_points} feature vectors; "
                         "encode more frames or lower n")
    return int(k)


def _want_gpu(use_gpu: bool | None, method: str) -> bool:
    if method != "faiss_kmeans":
        if use_gpu:
            raise ValueError(f"use_gpu=True: method {method!r} runs on the CPU only "
                             "(faiss_kmeans is the GPU method)")
        return False
    import faiss

    num_gpus = faiss.get_num_gpus() if hasattr(faiss, "get_num_gpus") else 0
    if use_gpu and num_gpus == 0:
        raise RuntimeError("use_gpu=True but faiss sees no GPU (is faiss-gpu installed "
                           "instead of faiss-cpu, and is a GPU visible?)")
    return num_gpus > 0 if use_gpu is None else bool(use_gpu)


# ------------------------------------------------------------------------------ helpers
def assign(features: np.ndarray, centroids: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Nearest centre and squared distance for each row (exact, via faiss' flat index)."""
    import faiss

    index = faiss.IndexFlatL2(centroids.shape[1])
    index.add(np.ascontiguousarray(centroids, dtype=np.float32))
    dist, labels = index.search(np.ascontiguousarray(features, dtype=np.float32), 1)
    return labels[:, 0], dist[:, 0]


def _faiss_lloyd(x: np.ndarray, init: np.ndarray, *, niter: int, gpu: bool, seed: int
                 ) -> tuple[np.ndarray, float]:
    """`niter` faiss Lloyd iterations on all rows from `init`: (centroids, last objective)."""
    import faiss

    km = faiss.Kmeans(x.shape[1], init.shape[0], niter=niter, seed=seed, gpu=gpu, verbose=False,
                      max_points_per_centroid=x.shape[0], min_points_per_centroid=1)
    km.train(x, init_centroids=np.ascontiguousarray(init, dtype=np.float32))
    return np.array(km.centroids, dtype=np.float32), float(km.obj[-1])


def _faiss_kmeans(x: np.ndarray, k: int, *, seed: int, niter: int, gpu: bool, tol: float
                  ) -> KMeansResult:
    from sklearn.cluster import kmeans_plusplus

    n = x.shape[0]
    rng = np.random.default_rng(seed)
    m = min(n, SEED_POINTS_PER_CENTROID * k)
    best, best_objective = None, math.inf
    for _ in range(SEED_RESTARTS):
        sample = x if m == n else x[np.sort(rng.choice(n, m, replace=False))]
        init, _ = kmeans_plusplus(sample, k, random_state=int(rng.integers(2**31 - 1)))
        init, objective = _faiss_lloyd(sample, init, niter=SEED_NITER, gpu=gpu, seed=seed)
        if objective < best_objective:
            best, best_objective = init, objective
    centroids, objectives, done, stop = best, [], 0, "niter"
    while done < niter:
        step = min(ITER_BLOCK, niter - done)
        centroids, objective = _faiss_lloyd(x, centroids, niter=step, gpu=gpu, seed=seed)
        done += step
        if objectives and objectives[-1] - objective <= tol * objectives[-1]:
            stop = "converged" if objective >= objectives[-1] else "tol"
            objectives.append(objective)
            break
        objectives.append(objective)
    labels, dist = assign(x, centroids)  # exact inertia and sizes of the returned centres
    extra = {"seeding": "sklearn k-means++ on a random subsample, best of restarts after "
                        f"{SEED_NITER} faiss Lloyd iterations on it",
             "seeding_points": int(m), "seeding_restarts": SEED_RESTARTS, "iterations": done,
             "stopped_by": stop, "converged": stop == "converged", "tol": tol,
             "objective_per_block": [round(o, 6) for o in objectives]}
    return KMeansResult(centroids, float(dist.sum(dtype=np.float64)),
                        np.bincount(labels, minlength=k), "faiss_kmeans",
                        "gpu" if gpu else "cpu", k=k, seed=seed, niter=niter, extra=extra)


def _sklearn_kmeans(x: np.ndarray, k: int, *, seed: int, niter: int) -> KMeansResult:
    from sklearn.cluster import KMeans

    max_iter = max(niter, 100)
    km = KMeans(k, init="k-means++", n_init=1, max_iter=max_iter, random_state=seed).fit(x)
    centroids = km.cluster_centers_.astype(np.float32)
    labels, dist = assign(x, centroids)
    return KMeansResult(centroids, float(dist.sum(dtype=np.float64)),
                        np.bincount(labels, minlength=k), "sklearn_kmeans", "cpu", k=k,
                        seed=seed, niter=niter,
                        extra={"max_iter": max_iter, "iterations": int(km.n_iter_)})


def _random_members(x: np.ndarray, k: int, *, seed: int) -> KMeansResult:
    """k distinct rows of x, uniformly at random: corpus members instead of centres."""
    rows = np.sort(np.random.default_rng(seed).choice(x.shape[0], k, replace=False))
    codes = np.ascontiguousarray(x[rows])
    labels, dist = assign(x, codes)
    return KMeansResult(codes, float(dist.sum(dtype=np.float64)), np.bincount(labels, minlength=k),
                        "random_members", "cpu", k=k, seed=seed, niter=None,
                        extra={"rows": rows.tolist(), "selection": "uniform without replacement"})


def _meanshift(x: np.ndarray, k: int | None, *, seed: int, bandwidth: float | None,
               max_points: int | None) -> KMeansResult:
    from sklearn.cluster import MeanShift, estimate_bandwidth

    n = x.shape[0]
    max_points = MEANSHIFT_MAX_POINTS if max_points is None else int(max_points)
    if max_points <= 0:
        raise ValueError(f"max_points={max_points}: must be positive")
    rng = np.random.default_rng(seed)
    m = min(n, max_points)
    fit = x if m == n else x[np.sort(rng.choice(n, m, replace=False))]
    extra: dict[str, Any] = {"fitted_points": int(m)}
    if k is not None:
        warnings.warn(f"method='meanshift' chooses the number of centres from the data; "
                      f"k={k} is ignored (the result's k says how many it found)", stacklevel=3)
        extra["k_requested_ignored"] = int(k)
    if bandwidth is None:
        samples = min(m, MEANSHIFT_BANDWIDTH_SAMPLES)
        bandwidth = float(estimate_bandwidth(fit, quantile=MEANSHIFT_QUANTILE,
                                             n_samples=samples, random_state=seed))
        extra.update(bandwidth_estimated=True, bandwidth_quantile=MEANSHIFT_QUANTILE,
                     bandwidth_samples=samples)
    else:
        extra["bandwidth_estimated"] = False
    bandwidth = float(bandwidth)
    if not (bandwidth > 0 and math.isfinite(bandwidth)):
        raise ValueError(f"meanshift bandwidth={bandwidth}: must be a positive finite number "
                         "(are all sampled features identical?)")
    extra["bandwidth"] = bandwidth
    # Seeds: centres of a k-means over-segmentation of the fitted rows. sklearn's bin_seeding
    # rounds every coordinate to a grid of `bandwidth`, which is far coarser than the
    # per-coordinate spread of high-dimensional features: at d=256 all rows fall into one
    # bin and MeanShift returns one cluster (at d=16 it loses whole blobs). One seed per row
    # is exact but costs a neighbour search per row and iteration.
    num_seeds = min(m, max(MEANSHIFT_MIN_SEEDS, m // MEANSHIFT_ROWS_PER_SEED))
    seeds = fit if num_seeds == m else _faiss_kmeans(fit, num_seeds, seed=seed, niter=10,
                                                     gpu=False, tol=DEFAULT_TOL).centroids
    extra.update(seeds="k-means centres of the fitted rows" if num_seeds < m else "every row",
                 num_seeds=int(num_seeds))
    try:
        ms = MeanShift(bandwidth=bandwidth, seeds=seeds).fit(fit)
    except ValueError as err:
        raise ValueError(f"meanshift with bandwidth={bandwidth:.4g} found no centre ({err}); "
                         "pass a larger bandwidth") from err
    centroids = np.ascontiguousarray(ms.cluster_centers_, dtype=np.float32)
    labels, dist = assign(x, centroids)
    sizes = np.bincount(labels, minlength=len(centroids))
    if (sizes == 0).any():  # a mode nearest to no row is no memory code
        extra["empty_centres_dropped"] = int((sizes == 0).sum())
        centroids = centroids[sizes > 0]
        labels, dist = assign(x, centroids)
        sizes = np.bincount(labels, minlength=len(centroids))
    return KMeansResult(centroids, float(dist.sum(dtype=np.float64)), sizes, "meanshift", "cpu",
                        k=len(centroids), seed=seed, niter=None, extra=extra)


# ------------------------------------------------------------------------------ public API
def _cluster(x: np.ndarray, k: int | None, *, method: str, seed: int, niter: int,
             use_gpu: bool | None, bandwidth: float | None, max_points: int | None,
             tol: float) -> KMeansResult:
    if method not in METHODS:
        raise ValueError(f"method={method!r}: expected one of {METHODS}")
    gpu = _want_gpu(use_gpu, method)
    if method == "meanshift":
        if k is not None:
            _check_k(k, x.shape[0])
        return _meanshift(x, k, seed=seed, bandwidth=bandwidth, max_points=max_points)
    if k is None:
        raise ValueError(f"method={method!r} needs k (the number of memory codes); only "
                         "meanshift chooses it from the data")
    k = _check_k(k, x.shape[0])
    if niter <= 0:
        raise ValueError(f"niter={niter}: must be positive")
    if method == "sklearn_kmeans":
        return _sklearn_kmeans(x, k, seed=seed, niter=niter)
    if method == "random_members":
        return _random_members(x, k, seed=seed)
    if not 0 <= tol < 1:
        raise ValueError(f"tol={tol}: must be in [0, 1) (a relative objective improvement)")
    return _faiss_kmeans(x, k, seed=seed, niter=niter, gpu=gpu, tol=tol)


def cluster(features: Any, k: int | None, *, method: str = "faiss_kmeans", seed: int = 0,
            niter: int = 25, use_gpu: bool | None = None, bandwidth: float | None = None,
            max_points: int | None = None, tol: float = DEFAULT_TOL) -> KMeansResult:
    """Cluster the rows of `features` (N, d); the result's centroids are the memory codes.

    k: number of centres (None only for meanshift, which picks it; a k given to meanshift is
    ignored with a warning). use_gpu=None: faiss_kmeans on the GPU when faiss sees one;
    True without one is an error. bandwidth / max_points: meanshift only (bandwidth None =
    estimated on a subsample; max_points rows fitted, default MEANSHIFT_MAX_POINTS).
    niter: max Lloyd iterations (faiss_kmeans; sklearn_kmeans uses max(niter, 100)).
    tol: faiss_kmeans stops once ITER_BLOCK iterations improve the objective by less than
    this fraction (0: only when it stops improving, or after niter); `extra` says how.
    """
    return _cluster(_prepare(features), k, method=method, seed=seed, niter=niter,
                    use_gpu=use_gpu, bandwidth=bandwidth, max_points=max_points, tol=tol)


def cluster_many(features: Any, ks: Sequence[int], **kw: Any) -> dict[int, KMeansResult]:
    """One clustering per k in `ks`, all from one float32 copy of `features`.

    Each k uses the same seed, so every result equals `cluster(features, k, **kw)`.
    """
    if kw.get("method") == "meanshift":
        raise ValueError("cluster_many: meanshift chooses the number of centres itself; call "
                         "cluster(features, None, method='meanshift')")
    if isinstance(ks, (int, np.integer)) or not len(ks):
        raise ValueError(f"ks={ks!r}: need a non-empty sequence of code counts")
    x = _prepare(features)
    ks = [_check_k(k, x.shape[0]) for k in ks]
    opts = {"method": "faiss_kmeans", "seed": 0, "niter": 25, "use_gpu": None,
            "bandwidth": None, "max_points": None, "tol": DEFAULT_TOL, **kw}
    return {k: _cluster(x, k, **opts) for k in dict.fromkeys(ks)}


def kmeans(features: Any, k: int, *, method: str = "faiss_kmeans", seed: int = 0,
           niter: int = 25, use_gpu: bool | None = None) -> KMeansResult:
    """`cluster` with k required (the older entry point; memory_bank.bootstrap uses it)."""
    if k is None:
        raise ValueError("kmeans() needs k; use cluster(features, None, method='meanshift') "
                         "to let the data choose it")
    return cluster(features, k, method=method, seed=seed, niter=niter, use_gpu=use_gpu)


def refine(features: Any, centroids: Any, *, niter: int = 10, seed: int = 0,
           use_gpu: bool | None = None) -> KMeansResult:
    """Lloyd iterations on `features` starting from given `centroids` (k, d).

    Centre i of the result grew out of centre i of the input, so whatever was learned about
    code i (the audio-mapping head's output i) still points at a similar mouth shape; a
    fresh clustering would number its centres arbitrarily.
    """
    x = _prepare(features)
    init = _prepare(centroids)
    k = _check_k(init.shape[0], x.shape[0])
    if init.shape[1] != x.shape[1]:
        raise ValueError(f"refine: centroids have {init.shape[1]} dimensions, the features "
                         f"{x.shape[1]}")
    if niter < 1:
        raise ValueError(f"refine: niter={niter}: must be >= 1")
    gpu = _want_gpu(use_gpu, "faiss_kmeans")
    moved, objective = _faiss_lloyd(x, init, niter=niter, gpu=gpu, seed=seed)
    labels, dist = assign(x, moved)
    return KMeansResult(moved, float(dist.sum(dtype=np.float64)), np.bincount(labels, minlength=k),
                        "faiss_refine", "gpu" if gpu else "cpu", k=k, seed=seed, niter=niter,
                        extra={"start": "given centroids", "last_objective": round(objective, 6)})
