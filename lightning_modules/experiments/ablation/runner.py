"""`lipmem ablation run --config FILE --out DIR [--dry-run] [--only NAME]`.

Builds the banks once (one autoencoder + feature matrix; k-means centres for every n, random
corpus members from the same features), then one real `lipmem fit` subprocess and one
`lipmem eval` per (variant, n, seed), and aggregates mean +- sd per metric per arm into
DIR/ablation.json + ablation.md (rewritten after every run). Resumable: a run with a
result.json is skipped, a finished fit (fit.json) is not repeated when only its eval failed,
and finished bank builds (their summary.json) are reused. A job stopped by SIGTERM / SIGINT
is recorded as interrupted and run again next time; a signal to the runner is passed on to
the running job, and the runner stops once it has ended (exit 143 / 130).
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import re
import shlex
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from datamodules.atomic_files import atomic_path, write_json_atomic
from lightning_modules.experiments.ablation.commands import (
    CHECKPOINT,
    EVAL_JSON,
    Layout,
    bank_command,
    eval_command,
    fit_command,
    random_bank_command,
    synth_command,
)
from lightning_modules.experiments.ablation.report import aggregate, markdown
from lightning_modules.experiments.ablation.spec import (
    AblationConfigError,
    AblationSpec,
    Run,
    describe,
    load_spec,
)
from lightning_modules.experiments.sweeps.command import resolve_executable
from lightning_modules.experiments.sweeps.runner import tail, trial_env
from lightning_modules.experiments.sweeps.wandb_runs import find_runs, read_run
from lightning_modules.training.signals import run_forwarding_signals, was_interrupted

RESULT_JSON = "result.json"
FIT_JSON = "fit.json"
REGISTRY_REF = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*:v\d+")


class JobFailed(RuntimeError):
    """A subprocess exited non-zero; the message says which and where its logs are."""


class JobInterrupted(JobFailed):
    """A subprocess stopped by SIGTERM / SIGINT (not finished: a rerun runs it again);
    ``received`` is the signal when it was this runner that was asked to stop."""

    def __init__(self, message: str, received: int | None) -> None:
        super().__init__(message)
        self.received = received


def hardware() -> dict[str, Any]:
    import torch

    info: dict[str, Any] = {"machine": platform.machine(), "processor": platform.processor(),
                            "cpu_count": os.cpu_count(), "python": platform.python_version(),
                            "torch": torch.__version__, "cuda": torch.cuda.is_available()}
    if info["cuda"]:
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
    where = ", ".join(info["gpus"]) if info.get("gpus") else "no GPU"
    info["summary"] = (f"{info['cpu_count']} CPU cores ({info['machine']}), {where}, "
                       f"torch {info['torch']}, Python {info['python']}")
    return info


def run_job(argv: list[str], folder: Path, label: str, env: dict[str, str]) -> float:
    """Run one subprocess with its output in folder/LABEL.{stdout,stderr}.log; seconds taken."""
    folder.mkdir(parents=True, exist_ok=True)
    (folder / f"{label}.command").write_text(shlex.join(argv) + "\n")
    out, err = folder / f"{label}.stdout.log", folder / f"{label}.stderr.log"
    start = time.monotonic()
    with open(out, "w") as o, open(err, "w") as e:
        code, received = run_forwarding_signals(argv, stdout=o, stderr=e, env=env)
    message = (f"{label} exited with {code}: {shlex.join(argv)}\n  logs: {out}, {err}\n"
               f"  stderr tail:\n{tail(err, 1500)}")
    if received is not None or was_interrupted(code):  # not finished, whatever the code
        raise JobInterrupted(message, received)
    if code != 0:
        raise JobFailed(message)
    return time.monotonic() - start


def link_best_checkpoint(run_dir: Path) -> Path:
    """Expose the fit's one top-k checkpoint (RunCheckpoint, save_top_k=1) as CHECKPOINT,
    sha-checked, with its own sidecar, so the eval command can be written down in advance."""
    from lightning_modules.checkpoints.digest import verify_digest, write_digest

    target = run_dir / CHECKPOINT
    folder = target.parent
    candidates = sorted(p for p in folder.glob("*.ckpt") if p.name not in ("last.ckpt", target.name))
    if len(candidates) != 1:
        raise JobFailed(f"{folder}: expected exactly one top-k checkpoint besides last.ckpt "
                        f"(save_top_k: 1), found {[p.name for p in candidates]}")
    verify_digest(candidates[0])
    with atomic_path(target, suffix=".ckpt") as tmp:
        tmp.unlink()
        try:
            os.link(candidates[0], tmp)
        except OSError:
            shutil.copyfile(candidates[0], tmp)
    write_digest(target)
    return target


def fit_metrics(run_dir: Path) -> dict[str, float]:
    """The fit's final validation metrics (val/*) from the W&B run it wrote, if any."""
    runs = find_runs(run_dir)
    if not runs:
        return {}
    try:
        summary = read_run(runs[-1]).summary
    except (OSError, ValueError):
        return {}
    return {k: float(v) for k, v in summary.items()
            if k.startswith("val/") and isinstance(v, (int, float)) and not isinstance(v, bool)}


