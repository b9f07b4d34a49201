"""The training stream mixes speakers and clips about as well as uniform sampling would.

Windows come from whole clips decoded in the loader workers, shards are read a few at a
time and a shuffle buffer mixes them: if shards hold one speaker, the buffer starts half
empty or the workers restart every epoch, batches are dominated by one face and a few
clips, and the generator learns identity before mouths. Measured on the synthetic corpus
writer's default shard layout with the datamodule's default stream settings.
"""

from __future__ import annotations

from collections import Counter

import numpy as np
import pytest

from datamodules.lipsync_datamodule import LipSyncDataModule

BATCH = 16
TRAIN_SPEAKERS = 8


@pytest.fixture(scope="module")
def corpus(tmp_path_factory, corpus_factory):
    # the default layout (10 speakers, 8 clips per shard), shorter clips at 48 px
    return corpus_factory(tmp_path_factory.mktemp("mix"), speakers=10, clips_per_speaker=8,
                          clip_seconds=3.0, image_size=48, clips_per_shard=8)


def uniform_top_share(trials: int = 4000) -> float:
    """Mean share of a batch's most common speaker when windows are drawn uniformly."""
    rng = np.random.default_rng(0)
    draws = rng.integers(0, TRAIN_SPEAKERS, size=(trials, BATCH))
    return float(np.mean([np.bincount(d).max() / BATCH for d in draws]))


def stream_mix(root, epochs: int = 3, batches_per_epoch: int = 6) -> tuple[float, float]:
    """(mean share of a batch's most common speaker, mean share of windows that share their
    clip with another window of the batch), over the first batches of several epochs."""
    dm = LipSyncDataModule(root=str(root), image_size=48, batch_size=BATCH, num_workers=2,
                           batches_per_epoch=batches_per_epoch)
    dm.setup("fit")
    loader = dm.train_dataloader()
    top, shared = [], []
    try:
        for _ in range(epochs):
            for batch in loader:
                speakers = Counter(batch["speaker"])
                top.append(max(speakers.values()) / BATCH)
                clips = Counter(batch["key"])
                shared.append(sum(c for c in clips.values() if c > 1) / BATCH)
    finally:
        dm.teardown("fit")
    assert len(top) == epochs * batches_per_epoch
    return float(np.mean(top)), float(np.mean(shared))


def test_batches_mix_speakers_like_uniform_sampling_from_the_first_batch(corpus):
    uniform = uniform_top_share()  # about 0.26 for 8 speakers and 16 windows
    top, shared = stream_mix(corpus)
    # measured 0.31; shards of one speaker gave 0.34 with these stream settings and ~0.4 with
    # a quarter-full buffer restarted every epoch; the margin allows for the buffer holding
    # ~64 clips rather than the whole corpus
    assert top < uniform + 0.06, (top, uniform)
    assert shared < 0.35, shared  # a batch is not a handful of clips


def test_every_shard_mixes_speakers(corpus):
    import json

    manifest = json.loads((corpus / "manifest.json").read_text())
    train = [s for s in manifest["shards"] if s["split"] == "train"]
    assert all(len(s["speakers"]) >= 3 for s in train), [s["speakers"] for s in train]
