"""Trained models shared by the sync-expert and evaluation tests (trained once per session)."""

from __future__ import annotations

from pathlib import Path

import pytest

from memory_bank.registry import LocalRegistry


def _only(registry: LocalRegistry, prefix: str) -> str:
    names = [n for n in registry.names() if n.startswith(prefix)]
    assert len(names) == 1, registry.names()
    return names[0]


@pytest.fixture(scope="session")
def eval_models(tiny_corpus, tmp_path_factory, lipmem_cli) -> dict[str, object]:
    """A smoke GAN (`model-*`) and a briefly trained sync expert (`syncnet-*`), both fitted
    with `lipmem fit` on the tiny corpus and published to one tmp registry."""
    tmp: Path = tmp_path_factory.mktemp("eval_models")
    gan = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
                      f"--trainer.default_root_dir={tmp / 'gan'}"], tmp)
    assert gan.returncode == 0, gan.stderr[-4000:]
    expert = lipmem_cli(["fit", "--config", "configs/sync_expert_smoke.yaml",
                         f"--data.root={tiny_corpus}",
                         f"--trainer.default_root_dir={tmp / 'expert'}"], tmp)
    assert expert.returncode == 0, expert.stderr[-4000:]
    registry = LocalRegistry(tmp / "registry")
    return {"tmp": tmp, "registry": registry, "model": _only(registry, "model-"),
            "expert": _only(registry, "syncnet-"), "expert_stdout": expert.stdout}
