"""`lipmem sweep run FILE`: run a W&B sweep file with no W&B server (air-gapped clusters).

Reads the same YAML as `wandb sweep`, draws the trials itself (lightning_modules.experiments.sweeps) and
runs each as a real subprocess built from the file's `command:`, as `wandb agent` would,
plus `--trainer.default_root_dir=OUT/SWEEP_ID/trial-NNN` and the W&B run's group (the sweep
id) and name (trial-NNN), so `wandb sync` later uploads the trials as one group. The metric
is read from the run W&B wrote (its summary, what a W&B sweep optimises). `sweep.json` is
rewritten after every trial; a rerun with the same sweep id skips the finished trials and
runs again those that failed or were interrupted (a SIGTERM / SIGINT to the runner is passed
on to the running trial, which saves and stops; the runner records it and stops too).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shlex
import time
from pathlib import Path
from typing import Any

from datamodules.atomic_files import write_json_atomic
from lightning_modules.experiments.sweeps.command import build_command, resolve_executable
from lightning_modules.experiments.sweeps.sampling import plan_trials
from lightning_modules.experiments.sweeps.spec import SweepConfigError, SweepSpec, load_sweep
from lightning_modules.experiments.sweeps.state import (
    FORMAT_VERSION,
    STATE_FILE,
    check_resume,
    finished,
    finite_or_none,
    load_state,
    sweep_id_for,
)
from lightning_modules.experiments.sweeps.wandb_runs import (
    WandbRun,
    find_runs,
    read_run,
    summary_value,
)
from lightning_modules.training.signals import run_forwarding_signals, was_interrupted

SWEEP_ID = re.compile(r"^[A-Za-z0-9][A-Za-z0-9._-]*$")
STDERR_TAIL = 3000
# Set by `wandb agent`; a trial started here must not attach to an online sweep or run. And
# WANDB_SERVICE (exported by any wandb.init in a parent process) would make the trial log
# through the parent's wandb-core, which finalises the run log only after the trial exits.
INHERITED_WANDB_ENV = ("WANDB_SWEEP_ID", "WANDB_RUN_ID", "WANDB_SWEEP_PARAM_PATH",
                       "WANDB_SERVICE")
FINALISE_WAIT_S = 30.0


def add_sweep_arguments(parser: argparse.ArgumentParser) -> None:
    """Mount `run` under a `sweep` parser (`lipmem sweep run ...`)."""
    sub = parser.add_subparsers(dest="sweep_command", metavar="SWEEP_COMMAND", required=True)
    run = sub.add_parser(
        "run", help="run a W&B sweep file offline: one `lipmem fit` subprocess per trial",
        usage="%(prog)s [-h] FILE [--count K] [--seed S] [--out DIR] [--sweep-id ID] "
              "[--dry-run] [-- TRIAL_ARGS ...]",
        description="Run FILE's trials offline. Arguments after `--` are added to every "
                    "trial's command, e.g. `-- --trainer.devices=4 --trainer.strategy=ddp`.")
    run.add_argument("file", help="a W&B sweep YAML, e.g. sweeps/loss_weights.yaml")
    run.add_argument("--count", type=int, default=None,
                     help="number of trials (required for random/bayes; caps a grid)")
    run.add_argument("--seed", type=int, default=0, help="seed of the random draws (default 0)")
    run.add_argument("--out", default="runs/sweeps", help="sweeps folder (default runs/sweeps)")
    run.add_argument("--sweep-id", default=None,
                     help="folder and W&B group name (default: FILE stem + hash of the file, "
                          "seed and extra args)")
    run.add_argument("--dry-run", action="store_true", help="print the commands, run nothing")


def trial_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in INHERITED_WANDB_ENV}
    env.setdefault("WANDB_MODE", "offline")
    return env


def tail(path: Path, limit: int = STDERR_TAIL) -> str:
    return path.read_text(errors="replace")[-limit:] if path.is_file() else ""


def read_finished_run(run_dir: Path, wait_s: float = FINALISE_WAIT_S) -> WandbRun:
    """The run, once W&B has written its exit record (or after wait_s: read what is there)."""
    deadline = time.monotonic() + wait_s
    run = read_run(run_dir)
    while run.exit_code is None and time.monotonic() < deadline:
        time.sleep(0.5)
        run = read_run(run_dir)
    return run


def trial_status(code: int, received: int | None) -> str:
    """finished (exit 0), interrupted (stopped by SIGTERM / SIGINT, its own or one passed on
    from this runner: run again next time) or failed."""
    if code == 0:
        return "finished"
    return "interrupted" if was_interrupted(code) or received is not None else "failed"


def run_trial(argv: list[str], root: Path, metric: str | None) -> dict[str, Any]:
    """Run one trial; its stdout/stderr go to files in its folder. Returns the record, with
    the signal this runner received meanwhile (passed on to the trial) under ``signal``."""
    root.mkdir(parents=True, exist_ok=True)
    before = set(find_runs(root))
    start = time.monotonic()
    with open(root / "stdout.log", "w") as out, open(root / "stderr.log", "w") as err:
        code, received = run_forwarding_signals(argv, stdout=out, stderr=err, env=trial_env())
    record: dict[str, Any] = {"exit_code": code, "status": trial_status(code, received),
                              "signal": received,
                              "seconds": round(time.monotonic() - start, 1),
                              "metric": None, "wandb_run": None, "note": None}
    new_runs = [r for r in find_runs(root) if r not in before]
    if new_runs:
        record["wandb_run"] = str(new_runs[-1])
        try:
            run = read_finished_run(new_runs[-1]) if code == 0 else read_run(new_runs[-1])
        except (OSError, ValueError) as error:  # a trial killed before W&B wrote its log
            record["note"] = f"cannot read the W&B run: {error}"
        else:
            value = summary_value(run.summary, metric) if metric else None
            record["metric"] = finite_or_none(value)
            if metric and record["metric"] is None:
                record["note"] = f"{metric}={value!r} in the run summary"
            elif code == 0 and run.exit_code is None:
                record["note"] = "the W&B run log has no exit record (run not finalised)"
    elif code == 0:
        record["note"] = f"no W&B run under {root / 'wandb'} (is the logger disabled?)"
    if code != 0:
        record["stderr_tail"] = tail(root / "stderr.log")
    return record


def ranked(trials: list[dict[str, Any]], goal: str) -> list[dict[str, Any]]:
    """Finished trials with a metric, best first; then the rest, in trial order."""
    scored = [t for t in trials if t.get("exit_code") == 0 and t.get("metric") is not None]
    rest = [t for t in trials if t not in scored]
    scored.sort(key=lambda t: t["metric"], reverse=goal == "maximize")
    return scored + sorted(rest, key=lambda t: t["index"])


def print_table(state: dict[str, Any]) -> None:
    from rich.console import Console
    from rich.table import Table

    trials = list(state["trials"].values())
    metric = state.get("metric") or {}
    params = list(trials[0]["params"]) if trials else []
    short = [p.rsplit(".", 1)[-1] for p in params]
    if len(set(short)) < len(short):
        short = params
    table = Table(title=f"sweep {state['sweep_id']} ({state['method']}, "
                        f"{metric.get('goal', 'no metric')} {metric.get('name', '')})")
    for col in ("rank", "trial", "exit", metric.get("name") or "metric", *short, "s"):
        table.add_column(col, justify="right" if col not in ("trial",) else "left")
    for rank, t in enumerate(ranked(trials, metric.get("goal", "minimize")), 1):
        value = "-" if t.get("metric") is None else f"{t['metric']:.5g}"
        cells = [f"{t['params'][p]:.4g}" if isinstance(t["params"][p], float)
                 else str(t["params"][p]) for p in params]
        table.add_row(str(rank), t["name"], str(t["exit_code"]), value, *cells,
                      str(t.get("seconds", "")))
    Console().print(table)


def run(args: argparse.Namespace, extra: list[str]) -> int:
    spec: SweepSpec = load_sweep(args.file)
    plan = plan_trials(spec, args.count, args.seed)
    sweep_id = args.sweep_id or sweep_id_for(spec.path.stem, spec.sha256, args.seed, extra)
    if not SWEEP_ID.match(sweep_id):
        raise SweepConfigError(f"--sweep-id={sweep_id!r}: expected letters, digits, . _ -")
    out = Path(args.out).resolve() / sweep_id
    state_path = out / STATE_FILE
    state = load_state(state_path)
    if state is not None:
        check_resume(state, state_path, spec.sha256, args.seed)
    done = finished(state)
    state = state or {
        "format_version": FORMAT_VERSION, "sweep_id": sweep_id, "file": str(spec.path),
        "config_sha256": spec.sha256, "seed": args.seed, "method": plan.method,
        "requested_method": spec.method, "extra_args": extra,
        "metric": {"name": spec.metric_name, "goal": spec.goal} if spec.metric_name else None,
        "trials": {}}
    for note in plan.notes:
        print(f"note: {note}")
    print(f"sweep {sweep_id}: {len(plan.trials)} {plan.method} trial(s), {len(done)} finished "
          f"already; trials in {out}")
    for index, params in enumerate(plan.trials):
        name, root = f"trial-{index:03d}", out / f"trial-{index:03d}"
        json_file = root / "args.json"
        argv = resolve_executable(build_command(spec.command, params, spec.program, json_file))
        argv += [*extra, f"--trainer.default_root_dir={root}",
                 f"--trainer.logger.init_args.group={sweep_id}",
                 f"--trainer.logger.init_args.name={name}"]
        if name in done:
            if json.loads(json.dumps(params)) != done[name]["params"]:
                raise SweepConfigError(f"{state_path}: {name} finished with params "
                                       f"{done[name]['params']}, but this run draws {params}")
            print(f"{name}: finished earlier (metric {done[name].get('metric')}), skipped")
            continue
        if args.dry_run:
            print(f"{name}: {shlex.join(argv)}")
            continue
        print(f"{name}: running {shlex.join(argv)}\n  logs: {root}/stdout.log, stderr.log",
              flush=True)
        if "${args_json_file}" in spec.command:
            root.mkdir(parents=True, exist_ok=True)
            json_file.write_text(json.dumps(params))
        result = run_trial(argv, root, spec.metric_name)
        received = result.pop("signal")
        state["trials"][name] = {"index": index, "name": name, "params": params,
                                 "command": argv, "run_dir": str(root), **result}
        write_json_atomic(state_path, state, allow_nan=False)
        status = {"finished": "ok", "interrupted": f"INTERRUPTED (exit {result['exit_code']}; a "
                  "rerun runs it again)"}.get(result["status"],
                                              f"FAILED (exit {result['exit_code']})")
        metric = f", {spec.metric_name}={result['metric']}" if spec.metric_name else ""
        note = f" ({result['note']})" if result["note"] else ""
        print(f"{name}: {status} in {result['seconds']} s{metric}{note}", flush=True)
        if received is not None:  # this runner was asked to stop: no further trials
            print(f"stopped by signal {received}; state: {state_path}", flush=True)
            return 128 + received
    if args.dry_run:
        return 0
    state["trials"] = dict(sorted(state["trials"].items(), key=lambda kv: kv[1]["index"]))
    print_table(state)
    planned = [f"trial-{i:03d}" for i in range(len(plan.trials))]
    failed = [n for n in planned if n not in finished(state)]
    print(f"results: {state_path}\nupload later: wandb sync {out}/trial-*/wandb/*run-*")
    if failed:
        print(f"{len(failed)} of {len(planned)} trial(s) failed: {', '.join(failed)} "
              f"(stderr tails in {state_path}); a rerun retries them")
    return 1 if failed else 0


def run_sweep(argv: list[str]) -> int:
    """`lipmem sweep ARGV`. Split at `--` first: argparse cannot mix a positional FILE with a
    trailing list of `--key=value` arguments."""
    extra: list[str] = []
    if "--" in argv:
        cut = argv.index("--")
        argv, extra = argv[:cut], argv[cut + 1:]
    parser = argparse.ArgumentParser(prog="lipmem sweep",
                                     description="Run W&B sweep files without a W&B server.")
    add_sweep_arguments(parser)
    args = parser.parse_args(argv)
    try:
        return run(args, extra)
    except (SweepConfigError, ValueError, FileNotFoundError) as err:
        parser.exit(2, f"lipmem sweep: error: {err}\n")
    return 2
