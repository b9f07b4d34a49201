"""`lipmem bank build` / `lipmem bank inspect` end to end, and training on the result."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
import yaml

from memory_bank.artifacts.registry import LocalRegistry
from memory_bank.bank import load_bank
from memory_bank.code_space import clustering_space
from memory_bank.features import load_features
from memory_bank.kmeans import assign, cluster

# Matches configs/smoke.yaml's generator, so the smoke fit can load the bank.
TINY_BANK = {
    "trainer": {"max_epochs": 1, "max_steps": 6, "limit_val_batches": 1, "accelerator": "cpu",
                "log_every_n_steps": 1},
    "model": {"net": {"class_path": "lightning_modules.nets.MouthAutoencoderNet",
                      "init_args": {"embed_dim": 64, "audio_dim": 64, "base_channels": 8,
                                    "max_channels": 64, "cond_channels": 8}},
              "lpips_backbone": "random"},
    "data": {"image_size": 48, "batch_size": 8, "num_workers": 0, "windows_per_clip": 4,
             "val_windows_per_clip": 2, "batches_per_epoch": 3},
    "bank": {"frames": 120, "n": [4, 8]},
}


@pytest.fixture(scope="module")
def built(tiny_corpus, tmp_path_factory, lipmem_cli):
    """One real build: autoencoder fit (6 steps) -> 120 frames -> n = 4 and 8."""
    tmp = tmp_path_factory.mktemp("bank")
    config = tmp / "tiny_bank.yaml"
    config.write_text(yaml.safe_dump(TINY_BANK))
    out = lipmem_cli(["bank", "build", "--config", str(config), f"--data.root={tiny_corpus}",
                      f"--trainer.default_root_dir={tmp / 'run'}"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    return tmp, config, out


def test_build_publishes_one_bank_per_n_with_centres_of_the_features(built, lipmem_cli):
    tmp, _, _ = built
    registry = LocalRegistry(tmp / "registry")
    feats = load_features(tmp / "run" / "bank" / "features.npz")
    assert feats.features.shape == (120, 64)
    for n in (4, 8):
        bank = load_bank(f"memory-bank:n{n}", registry)
        assert bank.codes.shape == (n, 64)  # exactly n rows of dim d
        # clusters are found on clip-centred codes; each code is its members' mean raw code
        space = clustering_space(feats.features, feats.keys, "clip")
        labels = assign(space, cluster(space, n, method="faiss_kmeans", seed=0).centroids)[0]
        means = np.stack([feats.features[labels == c].mean(0) for c in range(n)])
        np.testing.assert_allclose(bank.codes.numpy(), means, rtol=1e-4, atol=1e-4)
        meta = bank.meta
        assert meta["centre_per"] == "clip" and meta["metrics"]["frames"] == 120
        assert meta["metrics"]["speakers"] == 2  # the tiny corpus' two training speakers
        assert 0 <= meta["metrics"]["single_speaker_share"] <= 1
        assert meta["metrics"]["openness_variance_explained"] is not None
        assert meta["n"] == n and meta["method"] == "faiss_kmeans"
        assert sum(meta["cluster_sizes"]) == 120 and len(meta["cluster_sizes"]) == n
        assert meta["image_size"] == 48 and meta["mask"]["region"] == "nose_to_chin"
        assert meta["encoder"]["ref"] == "mouth-autoencoder:v0"
        assert len(meta["corpus"]["manifest_sha256"]) == 64 and meta["code_version"]
    assert registry.aliases("memory-bank")["latest"] == registry.aliases("memory-bank")["n8"]


def test_build_records_the_artifacts_in_the_offline_wandb_run(built, lipmem_cli):
    tmp, _, _ = built
    runs = list((tmp / "run" / "wandb").glob("offline-run-*/run-*.wandb"))
    assert len(runs) == 1
    data = runs[0].read_bytes()
    for needle in (b"memory-bank", b"mouth-autoencoder", b"n4", b"n8"):
        assert needle in data, needle


def test_rebuild_from_existing_encoder_and_features_skips_those_stages(built, tiny_corpus, lipmem_cli):
    tmp, config, _ = built
    out = lipmem_cli(["bank", "build", "--config", str(config), f"--data.root={tiny_corpus}",
                  "--bank.encoder=mouth-autoencoder:latest",
                  f"--bank.features={tmp / 'run' / 'bank' / 'features.npz'}",
                  "--bank.method=sklearn_kmeans", "--bank.n=[8]",
                  f"--trainer.default_root_dir={tmp / 'rerun'}"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    summary = json.loads((tmp / "rerun" / "bank" / "summary.json").read_text())
    assert summary["stages"]["autoencoder"]["skipped"] and summary["stages"]["features"]["skipped"]
    registry = LocalRegistry(tmp / "registry")
    assert registry.resolve("memory-bank", "n8").metadata["method"] == "sklearn_kmeans"
    assert registry.versions("mouth-autoencoder") == [0]  # no new autoencoder was trained


def test_inspect_prints_metadata_and_draws_the_codes(built, lipmem_cli):
    tmp, _, _ = built
    out = lipmem_cli(["bank", "inspect", "memory-bank:n4", "--out", str(tmp / "inspect")], tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    assert '"method": "faiss_kmeans"' in out.stdout
    pngs = sorted(p.name for p in (tmp / "inspect").glob("*.png"))
    assert any("codes" in p for p in pngs) and any("cluster_sizes" in p for p in pngs), pngs


def test_inspect_of_a_missing_reference_fails_clearly(built, lipmem_cli):
    tmp, _, _ = built
    out = lipmem_cli(["bank", "inspect", "memory-bank:n999"], tmp)
    assert out.returncode != 0 and "n999" in out.stderr


def test_training_loads_the_bank_and_records_it(built, tiny_corpus, lipmem_cli):
    tmp, _, _ = built
    run = tmp / "fit"
    out = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
                  f"--trainer.default_root_dir={run}", "--model.memory.source=memory-bank:n{n}",
                  "--model.memory.init_from_autoencoder=true"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    assert "memory-bank:n8 -> memory-bank:v" in out.stderr + out.stdout
    assert "initialised from autoencoder mouth-autoencoder:v0" in out.stderr + out.stdout
    state = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu",
                       weights_only=True)["state_dict"]
    bank = load_bank("memory-bank:n8", LocalRegistry(tmp / "registry"))
    torch.testing.assert_close(state["generator.memory.codes"], bank.codes)
    wandb_log = next((run / "wandb").glob("offline-run-*/run-*.wandb")).read_bytes()
    assert bank.sha256.encode() in wandb_log  # the run's config names the exact bank file


def test_training_refuses_a_bank_built_for_another_mask(built, tiny_corpus, lipmem_cli):
    tmp, _, _ = built
    out = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
                  f"--trainer.default_root_dir={tmp / 'bad'}", "--data.mask_region=lips",
                  "--model.memory.source=memory-bank:n8"], tmp)
    assert out.returncode != 0
    assert "region='nose_to_chin'" in out.stderr and "region='lips'" in out.stderr
