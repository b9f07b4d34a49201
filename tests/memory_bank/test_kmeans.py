import numpy as np
import pytest
from sklearn.datasets import make_blobs

from memory_bank.kmeans import assign, kmeans


@pytest.fixture(scope="module")
def blobs():
    x, _ = make_blobs(6000, 32, centers=30, cluster_std=2.0, random_state=1)
    return x.astype(np.float32)


def test_faiss_with_kmeans_pp_matches_sklearn_inertia(blobs):
    f = kmeans(blobs, 30, method="faiss_kmeans", seed=0)
    s = kmeans(blobs, 30, method="sklearn_kmeans", seed=0)
    assert f.centroids.shape == (30, 32) and f.device == "cpu"
    assert f.inertia <= s.inertia * 1.03


def test_centres_are_the_means_of_their_clusters(blobs):
    r = kmeans(blobs, 30, seed=0)
    labels, _ = assign(blobs, r.centroids)
    for c in range(30):
        np.testing.assert_allclose(r.centroids[c], blobs[labels == c].mean(axis=0), atol=1e-2)
    assert r.sizes.sum() == len(blobs)


def test_too_few_points_or_bad_k_is_refused(blobs):
    with pytest.raises(ValueError, match="k=10 clusters from 5"):
        kmeans(blobs[:5], 10)
    with pytest.raises(ValueError, match="k=0"):
        kmeans(blobs, 0)
    with pytest.raises(ValueError, match="method='bogus'"):
        kmeans(blobs, 3, method="bogus")
