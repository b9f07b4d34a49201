"""DDP done right, end to end: real `lipmem fit` subprocesses on CPU (gloo), probed per rank.

Each fit carries tests/ddp_probe.py's DDPProbe, which writes one JSON per rank at fit end
(batch counts, parameter digests, shards and clips read, local and logged val metric, calls
that write media or publish artifacts).
"""

from __future__ import annotations

import json
import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

TESTS = Path(__file__).resolve().parents[1]  # holds ddp_probe.py
REPO = TESTS.parent
pytestmark = pytest.mark.timeout(600)


def probe_args(out: Path) -> list[str]:
    return ["--trainer.callbacks+=ddp_probe.DDPProbe", f"--trainer.callbacks.out_dir={out}"]


def read_probes(out: Path, world: int) -> list[dict]:
    files = sorted(out.glob("rank*.json"))
    assert [f.name for f in files] == [f"rank{r}.json" for r in range(world)], files
    return [json.loads(f.read_text()) for f in files]


def shard_speakers(corpus: Path) -> dict[str, list[str]]:
    manifest = json.loads((corpus / "manifest.json").read_text())
    return {s["name"]: s["speakers"] for s in manifest["shards"] if s["split"] == "train"}


# ---------------------------------------------------------------------- one node, 2 ranks
@pytest.fixture(scope="module")
def uneven(corpus_factory, tmp_path_factory, lipmem_cli):
    """3 train shards (odd) for 2 ranks x 2 workers (4 slots), 3 val shards (2 + 1 per
    rank), 2 epochs of 3 batches per rank."""
    tmp = tmp_path_factory.mktemp("ddp_uneven")
    corpus = corpus_factory(tmp / "corpus", speakers=7, clips_per_speaker=1, clip_seconds=2.0,
                            val_speakers=3, test_speakers=1, clips_per_shard=1)
    assert len(shard_speakers(corpus)) == 3
    run, out = tmp / "run", tmp / "probe"
    periodic = tmp / "periodic.yaml"  # last.ckpt every 4 steps: a collective save per 2 batches
    periodic.write_text(yaml.safe_dump({"trainer": {"callbacks": [
        {"class_path": "lightning_modules.callbacks.RunCheckpoint",
         "init_args": {"monitor": "val/l1_mouth", "save_last": True,
                       "last_every_n_train_steps": 4}},
        {"class_path": "lightning_modules.callbacks.ModelArtifact"}]}}))
    result = lipmem_cli(
        ["fit", "--config", "configs/smoke.yaml", "--config", str(periodic),
         f"--data.root={corpus}",
         f"--trainer.default_root_dir={run}", "--trainer.accelerator=cpu",
         "--trainer.devices=2", "--trainer.strategy=ddp", "--data.num_workers=2",
         "--data.batches_per_epoch=3", "--trainer.max_epochs=2", "--trainer.max_steps=-1",
         *probe_args(out)],
        tmp, timeout=540, PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}")
    assert result.returncode == 0, result.stderr[-4000:]
    return tmp, run, read_probes(out, 2), result


def test_uneven_shards_finish_with_equal_batches_per_rank(uneven):
    _, run, probes, result = uneven
    assert "find_unused_parameters" not in result.stderr
    assert [p["world_size"] for p in probes] == [2, 2]
    assert [p["train_batches"] for p in probes] == [6, 6]  # 2 epochs x batches_per_epoch
    assert [p["global_step"] for p in probes] == [12, 12]  # 2 optimizer steps per batch
    # 3 shards for 4 rank-worker slots: every rank still got shards to read
    assert all(p["train_shards"] for p in probes)
    assert {p["checkpoint_io"] for p in probes} == {"AtomicCheckpointIO"}
    last = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert last["global_step"] == 12


def test_parameters_and_memory_codes_are_identical_across_ranks(uneven):
    _, _, (rank0, rank1), _ = uneven
    for group in ("generator", "discriminator", "memory_codes"):
        assert rank0["digest"][group] == rank1["digest"][group], group
    # the ranks trained on different data (else equality would prove nothing)
    assert rank0["train_shards"] != rank1["train_shards"]


