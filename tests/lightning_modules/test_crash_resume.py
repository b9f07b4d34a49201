"""Crashes: SIGKILL a real `lipmem fit` mid-epoch and resume it with `--ckpt_path last`;
SIGKILL a real `lipmem bank build` and find no half-published bank.

The periodic checkpoint is RunCheckpoint's `last_every_n_train_steps` (configs/default.yaml;
the GAN counts 2 optimizer steps per batch). Resume restores weights, both optimisers,
step/epoch counters and the W&B run id; the data stream restarts (an IterableDataset has no
position to restore), so weights are not compared bitwise with the uninterrupted run.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch
import yaml

from lightning_modules.experiments.sweeps.wandb_runs import find_runs, iter_records
from memory_bank.artifacts.registry import ArtifactNotFound, LocalRegistry

REPO = Path(__file__).resolve().parents[2]
_SCRIPT = Path(sys.executable).parent / "lipmem"  # as tests/conftest.py: the console script
LIPMEM = [str(_SCRIPT)] if _SCRIPT.exists() else [sys.executable, "-m", "lightning_modules.cli.main"]
pytestmark = pytest.mark.timeout(600)

BATCHES = 6          # one epoch of 6 batches = 12 optimizer steps
EVERY = 4            # last.ckpt every 4 optimizer steps (2 batches): at steps 4 and 8

PERIODIC = {"trainer": {"callbacks": [
    {"class_path": "lightning_modules.callbacks.RunCheckpoint",
     "init_args": {"filename": "epoch{epoch:03d}-l1_mouth{val/l1_mouth:.4f}",
                   "auto_insert_metric_name": False, "monitor": "val/l1_mouth", "mode": "min",
                   "save_top_k": 1, "save_last": True, "last_every_n_train_steps": EVERY}},
    {"class_path": "lightning_modules.callbacks.ModelArtifact"},
]}}


def env_for(tmp: Path) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(home),
                PYTHONPATH=str(REPO), LIPMEM_REGISTRY=str(tmp / "registry"))


def start(args: list[str], tmp: Path, log: Path) -> subprocess.Popen:
    """`lipmem ARGS` in its own process group (so a kill takes its loader workers too)."""
    return subprocess.Popen(LIPMEM + args, cwd=REPO, env=env_for(tmp), stdout=log.open("w"),
                            stderr=subprocess.STDOUT, start_new_session=True)


def finish(proc: subprocess.Popen, log: Path, timeout: int = 540) -> None:
    try:
        proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
    assert proc.returncode == 0, log.read_text()[-4000:]


def descendants(pid: int) -> list[int]:
    """Every process below `pid` (from /proc; W&B's service, loader workers)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        parents[int(stat.parent.name)] = int(fields[1])
    found, frontier = [], [pid]
    while frontier:
        children = [p for p, parent in parents.items() if parent in frontier]
        found += children
        frontier = children
    return found


def alive(pid: int) -> bool:
    try:
        return Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0] != "Z"
    except (OSError, IndexError):
        return False


def kill_when(proc: subprocess.Popen, ready, log: Path, timeout: float = 480) -> None:
    """SIGKILL the job's main process as soon as `ready()` is true (its helper processes,
    such as W&B's service, see it die and wrap up on their own, as after an OOM kill)."""
    deadline = time.monotonic() + timeout
    while not ready():
        assert proc.poll() is None, "the job ended before it could be killed:\n" + \
            log.read_text()[-3000:]
        assert time.monotonic() < deadline, "the kill point never came"
        time.sleep(0.02)
    helpers = descendants(proc.pid)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert proc.returncode == -signal.SIGKILL
    wait_until = time.monotonic() + 60
    while helpers and time.monotonic() < wait_until:
        helpers = [p for p in helpers if alive(p)]
        time.sleep(0.2)
    for pid in helpers:  # still there after a minute: do not leave them behind
        try:
            os.kill(pid, signal.SIGKILL)
        except ProcessLookupError:
            pass


def load(path: Path) -> dict:
    return torch.load(path, map_location="cpu", weights_only=True)


