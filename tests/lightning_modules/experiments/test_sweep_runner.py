"""`lipmem sweep run`: sampling, command building, resume, and one real two-trial sweep."""

from __future__ import annotations

import json
import math
import sys
from pathlib import Path
from typing import Any

import pytest
import yaml

from lightning_modules.cli.main import main
from lightning_modules.experiments.sweeps.command import (
    build_command,
    format_args,
    resolve_executable,
)
from lightning_modules.experiments.sweeps.sampling import (
    BAYES_NOTE,
    grid_points,
    plan_trials,
    random_draw,
)
from lightning_modules.experiments.sweeps.spec import SweepConfigError, check_sweep, load_sweep
from lightning_modules.experiments.sweeps.state import sweep_id_for
from lightning_modules.experiments.sweeps.wandb_runs import find_runs, read_run


def sweep_file(tmp_path: Path, **overrides: Any) -> Path:
    cfg: dict[str, Any] = {
        "program": "train.py", "method": "random",
        "metric": {"name": "val/l1_mouth", "goal": "minimize"},
        "parameters": {"a": {"values": [1, 2]}},
        "command": ["${env}", "lipmem", "fit", "${args}"],
    }
    cfg.update(overrides)
    path = tmp_path / "sweep.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return path


RANGES = {
    "u": {"distribution": "uniform", "min": 5.0, "max": 20.0},
    "lu": {"distribution": "log_uniform_values", "min": 0.01, "max": 1.0},
    "i": {"distribution": "int_uniform", "min": 1, "max": 4},
    "q": {"distribution": "q_uniform", "min": 0.0, "max": 1.0, "q": 0.25},
    "c": {"values": ["hinge", "lsgan"]},
    "k": {"value": 7},
}


# --- sampling ---------------------------------------------------------------------------

def test_grid_enumerates_the_product_in_file_order_and_count_caps_it(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, method="grid", parameters={
        "n": {"values": [20, 40, 80]}, "mode": {"values": ["a", "b"]}, "k": {"value": 1}}))
    points = grid_points(spec)
    assert points == [{"n": n, "mode": m, "k": 1} for n in (20, 40, 80) for m in ("a", "b")]
    assert plan_trials(spec, None, 0).trials == points
    assert plan_trials(spec, 4, 0).trials == points[:4]


def test_grid_expands_int_uniform_and_refuses_a_continuous_range(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, method="grid", parameters={
        "i": {"min": 1, "max": 3}}))
    assert [p["i"] for p in grid_points(spec)] == [1, 2, 3]
    spec = load_sweep(sweep_file(tmp_path, method="grid", parameters={"u": RANGES["u"]}))
    with pytest.raises(SweepConfigError, match=r"sweep\.yaml.*parameters\.u.*grid"):
        grid_points(spec)


def test_random_draws_stay_in_range_and_repeat_for_a_seed(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, parameters=RANGES))
    draws = plan_trials(spec, 200, seed=3).trials
    for d in draws:
        assert 5.0 <= d["u"] <= 20.0 and 0.01 <= d["lu"] <= 1.0
        assert isinstance(d["i"], int) and 1 <= d["i"] <= 4
        assert d["q"] in (0.0, 0.25, 0.5, 0.75, 1.0)
        assert d["c"] in ("hinge", "lsgan") and d["k"] == 7
    assert {d["i"] for d in draws} == {1, 2, 3, 4}  # both ends of the integer range come up
    # log-uniform: about half the draws below the geometric mean (0.1), not ~9%.
    assert 0.35 < sum(d["lu"] < 0.1 for d in draws) / len(draws) < 0.65
    assert plan_trials(spec, 200, seed=3).trials == draws
    assert plan_trials(spec, 5, seed=3).trials == draws[:5]  # trial k ignores --count
    assert plan_trials(spec, 5, seed=4).trials != draws[:5]
    assert random_draw(spec, 3, 7) == draws[7]


