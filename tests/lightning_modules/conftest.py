"""Trained models shared by the sync-expert and evaluation tests (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory_bank.artifacts.registry import LocalRegistry


def _only(registry: LocalRegistry, prefix: str) -> str:
    names = [n for n in registry.names() if n.startswith(prefix)]
    assert len(names) == 1, registry.names()
    return names[0]


@pytest.fixture(scope="session")
def eval_models(tiny_corpus, corpus_factory, tmp_path_factory, lipmem_cli) -> dict[str, object]:
    """A smoke GAN (`model-*`, on the tiny corpus) and a briefly trained sync expert
    (`syncnet-*`), both fitted with `lipmem fit` and published to one tmp registry.

    The expert learns from 6 speakers of another seed (none of them is a tiny-corpus face):
    trained on the tiny corpus' 2 training speakers, its AUC on an unseen speaker ranged
    0.61-0.86 over seeds and CPUs; with 6 it was 0.80-0.92 over 7 seeds (Intel Xeon, 2 cores).
    """
    tmp: Path = tmp_path_factory.mktemp("eval_models")
    gan = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
                      f"--trainer.default_root_dir={tmp / 'gan'}"], tmp)
    assert gan.returncode == 0, gan.stderr[-4000:]
    expert_corpus = corpus_factory(tmp / "expert_corpus", seed=1, speakers=8,
                                   clips_per_speaker=2)
    expert = lipmem_cli(["fit", "--config", "configs/sync_expert_smoke.yaml",
                         f"--data.root={expert_corpus}",
                         f"--trainer.default_root_dir={tmp / 'expert'}"], tmp)
    assert expert.returncode == 0, expert.stderr[-4000:]
    registry = LocalRegistry(tmp / "registry")
    return {"tmp": tmp, "registry": registry, "model": _only(registry, "model-"),
            "expert": _only(registry, "syncnet-"), "expert_stdout": expert.stdout}