def train_steps(run_dir: Path) -> list[int]:
    """`trainer/global_step` of every W&B history row holding a train loss."""
    from wandb.proto import wandb_internal_pb2 as pb

    steps = []
    for payload in iter_records(next(run_dir.glob("run-*.wandb"))):
        record = pb.Record()
        record.ParseFromString(payload)
        if record.WhichOneof("record_type") != "history":
            continue
        row = {"/".join(i.nested_key) or i.key: json.loads(i.value_json)
               for i in record.history.item}
        if "train/l1" in row:
            steps.append(int(row["trainer/global_step"]))
    return steps


def adam_steps(checkpoint: dict) -> list[int]:
    """Adam's own step count per optimiser (equal over its parameters)."""
    counts = []
    for state in checkpoint["optimizer_states"]:
        values = {int(s["step"]) for s in state["state"].values()}
        assert len(values) == 1, values
        counts.append(values.pop())
    return counts


@pytest.fixture(scope="module")
def crashed_and_resumed(corpus_factory, tmp_path_factory):
    """Run A: uninterrupted. Run B: killed right after a mid-epoch last.ckpt, then resumed.
    A and B's first part run side by side (the machine has two cores)."""
    tmp = tmp_path_factory.mktemp("crash_resume")
    corpus = corpus_factory(tmp / "corpus", speakers=4, clips_per_speaker=1, clip_seconds=2.0,
                            val_speakers=1, test_speakers=1, clips_per_shard=1)
    overlay = tmp / "periodic.yaml"
    overlay.write_text(yaml.safe_dump(PERIODIC))

    def fit(run: Path, *extra: str) -> list[str]:
        return ["fit", "--config", "configs/smoke.yaml", "--config", str(overlay),
                f"--data.root={corpus}", f"--trainer.default_root_dir={run}",
                f"--data.batches_per_epoch={BATCHES}", "--trainer.max_steps=-1", *extra]

    a_tmp, b_tmp = tmp / "A", tmp / "B"
    for folder in (a_tmp, b_tmp):
        folder.mkdir()
    a_run, b_run = a_tmp / "run", b_tmp / "run"
    a = start(fit(a_run), a_tmp, a_tmp / "fit.log")
    b = start(fit(b_run), b_tmp, b_tmp / "fit.log")
    last = b_run / "checkpoints" / "last.ckpt"
    kill_when(b, last.is_file, b_tmp / "fit.log")
    killed = {"files": sorted(p.name for p in last.parent.iterdir()), "last": load(last)}
    resumed = start(fit(b_run, "--ckpt_path=last"), b_tmp, b_tmp / "resume.log")
    finish(resumed, b_tmp / "resume.log")
    finish(a, a_tmp / "fit.log")
    return a_run, b_run, killed


def test_kill_leaves_only_complete_checkpoints(crashed_and_resumed):
    _, _, killed = crashed_and_resumed
    step = killed["last"]["global_step"]
    assert 0 < step < 2 * BATCHES and step % EVERY == 0  # a periodic, mid-epoch checkpoint
    # the only checkpoint is the whole periodic one (loaded above); AtomicCheckpointIO's
    # temp files are hidden `.last.ckpt.*.tmp` and never end in .ckpt
    ckpts = [n for n in killed["files"] if n.endswith(".ckpt")]
    assert ckpts == ["last.ckpt"], killed["files"]