def test_bayes_runs_as_random_with_a_note(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, method="bayes", parameters={"u": RANGES["u"]}))
    plan = plan_trials(spec, 3, seed=0)
    assert plan.method == "random" and BAYES_NOTE in plan.notes and len(plan.trials) == 3
    random_spec = load_sweep(sweep_file(tmp_path, method="random", parameters={"u": RANGES["u"]}))
    assert plan.trials == plan_trials(random_spec, 3, seed=0).trials
    with pytest.raises(SweepConfigError, match="needs --count"):
        plan_trials(spec, None, seed=0)


def test_an_unsupported_distribution_fails_before_any_trial(tmp_path):
    spec = load_sweep(sweep_file(tmp_path, parameters={
        "w": {"distribution": "inv_log_uniform_values", "min": 0.1, "max": 1.0}}))
    with pytest.raises(SweepConfigError, match=r"sweep\.yaml: parameters\.w: .*inv_log_uniform"):
        plan_trials(spec, 2, seed=0)


@pytest.mark.parametrize("override, key", [
    ({"method": "hyperband"}, "method"),
    ({"metric": {"name": "val/l1_mouth", "goal": "down"}}, "metric.goal"),
    ({"parameters": {"w": {"min": 3.0, "max": 1.0}}}, "parameters.w"),
    ({"parameters": {"w": {"distribution": "gaussian", "min": 0.0, "max": 1.0}}},
     "parameters.w"),
    ({"parameters": {"w": {"distribution": "int_uniform", "min": 0.5, "max": 3}}},
     "parameters.w"),
    ({"parameters": {"w": {"values": []}}}, "parameters.w"),
    ({"paramters": {"w": {"values": [1]}}}, "paramters"),
])
def test_bad_sweep_files_are_refused_naming_file_and_key(tmp_path, override, key):
    with pytest.raises(SweepConfigError) as err:
        load_sweep(sweep_file(tmp_path, **override))
    assert str(tmp_path / "sweep.yaml") in str(err.value) and key in str(err.value)


# --- command ----------------------------------------------------------------------------

def test_args_are_formatted_exactly_as_the_wandb_agent_does():
    from wandb.sdk.launch.sweeps.utils import create_sweep_command_args

    params = {"model.loss.init_args.l1_weight": 3.0, "flag": True, "off": False,
              "model.generator.init_args.num_codes": 20, "name": "x y", "lr": 1e-05}
    theirs = create_sweep_command_args({"args": {k: {"value": v} for k, v in params.items()}})
    ours = format_args(params)
    for macro, value in ours.items():
        assert value == theirs[macro], macro
    assert ours["args"][0] == "--model.loss.init_args.l1_weight=3.0"


def test_command_macros_expand_and_unknown_ones_fail(monkeypatch, tmp_path):
    monkeypatch.setenv("LIPMEM_TEST_DIR", "/data")
    command = ["${env}", "${interpreter}", "${program}", "--root=${envvar:LIPMEM_TEST_DIR}/x",
               "${args}", "${args_json_file}"]
    argv = build_command(command, {"a": 1, "b": 0.5}, "train.py", tmp_path / "args.json")
    assert argv == [sys.executable, "train.py", "--root=/data/x", "--a=1", "--b=0.5",
                    str(tmp_path / "args.json")]
    assert build_command(["lipmem", "${args_no_hyphens}"], {"a": 1}) == ["lipmem", "a=1"]
    with pytest.raises(SweepConfigError, match=r"\$\{argz\}"):
        build_command(["lipmem", "${argz}"], {"a": 1})
    with pytest.raises(SweepConfigError, match="program"):
        build_command(["${interpreter}", "${program}"], {"a": 1})


def test_lipmem_runs_from_this_environment():
    argv = resolve_executable(["lipmem", "fit", "--x=1"])
    assert argv[-2:] == ["fit", "--x=1"]
    assert argv[0] == str(Path(sys.executable).parent / "lipmem") or argv[:3] == [
        sys.executable, "-m", "lightning_modules.cli.main"] or argv[0] == "lipmem"
    assert resolve_executable(["python", "x.py"]) == ["python", "x.py"]


# --- reading W&B's own run files -------------------------------------------------------

