"""Models handed between jobs by reference: publish at the end of fit, resolve, load, resume."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from memory_bank.artifacts.registry import LocalRegistry


def smoke(corpus: Path, run_dir: Path, *extra: str) -> list[str]:
    return ["--config", "configs/smoke.yaml", f"--data.root={corpus}",
            f"--trainer.default_root_dir={run_dir}", *extra]


@pytest.fixture(scope="module")
def trained(tiny_corpus, tmp_path_factory, lipmem_cli):
    tmp = tmp_path_factory.mktemp("model_artifacts")
    out = lipmem_cli(["fit", *smoke(tiny_corpus, tmp / "run")], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    registry = LocalRegistry(tmp / "registry")
    names = [n for n in registry.names() if n.startswith("model-")]
    assert len(names) == 1, registry.names()
    return tmp, registry, names[0]


def test_fit_publishes_the_model_with_latest_and_best(trained):
    tmp, registry, name = trained
    run_id = next((tmp / "run" / "wandb").glob("offline-run-*")).name.rsplit("-", 1)[-1]
    assert name == f"model-{run_id}"  # named after the W&B run
    aliases = registry.aliases(name)
    assert {"latest", "best"} <= set(aliases)
    latest = registry.resolve(name, "latest")
    assert set(latest.files) == {"model.ckpt", "config.yaml"}
    assert latest.metadata["memory_bank"]["source"] == "bootstrap"
    assert latest.metadata["monitor"] == "val/mouth_score"
    wandb_log = next((tmp / "run" / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    assert name.encode() in wandb_log  # also logged into the offline W&B run


def test_published_weights_are_the_run_checkpoint_weights(trained):
    tmp, registry, name = trained
    published = registry.resolve(name, "latest").file("model.ckpt")
    a = torch.load(published, map_location="cpu", weights_only=True)["state_dict"]
    b = torch.load(tmp / "run" / "checkpoints" / "last.ckpt", map_location="cpu",
                   weights_only=True)["state_dict"]
    assert a.keys() == b.keys()
    for key in a:
        torch.testing.assert_close(a[key], b[key])


def test_validate_takes_a_model_reference(trained, tiny_corpus, lipmem_cli):
    tmp, _, name = trained
    out = lipmem_cli(["validate", *smoke(tiny_corpus, tmp / "val"), f"--ckpt_path={name}:best"],
                     tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "val/l1_mouth" in out.stdout


def test_a_missing_alias_names_the_aliases_that_exist(trained, tiny_corpus, lipmem_cli):
    tmp, _, name = trained
    out = lipmem_cli(["validate", *smoke(tiny_corpus, tmp / "val2"),
                      f"--ckpt_path={name}:nope"], tmp)
    assert out.returncode != 0
    assert f"{name}:nope" in out.stderr and "best -> v" in out.stderr and "latest -> v" in out.stderr


def test_resumed_fit_continues_the_steps_and_the_wandb_run(trained, tiny_corpus, lipmem_cli):
    tmp, registry, name = trained
    run = tmp / "run"
    first_id = name.removeprefix("model-")
    out = lipmem_cli(["fit", *smoke(tiny_corpus, run, "--ckpt_path=last",
                                    "--trainer.max_steps=16", "--trainer.max_epochs=3")], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    ckpt = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert ckpt["global_step"] == 16  # continued from 8, not restarted
    run_dirs = sorted((run / "wandb").glob("offline-run-*"))
    assert len(run_dirs) == 2 and all(d.name.endswith(first_id) for d in run_dirs)
    resumed = registry.resolve(name, "latest").metadata
    assert resumed["global_step"] == 16
    assert resumed["memory_bank"]["source"] == "bootstrap"  # provenance survives the resume