def test_resume_reaches_the_uninterrupted_step_count(crashed_and_resumed):
    a_run, b_run, killed = crashed_and_resumed
    a, b = load(a_run / "checkpoints" / "last.ckpt"), load(b_run / "checkpoints" / "last.ckpt")
    assert a["global_step"] == b["global_step"] == 2 * BATCHES
    assert a["epoch"] == b["epoch"]
    # Both optimisers came back from the checkpoint: Adam counted every batch of the whole
    # run, not just the ones after the resume
    assert adam_steps(a) == adam_steps(b) == [BATCHES, BATCHES]
    assert adam_steps(killed["last"]) == [killed["last"]["global_step"] // 2] * 2
    assert a["lr_schedulers"] == b["lr_schedulers"]  # none configured; nothing lost either
    # the epoch-end best checkpoint is still written beside the periodic last.ckpt
    for run in (a_run, b_run):
        assert len(list((run / "checkpoints").glob("epoch000-*.ckpt"))) == 1


def test_resume_continues_the_wandb_run_and_its_step_sequence(crashed_and_resumed):
    a_run, b_run, killed = crashed_and_resumed
    first, second = find_runs(b_run)  # the killed run's folder, then the resumed one's
    assert first.name.rsplit("-", 1)[-1] == second.name.rsplit("-", 1)[-1]  # one W&B run id
    resumed_at = killed["last"]["global_step"] // 2  # batches done at the checkpoint
    uninterrupted = train_steps(next(iter(find_runs(a_run))))
    assert uninterrupted == list(range(BATCHES))
    before, after = train_steps(first), train_steps(second)
    assert after == list(range(resumed_at, BATCHES))  # continues where the checkpoint was
    # The killed run keeps only the rows W&B's service had written when the kill came (often
    # none: the history is buffered; the checkpointed training state is what survives), and
    # they are a clean prefix of the sequence.
    assert before == list(range(len(before)))


def test_a_truncated_checkpoint_is_refused_naming_the_file(crashed_and_resumed, tmp_path):
    """What a kill during a non-atomic write would leave: never loaded as valid."""
    from lightning_modules.checkpoints.digest import load_checkpoint_safely

    _, b_run, _ = crashed_and_resumed
    data = (b_run / "checkpoints" / "last.ckpt").read_bytes()
    cut = tmp_path / "last.ckpt"
    cut.write_bytes(data[: len(data) // 2])
    with pytest.raises(ValueError, match="last.ckpt"):
        load_checkpoint_safely(cut, warn_missing=False)


def test_a_kill_during_a_checkpoint_write_keeps_the_previous_file(tmp_path, monkeypatch):
    """AtomicCheckpointIO (configs/default.yaml trainer.plugins) writes beside the target
    and renames; Lightning's own write copies from $TMPDIR into place when $TMPDIR is on
    another filesystem, and a kill mid-copy leaves a truncated last.ckpt."""
    import lightning_modules.checkpoints.atomic_io as io_module
    from lightning_modules.checkpoints.atomic_io import AtomicCheckpointIO

    path = tmp_path / "checkpoints" / "last.ckpt"
    AtomicCheckpointIO().save_checkpoint({"global_step": 4, "w": torch.zeros(4096)}, path)
    real_save = torch.save

    def killed_halfway(obj, fh):  # the bytes so far reach the disk, then the process dies
        real_save(obj, fh)
        fh.truncate(fh.tell() // 2)
        fh.flush()
        raise KeyboardInterrupt

    monkeypatch.setattr(io_module.torch, "save", killed_halfway)
    with pytest.raises(KeyboardInterrupt):
        AtomicCheckpointIO().save_checkpoint({"global_step": 8, "w": torch.ones(4096)}, path)
    monkeypatch.undo()
    assert load(path)["global_step"] == 4  # the previous checkpoint, whole
    assert sorted(p.name for p in path.parent.iterdir()) == ["last.ckpt"]  # no temp left


# ---------------------------------------------------------------------- bank build
TINY_BANK = {
    "trainer": {"max_epochs": 1, "max_steps": 40, "limit_val_batches": 1,
                "accelerator": "cpu", "log_every_n_steps": 1},
    "model": {"net": {"class_path": "lightning_modules.nets.MouthAutoencoderNet",
                      "init_args": {"embed_dim": 64, "audio_dim": 64, "base_channels": 8,
                                    "max_channels": 64, "cond_channels": 8}},
              "lpips_backbone": "random"},
    "data": {"image_size": 48, "batch_size": 8, "num_workers": 0, "windows_per_clip": 4,
             "val_windows_per_clip": 2, "batches_per_epoch": 40},
    "bank": {"frames": 60, "n": [4]},
}


def test_killed_bank_build_leaves_no_resolvable_bank(tiny_corpus, tmp_path):
    config = tmp_path / "tiny_bank.yaml"
    config.write_text(yaml.safe_dump(TINY_BANK))
    run, log = tmp_path / "run", tmp_path / "bank.log"
    proc = start(["bank", "build", "--config", str(config), f"--data.root={tiny_corpus}",
                  f"--trainer.default_root_dir={run}"], tmp_path, log)
    # killed in the autoencoder fit (its W&B run has started), long before the publish
    kill_when(proc, lambda: any((run / "wandb").glob("*run-*/run-*.wandb")), log)
    registry = LocalRegistry(tmp_path / "registry")
    with pytest.raises(ArtifactNotFound):
        registry.resolve("memory-bank", "latest")
    with pytest.raises(ArtifactNotFound):
        registry.resolve("memory-bank", "n4")