def test_reads_summary_and_group_from_a_multi_block_offline_run(tmp_path, monkeypatch):
    """A real offline run much larger than one 32 KiB log block, with a record spanning
    blocks; then the same log cut mid-record, as a killed run leaves it."""
    import wandb

    for var in ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR"):
        monkeypatch.setenv(var, str(tmp_path / var.lower()))
    # wandb.init exports WANDB_SERVICE; undo that after the test, so no later subprocess
    # logs through this process's wandb-core.
    monkeypatch.setenv("WANDB_SERVICE", "")
    monkeypatch.delenv("WANDB_SERVICE")
    run = wandb.init(mode="offline", dir=tmp_path, project="p", group="g1", name="trial-007")
    big = "x" * 70_000
    for step in range(400):
        run.log({"val/l1_mouth": 1.0 / (step + 1), "pad": "y" * 200})
    run.log({"blob": big})
    run.finish()
    wandb.teardown()
    (run_dir,) = find_runs(tmp_path)
    log = next(run_dir.glob("run-*.wandb"))
    assert log.stat().st_size > 4 * 32768
    result = read_run(run_dir)
    assert (result.group, result.name, result.project, result.exit_code) == ("g1", "trial-007",
                                                                               "p", 0)
    assert result.summary["val/l1_mouth"] == 1.0 / 400 and result.summary["blob"] == big

    cut = tmp_path / "cut" / run_dir.name
    cut.mkdir(parents=True)
    (cut / log.name).write_bytes(log.read_bytes()[: log.stat().st_size // 2 + 5])
    partial = read_run(cut)
    assert partial.exit_code is None and partial.group == "g1"
    assert 1.0 / 400 < partial.summary["val/l1_mouth"] < 1.0


# --- the runner, with a fake trial program (fast) ---------------------------------------

FAKE_TRIAL = """
import json, os, sys
from pathlib import Path
args = sys.argv[1:]
root = Path([a.split("=", 1)[1] for a in args if a.startswith("--trainer.default_root_dir=")][0])
root.mkdir(parents=True, exist_ok=True)
with open(root / "calls.txt", "a") as fh:
    fh.write("call\\n")
(root / "seen.json").write_text(json.dumps({"argv": args, "mode": os.environ.get("WANDB_MODE"),
                                            "sweep_env": os.environ.get("WANDB_SWEEP_ID"),
                                            "service": os.environ.get("WANDB_SERVICE")}))
if "--x=2" in args:  # dies after W&B made its run folder, before it wrote the log
    (root / "wandb" / "offline-run-20260101_000000-dead0000").mkdir(parents=True)
    sys.exit("boom: x=2 refused")
"""


def fake_sweep(tmp_path: Path) -> Path:
    return sweep_file(tmp_path, method="grid", parameters={"x": {"values": [1, 2, 3]}},
                      command=["${interpreter}", "-c", FAKE_TRIAL, "${args}"])


def test_a_failing_trial_is_recorded_and_the_sweep_goes_on(tmp_path, monkeypatch, capsys):
    monkeypatch.delenv("WANDB_MODE", raising=False)
    monkeypatch.setenv("WANDB_SWEEP_ID", "from-an-agent")
    monkeypatch.setenv("WANDB_SERVICE", "a-parent-wandb-core")
    path, out = fake_sweep(tmp_path), tmp_path / "out"
    code = main(["sweep", "run", str(path), "--out", str(out), "--", "--extra=1"])
    assert code == 1  # one trial failed
    sweep_id = sweep_id_for("sweep", load_sweep(path).sha256, 0, ["--extra=1"])
    state = json.loads((out / sweep_id / "sweep.json").read_text())
    trials = state["trials"]
    assert [t["exit_code"] for t in trials.values()] == [0, 1, 0]
    assert "boom: x=2 refused" in trials["trial-001"]["stderr_tail"]
    assert trials["trial-001"]["note"].startswith("cannot read the W&B run")
    assert trials["trial-000"]["metric"] is None and "no W&B run" in trials["trial-000"]["note"]
    root = out / sweep_id / "trial-000"
    seen = json.loads((root / "seen.json").read_text())
    assert seen["argv"] == ["--x=1", "--extra=1", f"--trainer.default_root_dir={root}",
                            f"--trainer.logger.init_args.group={sweep_id}",
                            "--trainer.logger.init_args.name=trial-000"]
    assert seen["mode"] == "offline" and seen["sweep_env"] is None and seen["service"] is None
    assert "1 of 3 trial(s) failed: trial-001" in capsys.readouterr().out

    # A rerun skips the finished trials and retries the failed one.
    assert main(["sweep", "run", str(path), "--out", str(out), "--", "--extra=1"]) == 1
    calls = [len((out / sweep_id / f"trial-00{i}" / "calls.txt").read_text().split())
             for i in range(3)]
    assert calls == [1, 2, 1]
    assert "finished earlier" in capsys.readouterr().out


def test_dry_run_prints_commands_and_writes_nothing(tmp_path, capsys):
    out = tmp_path / "out"
    assert main(["sweep", "run", str(fake_sweep(tmp_path)), "--out", str(out),
                 "--sweep-id", "dry", "--dry-run"]) == 0
    printed = capsys.readouterr().out
    assert printed.count("--trainer.logger.init_args.group=dry") == 3
    assert "--x=3" in printed and not out.exists()


def test_a_changed_file_cannot_reuse_a_sweep_folder(tmp_path, capsys):
    path, out = fake_sweep(tmp_path), tmp_path / "out"
    main(["sweep", "run", str(path), "--out", str(out), "--sweep-id", "s1"])
    path.write_text(path.read_text() + "# edited\n")
    with pytest.raises(SystemExit) as exit_info:
        main(["sweep", "run", str(path), "--out", str(out), "--sweep-id", "s1"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert "sweep.json" in err and "--sweep-id" in err


def test_check_sweep_names_the_source():
    with pytest.raises(SweepConfigError, match="inline: method"):
        check_sweep({"method": "nope", "parameters": {}}, "inline")


# --- one real sweep: two smoke fits -----------------------------------------------------

@pytest.mark.timeout(400)
def test_two_real_trials_record_metrics_group_runs_and_resume(tiny_corpus, tmp_path, lipmem_cli):
    path = sweep_file(tmp_path, method="random",
                      metric={"name": "val/mouth_score", "goal": "minimize"}, parameters={
        "model.loss.init_args.l1_weight": {"distribution": "uniform", "min": 5.0, "max": 12.0}},
        command=["${env}", "lipmem", "fit", "--config", "configs/smoke.yaml", "${args}"])
    out = tmp_path / "sweeps"
    args = ["sweep", "run", str(path), "--count", "2", "--seed", "1", "--out", str(out),
            "--sweep-id", "smoke", "--", f"--data.root={tiny_corpus}"]
    first = lipmem_cli(args, tmp_path)
    assert first.returncode == 0, first.stdout[-3000:] + first.stderr[-3000:]
    state = json.loads((out / "smoke" / "sweep.json").read_text())
    assert list(state["trials"]) == ["trial-000", "trial-001"]
    weights = set()
    for name, trial in state["trials"].items():
        root = out / "smoke" / name
        weight = trial["params"]["model.loss.init_args.l1_weight"]
        weights.add(weight)
        assert trial["exit_code"] == 0 and 5.0 <= weight <= 12.0
        assert math.isfinite(trial["metric"]) and trial["metric"] > 0
        # The metric is the run's last val/mouth_score: the one the checkpoint is named after.
        assert list(root.glob(f"checkpoints/*mouth{trial['metric']:.4f}.ckpt")), list(
            root.rglob("*.ckpt"))
        (run_dir,) = find_runs(root)
        assert run_dir.name.startswith("offline-run-")
        run = read_run(run_dir)
        assert (run.group, run.name, run.exit_code) == ("smoke", name, 0)
        assert b"smoke" in next(run_dir.glob("run-*.wandb")).read_bytes()
        config = yaml.safe_load((root / "config.yaml").read_text())
        assert config["trainer"]["logger"]["init_args"]["group"] == "smoke"
        assert config["model"]["loss"]["init_args"]["l1_weight"] == weight
    assert len(weights) == 2
    assert "trial-000" in first.stdout and "val/mouth_score" in first.stdout  # the table

    again = lipmem_cli(args, tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    assert again.stdout.count("finished earlier") == 2
    assert all(len(find_runs(out / "smoke" / n)) == 1 for n in state["trials"])
    assert json.loads((out / "smoke" / "sweep.json").read_text()) == state

