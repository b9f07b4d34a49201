"""SIGTERM / SIGINT: a real `lipmem fit` saves last.ckpt and exits 143 / 130, and the sweep
and ablation runners record a stopped job as interrupted (not finished) and run it again.

The sweep and ablation tests use a stand-in job (a script that waits for a signal) so that
only the runners' handling is under test; the fit test is the real CLI on the tiny corpus.
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

from lightning_modules.checkpoints.digest import verify_digest
from tests.conftest import LIPMEM, REPO

pytestmark = pytest.mark.timeout(600)


def default_sigint(argv: list[str]) -> list[str]:
    """``argv`` exec'd with SIGINT as a terminal would deliver it, even when this test
    process was started in the background (where SIGINT is inherited as ignored)."""
    wrapper = ("import os, signal, sys; signal.signal(signal.SIGINT, signal.SIG_DFL); "
               "os.execv(sys.argv[1], sys.argv[1:])")
    return [sys.executable, "-c", wrapper, *argv]


def env_for(tmp: Path, **extra: str) -> dict[str, str]:
    home = tmp / "home"
    home.mkdir(exist_ok=True)
    return dict(os.environ, WANDB_MODE="offline", WANDB_SILENT="true", HOME=str(home),
                PYTHONPATH=str(REPO), LIPMEM_REGISTRY=str(tmp / "registry"), **extra)


def wait_for(path: Path, proc: subprocess.Popen, log: Path | None = None,
             timeout: float = 300) -> None:
    deadline = time.monotonic() + timeout
    while not path.exists():
        if proc.poll() is not None:
            text = log.read_text()[-4000:] if log else ""
            raise AssertionError(f"exited with {proc.returncode} before {path.name}: {text}")
        if time.monotonic() > deadline:
            raise AssertionError(f"{path} never appeared")
        time.sleep(0.2)


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait()


# --- lipmem fit ----------------------------------------------------------------------------

@pytest.mark.parametrize("signum, code", [(signal.SIGTERM, 143), (signal.SIGINT, 130)],
                         ids=["SIGTERM", "SIGINT"])
def test_fit_saves_last_ckpt_and_exits_128_plus_the_signal(tiny_corpus, tmp_path, signum, code):
    """The reported case: SIGTERM gave exit 0, so runners took the fit for finished. Here no
    periodic or epoch-end save can happen first (1000 batches per epoch, no step interval):
    last.ckpt exists only because the stop saved it."""
    marker, run = tmp_path / "trained", tmp_path / "run"
    overlay = tmp_path / "overlay.yaml"
    overlay.write_text(yaml.safe_dump({
        "trainer": {"max_steps": 100_000, "max_epochs": 100, "callbacks": [
            {"class_path": "lightning_modules.callbacks.RunCheckpoint",
             "init_args": {"monitor": "val/l1_mouth", "mode": "min", "save_top_k": 1,
                           "save_last": True}},
            {"class_path": "tests.lightning_modules.step_marker.StepMarker",
             "init_args": {"path": str(marker), "after_batches": 2}}]},
        "data": {"batches_per_epoch": 1000}}))
    log = tmp_path / "fit.log"
    proc = subprocess.Popen(
        default_sigint(LIPMEM + ["fit", "--config", "configs/smoke.yaml", "--config",
                                 str(overlay), f"--data.root={tiny_corpus}",
                                 f"--trainer.default_root_dir={run}",
                                 "--media.video_seconds=0"]),
        cwd=REPO, env=env_for(tmp_path), stdout=log.open("w"), stderr=subprocess.STDOUT,
        start_new_session=True)
    try:
        wait_for(marker, proc, log)
        proc.send_signal(signum)
        proc.wait(timeout=300)
    finally:
        stop(proc)
    assert proc.returncode == code, log.read_text()[-4000:]
    last = run / "checkpoints" / "last.ckpt"
    assert last.is_file() and verify_digest(last), log.read_text()[-4000:]
    checkpoint = torch.load(last, map_location="cpu", weights_only=True)
    assert checkpoint["global_step"] >= int(marker.read_text()) > 0  # the step it stopped at
    assert "Traceback" not in log.read_text()


# --- stand-in jobs for the runners ---------------------------------------------------------

JOB = '''
import os, pathlib, signal, sys, time
root = next(a.split("=", 1)[1] for a in sys.argv if a.startswith("--trainer.default_root_dir="))
root = pathlib.Path(root)
root.mkdir(parents=True, exist_ok=True)
with open(root / "runs.txt", "a") as fh:
    fh.write("run\\n")
if pathlib.Path(os.environ["JOB_CONTROL"]).read_text().strip() != "wait" or "--a=2" in sys.argv:
    sys.exit(0)

def stopped(signum, frame):
    (root / "stopped").write_text(str(signum))
    sys.exit(128 + signum)

signal.signal(signal.SIGTERM, stopped)
signal.signal(signal.SIGINT, stopped)
(root / "started").write_text(str(os.getpid()))
while True:
    time.sleep(0.05)
'''


@pytest.fixture
def job(tmp_path) -> dict[str, Path]:
    script = tmp_path / "job.py"
    script.write_text(JOB)
    control = tmp_path / "control"
    control.write_text("wait")
    return {"script": script, "control": control}


def sweep_file(tmp_path: Path, script: Path) -> Path:
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump({
        "program": str(script), "method": "grid", "parameters": {"a": {"values": [1, 2]}},
        "command": ["${interpreter}", "${program}", "${args}"]}))
    return path


def run_sweep(tmp_path: Path, job: dict[str, Path]) -> subprocess.Popen:
    return subprocess.Popen(
        default_sigint(LIPMEM + ["sweep", "run", str(sweep_file(tmp_path, job["script"])),
                                 "--out", str(tmp_path / "sweeps"), "--sweep-id", "s1"]),
        cwd=REPO, env=env_for(tmp_path, JOB_CONTROL=str(job["control"])),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)


def trials(tmp_path: Path) -> dict[str, dict]:
    return json.loads((tmp_path / "sweeps" / "s1" / "sweep.json").read_text())["trials"]


@pytest.mark.parametrize("signum", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_a_signal_to_the_sweep_runner_reaches_the_trial_and_it_is_rerun(tmp_path, job, signum):
    trial = tmp_path / "sweeps" / "s1" / "trial-000"
    proc = run_sweep(tmp_path, job)
    try:
        wait_for(trial / "started", proc)
        proc.send_signal(signum)
        out, _ = proc.communicate(timeout=120)
    finally:
        stop(proc)
        if (trial / "started").exists() and not (trial / "stopped").exists():
            os.kill(int((trial / "started").read_text()), signal.SIGKILL)
    assert proc.returncode == 128 + signum, out
    assert (trial / "stopped").read_text() == str(int(signum))  # passed on, once
    recorded = trials(tmp_path)
    assert list(recorded) == ["trial-000"]  # the runner stopped too
    assert recorded["trial-000"]["status"] == "interrupted"
    assert recorded["trial-000"]["exit_code"] == 128 + signum
    job["control"].write_text("finish")
    again = run_sweep(tmp_path, job)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert {n: t["status"] for n, t in trials(tmp_path).items()} == {
        "trial-000": "finished", "trial-001": "finished"}
    assert (trial / "runs.txt").read_text().count("run") == 2


def test_a_trial_stopped_by_its_own_signal_is_recorded_interrupted(tmp_path, job):
    """SIGTERM to the job alone (a scheduler, an OOM guard): not finished, run again."""
    trial = tmp_path / "sweeps" / "s1" / "trial-000"
    proc = run_sweep(tmp_path, job)
    try:
        wait_for(trial / "started", proc)
        os.kill(int((trial / "started").read_text()), signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        stop(proc)
    assert proc.returncode == 1, out  # one trial did not finish
    recorded = trials(tmp_path)
    assert recorded["trial-000"]["status"] == "interrupted"
    assert recorded["trial-001"]["status"] == "finished"
    job["control"].write_text("finish")
    again = run_sweep(tmp_path, job)
    out, _ = again.communicate(timeout=120)
    assert again.returncode == 0, out
    assert "trial-001: finished earlier" in out
    assert (trial / "runs.txt").read_text().count("run") == 2


def test_old_state_without_status_keeps_its_meaning():
    from lightning_modules.experiments.sweeps.state import finished

    state = {"trials": {"a": {"exit_code": 0}, "b": {"exit_code": 143},
                        "c": {"exit_code": 0, "status": "interrupted"}}}
    assert list(finished(state)) == ["a"]


# --- ablation runner -----------------------------------------------------------------------

ABLATION_JOB = '''
import sys
from pathlib import Path
from lightning_modules.experiments.ablation.runner import JobInterrupted, run_job
root = Path(sys.argv[1])
try:
    run_job([sys.executable, sys.argv[2], f"--trainer.default_root_dir={root}"], root, "fit",
            dict(__import__("os").environ))
except JobInterrupted as err:
    print("interrupted", err.received)
    sys.exit(3)
print("finished")
'''


def test_the_ablation_runner_passes_a_signal_on_and_records_the_job_interrupted(tmp_path, job):
    root = tmp_path / "run"
    proc = subprocess.Popen(
        default_sigint([sys.executable, "-c", ABLATION_JOB, str(root), str(job["script"])]),
        cwd=REPO, env=env_for(tmp_path, JOB_CONTROL=str(job["control"])),
        stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True)
    try:
        wait_for(root / "started", proc)
        proc.send_signal(signal.SIGTERM)
        out, _ = proc.communicate(timeout=120)
    finally:
        stop(proc)
        if (root / "started").exists() and not (root / "stopped").exists():
            os.kill(int((root / "started").read_text()), signal.SIGKILL)
    assert (proc.returncode, out.strip().splitlines()[-1]) == (3, "interrupted 15"), out
    assert (root / "stopped").read_text() == "15"


def test_an_interrupted_ablation_run_is_reported_and_not_finished(tiny_corpus, tmp_path,
                                                                   monkeypatch, capsys):
    from lightning_modules.experiments.ablation import runner as ablation
    from lightning_modules.experiments.ablation.commands import Layout
    from lightning_modules.experiments.ablation.runner import (
        RESULT_JSON,
        JobInterrupted,
        run_ablation,
    )
    from tests.lightning_modules.experiments.test_ablation import write_spec

    spec = write_spec(tmp_path, data=str(tiny_corpus), synth=False)
    layout = Layout(tmp_path / "out")
    for random in (False, True):  # banks built earlier
        layout.bank_summary(random).parent.mkdir(parents=True)
        layout.bank_summary(random).write_text("{}")
    calls = []

    def one(self, run):
        calls.append(run.name)
        if len(calls) == 1:
            raise JobInterrupted(f"{run.name} fit exited with -15", None)  # killed alone
        if len(calls) == 2:
            raise JobInterrupted(f"{run.name} fit exited with 143", signal.SIGTERM)  # runner
        raise AssertionError("the runner went on after it was asked to stop")

    monkeypatch.setattr(ablation.AblationRunner, "one", one)
    monkeypatch.setattr(ablation.AblationRunner, "check_eval", lambda self: None)
    code = run_ablation(["run", "--config", str(spec), "--out", str(layout.out),
                         "--only", "softmax-n80"])
    assert code == 143 and len(calls) == 2
    report = json.loads((layout.out / "ablation.json").read_text())
    assert report["interrupted"] == sorted(calls) and report["failed"] == []
    assert report["finished"] == 0
    assert not any((layout.out / "runs" / name / RESULT_JSON).exists() for name in calls)
    assert "INTERRUPTED (a rerun runs it again)" in capsys.readouterr().err
