import json

import faiss
import numpy as np
import pytest
from sklearn.datasets import make_blobs
from sklearn.metrics import adjusted_rand_score

from memory_bank.kmeans import (
    METHODS,
    SEED_POINTS_PER_CENTROID,
    KMeansResult,
    assign,
    cluster,
    cluster_many,
    kmeans,
)

HAS_GPU = faiss.get_num_gpus() > 0


@pytest.fixture(scope="module")
def blobs():
    x, _ = make_blobs(6000, 32, centers=30, cluster_std=2.0, random_state=1)
    return x.astype(np.float32)


def blob_means_inertia(x):
    _, y = make_blobs(6000, 32, centers=30, cluster_std=2.0, random_state=1)
    means = np.stack([x[y == c].mean(axis=0) for c in range(30)])
    return float(assign(x, means)[1].sum(dtype=np.float64))


@pytest.fixture(scope="module")
def separated():
    """Five far-apart blobs of unequal size: the number of clusters is unambiguous."""
    centres = np.random.default_rng(3).normal(0, 1, (5, 16)) * 15
    x, y = make_blobs([120, 210, 90, 270, 150], 16, centers=centres, cluster_std=1.0,
                      random_state=3)
    return x.astype(np.float32), y


def test_methods():
    assert METHODS == ("faiss_kmeans", "sklearn_kmeans", "meanshift", "random_members")


def test_random_members_are_seeded_rows_of_the_features_not_centres(blobs):
    r = cluster(blobs, 30, method="random_members", seed=3)
    rows = np.asarray(r.extra["rows"])
    assert len(set(rows.tolist())) == 30 and r.k == 30 and r.method == "random_members"
    np.testing.assert_array_equal(r.centroids, blobs[rows])       # corpus members themselves
    _, dist = assign(blobs, r.centroids)
    assert r.sizes.sum() == len(blobs) and r.inertia == pytest.approx(dist.sum(), rel=1e-6)
    centres = cluster(blobs, 30, seed=3)
    assert r.inertia > centres.inertia  # members are a worse summary than centres
    assert not any((np.abs(blobs - c).sum(1) == 0).any() for c in centres.centroids)
    again = cluster(blobs, 30, method="random_members", seed=3)
    np.testing.assert_array_equal(again.centroids, r.centroids)
    other = cluster(blobs, 30, method="random_members", seed=4)
    assert not np.array_equal(other.centroids, r.centroids)


def test_faiss_with_kmeans_pp_matches_sklearn_inertia(blobs):
    f = cluster(blobs, 30, method="faiss_kmeans", seed=0)
    s = cluster(blobs, 30, method="sklearn_kmeans", seed=0)
    assert f.centroids.shape == (30, 32) and f.centroids.dtype == np.float32
    assert f.device == ("gpu" if HAS_GPU else "cpu") and s.device == "cpu"
    # both are one k-means++ run into a local minimum (here sklearn's is 3.5% worse): faiss
    # must be no worse than sklearn by more than a few percent, and near the blob means
    assert f.inertia <= s.inertia * 1.03
    assert f.inertia <= blob_means_inertia(blobs) * 1.15
    assert f.extra["seeding_points"] == min(len(blobs), 30 * SEED_POINTS_PER_CENTROID)


def test_centres_are_the_means_of_their_clusters(blobs):
    """A converged Lloyd fixed point: each code is the mean of the rows nearest to it."""
    r = cluster(blobs, 30, seed=0, tol=0, niter=200)
    assert r.extra["converged"]
    labels, dist = assign(blobs, r.centroids)
    means = np.stack([blobs[labels == c].mean(axis=0) for c in range(30)])
    np.testing.assert_allclose(r.centroids, means, rtol=1e-4, atol=1e-4)
    np.testing.assert_array_equal(r.sizes, np.bincount(labels, minlength=30))
    assert r.sizes.sum() == len(blobs)
    assert r.inertia == pytest.approx(float(dist.sum(dtype=np.float64)), rel=1e-6)
    # centres, not members: no code is a row of the data
    assert np.min(assign(r.centroids, blobs)[1]) > 1e-3


def test_default_tolerance_stops_early_at_about_the_converged_inertia():
    """Overlapping blobs need many iterations to a fixed point; the default stops sooner."""
    x, _ = make_blobs(4000, 16, centers=10, cluster_std=4.0, random_state=0)
    x = x.astype(np.float32)
    full = cluster(x, 25, seed=0, tol=0, niter=1000)
    assert full.extra["converged"] and full.extra["iterations"] > 10
    default = cluster(x, 25, seed=0)
    assert default.extra["stopped_by"] in ("tol", "converged")
    assert default.extra["iterations"] <= full.extra["iterations"]
    assert default.inertia <= full.inertia * 1.01


def test_result_records_what_the_bank_metadata_needs(blobs):
    r = kmeans(blobs, 12, seed=5, niter=7)
    assert isinstance(r, KMeansResult)
    assert (r.k, r.seed, r.niter, r.method) == (12, 5, 7, "faiss_kmeans")
    assert 1 <= r.extra["iterations"] <= 7
    json.dumps(r.extra)  # goes into bank.json as is


