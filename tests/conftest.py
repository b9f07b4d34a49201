"""Shared fixtures: a tiny real synthetic corpus (real shards, real mp4/wav), made once."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

# Tests never talk to a W&B server and never write outside their tmp folders.
os.environ.setdefault("WANDB_MODE", "offline")
os.environ.setdefault("WANDB_SILENT", "true")


def make_corpus(out: Path, **overrides) -> Path:
    from datamodules.synth.corpus import SynthConfig, synthesize

    cfg = dict(out_dir=str(out), seed=0, speakers=4, clips_per_speaker=3, clip_seconds=3.0,
               image_size=48, val_speakers=1, test_speakers=1, clips_per_shard=2, workers=1)
    cfg.update(overrides)
    synthesize(SynthConfig(**cfg))
    return out


@pytest.fixture(scope="session")
def corpus_factory():
    """make_corpus(out, **SynthConfig overrides) for tests that need their own corpus."""
    return make_corpus


@pytest.fixture(scope="session")
def tiny_corpus(tmp_path_factory) -> Path:
    """4 speakers (2 train, 1 val, 1 test) x 3 clips x 3 s at 48 px."""
    return make_corpus(tmp_path_factory.mktemp("tiny_corpus"))
