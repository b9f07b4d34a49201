"""Bank metrics tell a bank of speakers from a bank of mouth shapes."""

from __future__ import annotations

import numpy as np
import pytest

from memory_bank.bank_metrics import bank_metrics
from memory_bank.kmeans import assign, cluster


def corpus_codes(mouth_weight: float, speaker_weight: float, seed: int = 0):
    """8 speakers x 400 frames; codes = speaker direction + mouth-openness direction + noise."""
    rng = np.random.default_rng(seed)
    speakers = np.repeat([f"spk{i}" for i in range(8)], 400)
    openness = rng.uniform(0, 1, speakers.size)
    speaker_dirs = rng.normal(size=(8, 16))
    mouth_dir = rng.normal(size=16)
    index = np.repeat(np.arange(8), 400)
    codes = (speaker_weight * speaker_dirs[index] + mouth_weight * openness[:, None] * mouth_dir
             + 0.05 * rng.normal(size=(speakers.size, 16)))
    return codes.astype(np.float32), speakers, openness.astype(np.float32)


def metrics_for(codes, speakers, openness, n=8):
    result = cluster(codes, n, method="faiss_kmeans", seed=0)
    return bank_metrics(assign(codes, result.centroids)[0], n, speakers, openness)


def test_a_speaker_coded_bank_and_a_mouth_coded_bank_score_apart():
    by_speaker = metrics_for(*corpus_codes(mouth_weight=0.3, speaker_weight=5.0))
    by_mouth = metrics_for(*corpus_codes(mouth_weight=5.0, speaker_weight=0.1))
    assert by_speaker["single_speaker_share"] > 0.9
    assert by_speaker["openness_variance_explained"] < 0.5
    assert by_mouth["single_speaker_share"] < 0.1
    assert by_mouth["openness_variance_explained"] > 0.9
    for m in (by_speaker, by_mouth):
        assert sum(m["cluster_sizes"]) == m["frames"] == 3200 and m["speakers"] == 8
        assert m["empty_clusters"] == 0


def test_metrics_without_speakers_or_a_track_report_sizes_only():
    codes, _, _ = corpus_codes(1.0, 1.0)
    result = cluster(codes, 8, method="faiss_kmeans", seed=0)
    labels = assign(codes, result.centroids)[0]
    m = bank_metrics(labels, 8, np.array([""] * len(labels)),
                     np.full(len(labels), np.nan, np.float32))
    assert "single_speaker_share" not in m and "openness_variance_explained" not in m
    assert m["cluster_sizes"] == np.bincount(labels, minlength=8).tolist()
    assert m["largest_cluster_share"] == pytest.approx(max(m["cluster_sizes"]) / len(labels))