def test_meanshift_finds_the_blobs_and_records_bandwidth(separated):
    x, y = separated
    r = cluster(x, None, method="meanshift")
    assert r.k == 5 and r.centroids.shape == (5, 16)
    assert r.extra["bandwidth"] > 0 and r.extra["bandwidth_estimated"]
    assert r.extra["fitted_points"] == len(x) and r.niter is None
    assert sorted(r.sizes.tolist()) == [90, 120, 150, 210, 270]
    assert adjusted_rand_score(y, assign(x, r.centroids)[0]) == 1.0
    json.dumps(r.extra)
    # a subsample is fitted, every row assigned; an explicit bandwidth is recorded as given
    sub = cluster(x, None, method="meanshift", max_points=400, bandwidth=8.0, seed=1)
    assert sub.k == 5 and sub.sizes.sum() == len(x)
    assert sub.extra["fitted_points"] == 400 and sub.extra["bandwidth"] == 8.0
    assert not sub.extra["bandwidth_estimated"]
    with pytest.warns(UserWarning, match="k=3 is ignored"):
        ignored = cluster(x, 3, method="meanshift", max_points=400, seed=1)
    assert ignored.k == 5 and ignored.extra["k_requested_ignored"] == 3


def test_cluster_many_equals_separate_calls(blobs):
    ks = (5, 12, 30)
    many = cluster_many(blobs.astype(np.float64), ks, seed=2)
    assert list(many) == list(ks)
    for k, r in many.items():
        assert r.centroids.shape == (k, 32) and r.k == k and r.sizes.sum() == len(blobs)
        one = cluster(blobs, k, seed=2)
        np.testing.assert_array_equal(r.centroids, one.centroids)
        assert r.inertia == one.inertia
    with pytest.raises(ValueError, match="meanshift"):
        cluster_many(blobs, ks, method="meanshift")
    with pytest.raises(ValueError, match="k=7000 clusters"):
        cluster_many(blobs, [4, 7000])


@pytest.mark.parametrize("method", ["faiss_kmeans", "sklearn_kmeans"])
def test_deterministic_for_a_seed(blobs, method):
    a = cluster(blobs, 20, method=method, seed=4)
    b = cluster(blobs, 20, method=method, seed=4)
    np.testing.assert_array_equal(a.centroids, b.centroids)
    assert a.inertia == b.inertia
    c = cluster(blobs, 20, method=method, seed=5)
    assert not np.array_equal(a.centroids, c.centroids)


@pytest.mark.parametrize("bad", [np.nan, np.inf, 1e39])  # 1e39 overflows float32
def test_non_finite_rows_are_refused(blobs, bad):
    x = blobs.astype(np.float64)
    x[[3, 10, 11], 5] = bad
    for call in (lambda: cluster(x, 4), lambda: cluster_many(x, [4]),
                 lambda: cluster(x, None, method="meanshift")):
        with pytest.raises(ValueError, match=r"3 of 6000 feature rows contain NaN or inf"):
            call()


def test_too_few_points_or_bad_k_or_shape_is_refused(blobs):
    with pytest.raises(ValueError, match="k=10 clusters from 5"):
        kmeans(blobs[:5], 10)
    with pytest.raises(ValueError, match="k=0"):
        kmeans(blobs, 0)
    with pytest.raises(ValueError, match="method='bogus'"):
        kmeans(blobs, 3, method="bogus")
    with pytest.raises(ValueError, match="needs k"):
        cluster(blobs, None)
    with pytest.raises(ValueError, match="2-D"):
        cluster(blobs[0], 2)
    with pytest.raises(ValueError, match="2-D"):
        cluster(blobs.reshape(6000, 4, 8), 2)


@pytest.mark.skipif(HAS_GPU, reason="faiss sees a GPU here")
def test_use_gpu_without_a_gpu_is_refused(blobs):
    with pytest.raises(RuntimeError, match="faiss sees no GPU"):
        cluster(blobs, 4, use_gpu=True)
    with pytest.raises(ValueError, match="CPU only"):
        cluster(blobs, 4, method="sklearn_kmeans", use_gpu=True)
    assert cluster(blobs, 4, use_gpu=False).device == "cpu"


def test_refine_moves_each_given_centre_to_the_cluster_it_started_nearest(separated):
    from memory_bank.kmeans import refine

    x, y = separated
    means = np.stack([x[y == c].mean(axis=0) for c in range(5)])
    order = np.array([3, 0, 4, 1, 2])  # centre i starts near blob order[i], 3 units off
    start = means[order] + np.random.default_rng(0).normal(0, 3 / 4, means.shape)
    result = refine(x, start, niter=10)
    assert result.method == "faiss_refine" and result.k == 5
    np.testing.assert_allclose(result.centroids, means[order], atol=1e-3)
    assert result.sizes.tolist() == np.bincount(y)[order].tolist()
    with pytest.raises(ValueError, match="dimensions"):
        refine(x, start[:, :8])
