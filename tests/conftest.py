"""Shared fixtures: a tiny real synthetic corpus (real shards, real mp4/wav), made once."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Callable
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


REPO = Path(__file__).resolve().parents[1]
_SCRIPT = Path(sys.executable).parent / "lipmem"  # the installed console script users run
LIPMEM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lightning_modules.cli.main"]


def run_lipmem(args: list[str], tmp_path: Path, timeout: int = 600,
               **env: str) -> subprocess.CompletedProcess:
    """`lipmem ARGS` in a subprocess from the repo root: offline W&B, $HOME and the local
    artifact registry inside tmp_path, so nothing outside it is touched."""
    home = tmp_path / "home"
    home.mkdir(exist_ok=True)
    full_env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(home),
                    PYTHONPATH=str(REPO), LIPMEM_REGISTRY=str(tmp_path / "registry"))
    full_env.update(env)  # a test may override any of these (e.g. PYTHONPATH)
    return subprocess.run(LIPMEM + args, cwd=REPO, env=full_env, capture_output=True, text=True,
                          timeout=timeout, check=False)


@pytest.fixture(scope="session")
def lipmem_cli() -> Callable[..., subprocess.CompletedProcess]:
    """run_lipmem(args, tmp_path, timeout=600, **env) for end-to-end tests."""
    return run_lipmem
