"""One person's corpus for fine-tune benchmarks: mp4s -> `lipmem data prep` -> shards that
carry the mouth track that drew each frame's mouth, as `lipmem eval` needs."""

from __future__ import annotations

import numpy as np

from benchmarks.personal_corpus import make_personal_corpus
from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.manifest import load_manifest, verify_shards
from lightning_modules.evaluation.mouth_metrics import OpennessEstimator
from tests.media_fixtures import phone_speech


def test_personal_corpus_carries_the_mouth_track(tmp_path):
    result = make_personal_corpus(tmp_path / "me", clips=4, seconds=2.4, size=160,
                                  image_size=48, workers=0, clip_seconds=0.8,
                                  min_clip_seconds=0.8)
    out = tmp_path / "me"
    manifest = load_manifest(out)
    verify_shards(manifest, out)
    assert manifest["has_mouth_track"] is True and manifest["split_by"] == "video"
    assert sorted(manifest["splits"]) == ["test", "train", "val"]
    assert result["report"]["kept_clips"] == 12  # 4 videos x 3 clips of 0.8 s
    dm = LipSyncDataModule(root=str(out), image_size=48, batch_size=2, num_workers=0)
    assert dm.has_mouth_track
    clips = {split: list(dm.clips(split)) for split in ("train", "test")}
    for clip in clips["train"] + clips["test"]:
        video = int(clip.meta["source"].split("_")[-1].split(".")[0])
        _, track = phone_speech(2.4, 25, 22050, seed=video)  # what drew this video's mouth
        start = clip.meta["start_frame"]
        assert np.array_equal(clip.mouth, track[start:start + clip.num_frames])
    # the eval's openness estimator, fitted on train frames, reads test mouths well
    estimator = OpennessEstimator(48).fit((c.frames, c.mouth[:, 0]) for c in clips["train"])
    truth = np.concatenate([c.mouth[:, 0] for c in clips["test"]])
    guess = np.concatenate([estimator.predict(c.frames) for c in clips["test"]])
    assert np.abs(guess - truth).mean() < 0.5 * np.abs(truth - truth.mean()).mean()