def test_validation_metrics_are_synced_over_ranks(uneven):
    _, _, probes, _ = uneven
    local = [p["val_local"]["sum"] / p["val_local"]["weight"] for p in probes]
    assert local[0] != pytest.approx(local[1])  # different val shards per rank
    # 3 val shards: rank 0 reads 2 clips, rank 1 one; the uneven val pass finishes and the
    # logged value weighs every window once (not a mean of the two ranks' means)
    assert probes[0]["val_local"]["weight"] == 2 * probes[1]["val_local"]["weight"]
    pooled = sum(p["val_local"]["sum"] for p in probes) / sum(p["val_local"]["weight"]
                                                              for p in probes)
    for p in probes:  # what every rank logged is the mean over both ranks' windows
        assert p["val_logged"] == pytest.approx(pooled, rel=1e-5)


def test_only_rank_zero_writes_media_and_publishes(uneven):
    tmp, run, (rank0, rank1), _ = uneven
    assert rank1["calls"] == {"save_png": 0, "publish": 0}
    assert rank0["calls"]["save_png"] > 0 and rank0["calls"]["publish"] > 0
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
    models = [p for p in (tmp / "registry").iterdir() if p.name.startswith("model-")]
    assert len(models) == 1
    assert (run / "samples" / "val_latest.png").is_file()


# ---------------------------------------------------------------------- two "nodes"
def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_two_node_torchrun_rendezvous_trains_disjoint_shards(corpus_factory, tmp_path):
    """`torchrun --nnodes=2` on 127.0.0.1, one process per "node": Lightning picks up the
    TorchElastic environment, and each node reads its own half of the train shards."""
    corpus = corpus_factory(tmp_path / "corpus", speakers=6, clips_per_speaker=1,
                            clip_seconds=2.0, val_speakers=1, test_speakers=1, clips_per_shard=1)
    speakers = shard_speakers(corpus)
    assert len(speakers) == 4
    run, out, home = tmp_path / "run", tmp_path / "probe", tmp_path / "home"
    home.mkdir()
    env = dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(home),
               LIPMEM_REGISTRY=str(tmp_path / "registry"),
               PYTHONPATH=f"{REPO}{os.pathsep}{TESTS}")
    port = free_port()
    torchrun = [sys.executable, "-m", "torch.distributed.run", "--nnodes=2",
                "--nproc_per_node=1", "--master_addr=127.0.0.1", f"--master_port={port}"]
    # 2 shards x 1 clip x 4 windows / batch 4 = 2 batches: one pass over each node's shards
    fit = ["-m", "lightning_modules.cli.main", "fit", "--config", "configs/smoke.yaml",
           f"--data.root={corpus}", f"--trainer.default_root_dir={run}",
           "--trainer.accelerator=cpu", "--trainer.devices=1", "--trainer.num_nodes=2",
           "--trainer.strategy=ddp", "--data.num_workers=0", "--data.shuffle_buffer=0",
           "--data.batches_per_epoch=2", "--trainer.max_steps=-1", *probe_args(out)]
    nodes = [subprocess.Popen([*torchrun, f"--node_rank={rank}", *fit], cwd=REPO, env=env,
                              stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
             for rank in (0, 1)]
    try:
        logs = [node.communicate(timeout=540)[0] for node in nodes]
    finally:
        for node in nodes:
            if node.poll() is None:
                node.kill()
    assert [node.returncode for node in nodes] == [0, 0], logs[0][-3000:] + logs[1][-3000:]
    probes = read_probes(out, 2)
    assert [(p["node_rank"], p["num_nodes"], p["world_size"]) for p in probes] == \
        [(0, 2, 2), (1, 2, 2)]
    assert [p["train_batches"] for p in probes] == [2, 2]
    shards = [set(p["train_shards"]) for p in probes]
    assert shards[0].isdisjoint(shards[1]) and shards[0] | shards[1] == set(speakers)
    for probe, mine in zip(probes, shards):  # the clips actually trained on
        read = {key.split("_")[0] for key in probe["keys"]}
        assert read == {spk for shard in mine for spk in speakers[shard]}
    assert probes[0]["digest"] == {**probes[1]["digest"],
                                   "norm_buffers": probes[0]["digest"]["norm_buffers"]}
    assert len(list((run / "wandb").glob("offline-run-*"))) == 1
