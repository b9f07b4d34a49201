"""Mouth openness estimate and silent-frame closure on the synthetic corpus' mouth track."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.lipsync_datamodule import LipSyncDataModule
from lightning_modules.evaluation.mouth_metrics import (
    MouthMetrics,
    OpennessEstimator,
    silent_frames,
)


@pytest.fixture(scope="module")
def clips(tiny_corpus):
    dm = LipSyncDataModule(root=str(tiny_corpus), image_size=48, num_workers=0)
    return list(dm.clips("train")), list(dm.clips("test"))


def test_silent_frames_follow_the_audio_level():
    audio = np.zeros(10 * 640, np.float32)
    audio[3 * 640:6 * 640] = 0.3 * np.sin(np.arange(3 * 640) / 5.0)
    assert silent_frames(audio, 10, 25, 16000).tolist() == [True] * 3 + [False] * 3 + [True] * 4
    # missing samples at the end are silence
    assert silent_frames(audio[:4 * 640], 6, 25, 16000).tolist()[-2:] == [True, True]


def test_estimator_tracks_openness_on_unseen_speakers(clips):
    train, test = clips
    estimator = OpennessEstimator(48).fit((c.frames, c.mouth[:, 0]) for c in train)
    truth = np.concatenate([c.mouth[:, 0] for c in test])
    estimate = np.concatenate([estimator.predict(c.frames) for c in test])
    assert np.abs(estimate - truth).mean() < 0.5 * np.abs(truth - truth.mean()).mean()


def test_identical_frames_reach_the_estimator_floor_and_the_same_closure(clips):
    train, test = clips
    metrics = MouthMetrics(OpennessEstimator(48).fit((c.frames, c.mouth[:, 0]) for c in train))
    for clip in test:
        metrics.update(clip.frames.copy(), clip.frames, clip.mouth, clip.audio, 25, 16000)
    generated, truth = metrics.compute()
    assert generated["openness_mae"] == truth["openness_mae"]
    assert generated["silent_closed_share"] == truth["silent_closed_share"]
    assert truth["silent_closed_share_track"] == 1.0  # the synthetic track closes in pauses
    assert 0.1 < truth["silent_frame_share"] < 0.9
    # the estimator sees the closed mouths of the pauses
    assert truth["silent_closed_share"] > 0.7


def test_a_frozen_open_mouth_is_worse_than_ground_truth(clips):
    train, test = clips
    metrics = MouthMetrics(OpennessEstimator(48).fit((c.frames, c.mouth[:, 0]) for c in train))
    for clip in test:
        frozen = np.repeat(clip.frames[np.argmax(clip.mouth[:, 0])][None], clip.num_frames, 0)
        metrics.update(frozen, clip.frames, clip.mouth, clip.audio, 25, 16000)
    generated, truth = metrics.compute()
    assert generated["openness_mae"] > truth["openness_mae"] + 0.1
    assert generated["silent_closed_share"] < truth["silent_closed_share"]


def test_estimator_without_training_frames_is_a_clear_error():
    with pytest.raises(ValueError, match="mouth track"):
        OpennessEstimator(48).fit([])
