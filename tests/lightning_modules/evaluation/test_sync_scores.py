"""LSE-D / LSE-C with a briefly trained expert: ground truth beats audio shifted 10 frames."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.lipsync_datamodule import LipSyncDataModule
from lightning_modules.checkpoints.sync_expert_file import load_sync_expert
from lightning_modules.evaluation.sync_scores import SyncScores, clip_sync_score
from lightning_modules.generation.clip_generation import Geometry


@pytest.fixture(scope="module")
def scored(eval_models, tiny_corpus):
    expert = load_sync_expert(f"{eval_models['expert']}:best", str(eval_models["registry"].root))
    cutter = Geometry(image_size=48).cutter()
    clips = list(LipSyncDataModule(root=str(tiny_corpus), image_size=48,
                                   num_workers=0).clips("test"))
    return {shift: [clip_sync_score(expert.net, c.frames, c.audio, cutter, shift=shift)
                    for c in clips] for shift in (0, 10)}


def test_scores_follow_their_definition(scored):
    for score in scored[0] + scored[10]:
        assert score.curve.shape == (31,)
        assert score.distance == pytest.approx(score.curve.min())
        assert score.confidence == pytest.approx(np.median(score.curve) - score.curve.min())
        assert score.distance_at_0 == pytest.approx(score.curve[15])
        assert 0.0 <= score.distance <= 2.0  # unit embeddings


def test_ground_truth_is_in_sync_and_shifted_audio_is_found_ten_frames_off(scored):
    truth, shifted = SyncScores(), SyncScores()
    for a, b in zip(scored[0], scored[10], strict=True):
        truth.update(a)
        shifted.update(b)
    t, s = truth.compute(), shifted.compute()
    assert t["lse_d_offset0"] < s["lse_d_offset0"]  # at offset 0 the truth is closer
    assert t["lse_d"] < s["lse_d_offset0"]
    assert t["lse_abs_offset"] < s["lse_abs_offset"]
    offsets = [x.offset for x in scored[10]]
    assert sum(abs(o + 10) <= 1 for o in offsets) > len(offsets) / 2, offsets
    assert sum(abs(x.offset) <= 1 for x in scored[0]) > len(offsets) / 2


def test_a_clip_shorter_than_the_window_is_a_clear_error(eval_models):
    expert = load_sync_expert(f"{eval_models['expert']}:best", str(eval_models["registry"].root))
    with pytest.raises(ValueError, match="shorter than the sync expert's window"):
        clip_sync_score(expert.net, np.zeros((3, 48, 48, 3), np.uint8), np.zeros(3 * 640),
                        Geometry(image_size=48).cutter())