def bank_inputs(layout: Layout) -> tuple[str, str]:
    """The autoencoder reference and feature file the centre banks were built from, read
    from the bank build's summary.json. They become arguments of the next command, so they
    must be what that build writes (a registry `name:vN`, a file in the bank folder):
    AblationConfigError naming the file otherwise."""
    path = layout.bank_summary()
    try:
        stages = json.loads(path.read_text())["stages"]
        encoder, features = stages["autoencoder"]["ref"], stages["features"]["path"]
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise AblationConfigError(f"{path}: no stages.autoencoder.ref / stages.features.path "
                                  f"({type(exc).__name__}: {exc}); delete {layout.bank_dir} to "
                                  "build the banks again") from exc
    if not isinstance(encoder, str) or not REGISTRY_REF.fullmatch(encoder):
        raise AblationConfigError(f"{path}: stages.autoencoder.ref={encoder!r} is not a "
                                  "registry reference name:vN")
    inside = isinstance(features, str) and Path(features).resolve().is_relative_to(
        layout.bank_dir.resolve())
    if not inside or not Path(features).is_file():
        raise AblationConfigError(f"{path}: stages.features.path={features!r} is not a file "
                                  f"under {layout.bank_dir}")
    return encoder, features


class AblationRunner:
    def __init__(self, spec: AblationSpec, out: Path, only: list[str], dry_run: bool,
                 command: str) -> None:
        self.spec, self.dry_run, self.command = spec, dry_run, command
        self.layout = Layout(out.resolve())
        self.runs = [r for r in spec.runs if not only or r.variant in only or r.name in only
                     or r.arm in only]
        if only and not self.runs:
            raise AblationConfigError(f"--only {only}: matches no run; variants are "
                                      f"{sorted(spec.variants)}, runs look like "
                                      f"{spec.runs[0].name}")
        self.env = {**trial_env(), "LIPMEM_REGISTRY": str(self.layout.registry)}

    # ------------------------------------------------------------------ stages
    def show(self, label: str, argv: list[str]) -> None:
        print(f"{label}: {shlex.join(argv)}", flush=True)

    def check_eval(self) -> None:
        """Fail in seconds, not after the first fit, when the eval command cannot run."""
        argv = resolve_executable([*self.spec.eval_command, "--help"])
        done = subprocess.run(argv, capture_output=True, text=True, env=self.env, check=False)
        if done.returncode != 0:
            raise AblationConfigError(
                f"{self.spec.path}: eval.command: `{shlex.join(argv)}` exited with "
                f"{done.returncode}: {done.stderr.strip()[-500:]}")

    def corpus(self) -> None:
        manifest = Path(self.spec.data) / "manifest.json"
        if manifest.is_file():
            return
        if self.spec.synth is None:
            raise AblationConfigError(f"{self.spec.path}: data: {manifest} does not exist "
                                      "(make the corpus first, or set synth: true)")
        argv = synth_command(self.spec)
        self.show("corpus", argv)
        if not self.dry_run:
            run_job(argv, self.layout.out, "synth", self.env)

    def banks(self) -> None:
        layout, spec = self.layout, self.spec
        needed = {r.bank_ref for r in self.runs}
        if layout.bank_summary().is_file():
            print(f"banks: built earlier ({layout.bank_summary()})")
        else:
            argv = bank_command(spec, layout)
            self.show("bank", argv)
            if not self.dry_run:
                seconds = run_job(argv, layout.bank_dir, "bank", self.env)
                print(f"bank: done in {seconds:.0f} s", flush=True)
        if not spec.bank.random_n or not any(ref.endswith("-random") for ref in needed):
            return
        if layout.bank_summary(random=True).is_file():
            print(f"random-member banks: built earlier ({layout.bank_summary(random=True)})")
            return
        if self.dry_run:
            encoder, features = (f"<autoencoder ref from {layout.bank_summary()}>",
                                 str(layout.bank_dir / "bank" / "features.npz"))
        else:
            encoder, features = bank_inputs(layout)
        argv = random_bank_command(spec, layout, encoder, features)
        self.show("bank-random", argv)
        if not self.dry_run:
            seconds = run_job(argv, layout.random_bank_dir, "bank", self.env)
            print(f"bank-random: done in {seconds:.0f} s", flush=True)

    def one(self, run: Run) -> dict[str, Any] | None:
        """Fit (unless fit.json says it finished) and evaluate one run; its result."""
        run_dir = self.layout.run_dir(run)
        fit_argv = fit_command(self.spec, self.layout, run)
        eval_argv = eval_command(self.spec, self.layout, run)
        if self.dry_run:
            self.show(f"{run.name} fit", fit_argv)
            self.show(f"{run.name} eval", eval_argv)
            return None
        fit_record = run_dir / FIT_JSON
        if fit_record.is_file():
            fit = json.loads(fit_record.read_text())
        else:
            if run_dir.exists():  # an interrupted fit: start it again from scratch
                shutil.rmtree(run_dir)
            print(f"{run.name}: fitting (logs in {run_dir})", flush=True)
            seconds = run_job(fit_argv, run_dir, "fit", self.env)
            fit = {"command": fit_argv, "seconds": round(seconds, 1),
                   "metrics": fit_metrics(run_dir)}
            write_json_atomic(fit_record, fit, allow_nan=False)
        if not (run_dir / CHECKPOINT).is_file():
            link_best_checkpoint(run_dir)
        print(f"{run.name}: evaluating", flush=True)
        seconds = run_job(eval_argv, run_dir, "eval", self.env)
        eval_file = run_dir / "eval" / EVAL_JSON
        if not eval_file.is_file():
            raise JobFailed(f"{run.name}: `{shlex.join(eval_argv)}` exited 0 but wrote no "
                            f"{eval_file}")
        evaluation = json.loads(eval_file.read_text())
        if not isinstance(evaluation.get("metrics"), dict):
            raise JobFailed(f"{eval_file}: no 'metrics' mapping (flat name -> number)")
        result = {"name": run.name, "arm": run.arm, "variant": run.variant, "n": run.n,
                  "seed": run.seed, "bank": run.bank_ref, "fit_command": fit["command"],
                  "eval_command": eval_argv, "fit_seconds": fit["seconds"],
                  "eval_seconds": round(seconds, 1), "fit_metrics": fit["metrics"],
                  "eval_metrics": evaluation["metrics"], "eval_notes": evaluation.get("notes")}
        write_json_atomic(run_dir / RESULT_JSON, result, allow_nan=True)
        return result

    # ------------------------------------------------------------------ report
    def bank_metrics(self) -> dict[str, dict[str, Any]]:
        """What each bank's clusters hold (memory_bank.bank_metrics, per n), from the builds'
        summary.json: ``kmeans`` and ``random`` (members), where they were written."""
        banks: dict[str, dict[str, Any]] = {}
        for kind, random in (("kmeans", False), ("random", True)):
            path = self.layout.bank_summary(random=random)
            try:
                metrics = json.loads(path.read_text()).get("metrics") if path.is_file() else None
            except (OSError, ValueError, AttributeError):
                metrics = None
            if isinstance(metrics, dict):
                banks[kind] = {str(n): m for n, m in metrics.items() if isinstance(m, dict)}
        return banks

    def report(self, failed: dict[str, str],
               interrupted: dict[str, str] | None = None) -> dict[str, Any]:
        results = []
        for run in self.spec.runs:
            path = self.layout.run_dir(run) / RESULT_JSON
            if path.is_file():
                results.append(json.loads(path.read_text()))
        arm_order = list(dict.fromkeys(r.arm for r in self.spec.runs))
        report = {"spec": describe(self.spec), "command": self.command, "hardware": hardware(),
                  "registry": str(self.layout.registry), "arm_order": arm_order,
                  "finished": len(results), "planned": len(self.spec.runs),
                  "failed": sorted(failed), "errors": failed,
                  "interrupted": sorted(interrupted or {}),
                  "seconds": sum(r["fit_seconds"] + r["eval_seconds"] for r in results),
                  "arms": aggregate(results), "banks": self.bank_metrics(),
                  "runs": {r["name"]: {k: r[k] for k in ("arm", "seed", "fit_seconds",
                                                         "eval_seconds", "fit_metrics",
                                                         "eval_metrics")} for r in results}}
        write_json_atomic(self.layout.out / "ablation.json", report, allow_nan=True)
        with atomic_path(self.layout.out / "ablation.md") as tmp:
            tmp.write_text(markdown(report))
        return report

    def __call__(self) -> int:
        print(f"ablation {self.spec.name}: {len(self.runs)} run(s) of {len(self.spec.runs)} "
              f"planned; output in {self.layout.out}", flush=True)
        if not self.dry_run:
            self.check_eval()
        try:
            self.corpus()
            self.banks()
        except JobInterrupted as err:
            print(f"INTERRUPTED (a rerun starts this stage again)\n{err}", file=sys.stderr,
                  flush=True)
            return 128 + err.received if err.received is not None else 1
        failed: dict[str, str] = {}
        interrupted: dict[str, str] = {}
        for run in self.runs:
            if (self.layout.run_dir(run) / RESULT_JSON).is_file():
                print(f"{run.name}: finished earlier, skipped")
                continue
            try:
                self.one(run)
            except JobInterrupted as err:
                interrupted[run.name] = str(err)
                print(f"{run.name}: INTERRUPTED (a rerun runs it again)\n{err}",
                      file=sys.stderr, flush=True)
                if err.received is not None:  # this runner was asked to stop
                    self.report(failed, interrupted)
                    return 128 + err.received
                continue
            except JobFailed as err:
                failed[run.name] = str(err)
                print(f"{run.name}: FAILED\n{err}", file=sys.stderr, flush=True)
                continue
            if not self.dry_run:
                self.report(failed, interrupted)
        if self.dry_run:
            return 0
        report = self.report(failed, interrupted)
        print(f"\n{markdown(report)}\nresults: {self.layout.out / 'ablation.json'}, "
              f"{self.layout.out / 'ablation.md'}")
        return 1 if failed or interrupted else 0


def add_ablation_arguments(parser: argparse.ArgumentParser) -> None:
    sub = parser.add_subparsers(dest="ablation_command", metavar="ABLATION_COMMAND", required=True)
    run = sub.add_parser("run", help="build banks, fit and evaluate every (variant, n, seed)")
    run.add_argument("--config", required=True, help="an ablation file, e.g. "
                                                      "configs/ablation/cpu.yaml")
    run.add_argument("--out", default="runs/ablation", help="output folder (default "
                                                            "runs/ablation)")
    run.add_argument("--only", action="append", default=[], metavar="NAME",
                     help="only runs of this variant, arm (softmax-n80) or run "
                          "(softmax-n80-s0); repeatable")
    run.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


def run_ablation(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(prog="lipmem ablation",
                                     description="Memory ablation: fusion vs none vs argmax vs "
                                                 "random members, over n and seeds.")
    add_ablation_arguments(parser)
    args = parser.parse_args(argv)
    command = shlex.join(["lipmem", "ablation", *argv])
    try:
        spec = load_spec(args.config)
        return AblationRunner(spec, Path(args.out), args.only, args.dry_run, command)()
    except AblationConfigError as err:
        parser.exit(2, f"lipmem ablation: error: {err}\n")
    return 2
