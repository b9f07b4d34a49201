"""Every file in sweeps/ is a sweep W&B accepts, and every trial it can draw parses in the real CLI.

wandb 0.31 ships no sweep-config JSON schema (no *.json in site-packages/wandb; W&B validates
on its server or in the `sweeps` package, which pins numpy<2), so the documented rules are
checked by hand here, independently of the offline runner's own checks.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import pytest
import yaml

from lightning_modules.experiments.sweeps.command import build_command
from lightning_modules.experiments.sweeps.sampling import grid_points, random_draw
from lightning_modules.experiments.sweeps.spec import load_sweep
from memory_bank.memory_config import MemoryConfig

REPO = Path(__file__).resolve().parents[2]
SWEEP_FILES = sorted((REPO / "sweeps").glob("*.yaml"))
LOSS = "model.loss.init_args."

TOP_LEVEL = {"program", "entity", "project", "description", "name", "method", "metric",
             "parameters", "early_terminate", "command", "run_cap"}
RANGED = {"int_uniform", "uniform", "q_uniform", "log_uniform", "log_uniform_values",
          "q_log_uniform", "q_log_uniform_values", "inv_log_uniform", "inv_log_uniform_values"}
WANDB_DISTRIBUTIONS = RANGED | {"constant", "categorical", "normal", "q_normal", "log_normal",
                                "q_log_normal", "beta", "q_beta"}


def check_wandb_sweep(cfg: dict[str, Any]) -> None:
    """Assert the rules of W&B's sweep configuration reference."""
    assert isinstance(cfg, dict) and set(cfg) <= TOP_LEVEL, set(cfg) - TOP_LEVEL
    assert cfg.get("program"), "program is required by W&B (the agent reads it)"
    assert cfg.get("method") in ("grid", "random", "bayes"), cfg.get("method")
    metric = cfg.get("metric")
    assert isinstance(metric, dict) and isinstance(metric.get("name"), str), metric
    assert metric.get("goal") in ("minimize", "maximize"), metric
    params = cfg.get("parameters")
    assert isinstance(params, dict) and params
    for name, p in params.items():
        assert isinstance(p, dict), name
        if "value" in p:
            continue
        if "values" in p:
            assert isinstance(p["values"], list) and p["values"], name
            continue
        assert cfg["method"] != "grid", f"{name}: grid needs values or value"
        dist = p.get("distribution", "uniform")
        assert dist in WANDB_DISTRIBUTIONS, (name, dist)
        if dist in RANGED:
            lo, hi = p.get("min"), p.get("max")
            assert all(isinstance(v, (int, float)) and math.isfinite(v) for v in (lo, hi)), p
            assert lo < hi, (name, lo, hi)
            if dist.endswith("_values"):
                assert lo > 0, (name, lo)
    command = cfg.get("command")
    assert isinstance(command, list) and all(isinstance(c, str) for c in command), command
    assert "${args}" in command, "the hyperparameters reach the CLI only through ${args}"


def test_the_expected_sweep_files_exist():
    assert {p.name for p in SWEEP_FILES} >= {"loss_weights.yaml", "memory_size.yaml"}


@pytest.mark.parametrize("path", SWEEP_FILES, ids=lambda p: p.name)
def test_is_a_valid_wandb_sweep_config(path):
    check_wandb_sweep(yaml.safe_load(path.read_text()))
    load_sweep(path)  # and the offline runner accepts it


@pytest.mark.parametrize("broken", [
    {"method": "bayesian"},
    {"metric": {"name": "val/l1_mouth", "goal": "lower"}},
    {"parameters": {"x": {"min": 2.0, "max": 2.0}}},
    {"parameters": {"x": {"distribution": "log_uniform_values", "min": 0.0, "max": 1.0}}},
    {"parameters": {"x": {"distribution": "gaussian", "min": 0.0, "max": 1.0}}},
    {"parameters": {"x": {"values": []}}},
    {"command": ["lipmem", "fit"]},
    {"paramters": {}},
], ids=lambda b: next(iter(b)))
def test_the_checker_rejects_what_wandb_rejects(broken):
    cfg = yaml.safe_load((REPO / "sweeps" / "loss_weights.yaml").read_text())
    cfg.update(broken)
    with pytest.raises(AssertionError):
        check_wandb_sweep(cfg)


def test_every_loss_weight_draw_keeps_l1_highest():
    spec = load_sweep(REPO / "sweeps" / "loss_weights.yaml")
    p = spec.parameters
    # The ranges alone guarantee it: the smallest L1 beats the largest of the others.
    assert p[LOSS + "l1_weight"]["min"] > p[LOSS + "adv_weight"]["max"]
    assert p[LOSS + "l1_weight"]["min"] > p[LOSS + "lpips_weight"]["max"]
    assert all(param["min"] > 0 for param in p.values())
    for index in range(300):
        draw = random_draw(spec, seed=0, index=index)
        assert draw[LOSS + "l1_weight"] > max(draw[LOSS + "adv_weight"],
                                              draw[LOSS + "lpips_weight"]), draw


def test_memory_size_is_a_grid_over_the_four_banks():
    spec = load_sweep(REPO / "sweeps" / "memory_size.yaml")
    assert spec.method == "grid"
    assert grid_points(spec) == [{"model.generator.init_args.num_codes": n}
                                 for n in (20, 40, 80, 160)]
    assert "--bank.n='[20,40,80,160]'" in spec.path.read_text()  # how to build the banks


def _trial_cases() -> list[tuple[str, str, dict[str, Any]]]:
    """(id, sweep file, params): the loss box's two extreme corners and the memory grid's
    smallest and largest n (a draw or an inner grid point passes the same keys, in range)."""
    loss = load_sweep(REPO / "sweeps" / "loss_weights.yaml")
    bounds = {k: (v["min"], v["max"]) for k, v in loss.parameters.items()}
    l1, others = LOSS + "l1_weight", [k for k in bounds if k != LOSS + "l1_weight"]
    cases = [("loss-l1_min-others_max", "loss_weights.yaml",
              {l1: bounds[l1][0], **{k: bounds[k][1] for k in others}}),
             ("loss-l1_max-others_min", "loss_weights.yaml",
              {l1: bounds[l1][1], **{k: bounds[k][0] for k in others}})]
    points = grid_points(load_sweep(REPO / "sweeps" / "memory_size.yaml"))
    return cases + [(f"memory-n{point['model.generator.init_args.num_codes']}",
                     "memory_size.yaml", point) for point in (points[0], points[-1])]


TRIAL_CASES = _trial_cases()


def _lookup(cfg: dict[str, Any], dotted: str) -> Any:
    for part in dotted.split("."):
        cfg = cfg[part]
    return cfg


@pytest.mark.timeout(300)
@pytest.mark.parametrize("case", range(len(TRIAL_CASES)), ids=[c[0] for c in TRIAL_CASES])
def test_the_real_cli_accepts_each_trial(case, tmp_path, lipmem_cli):
    """A misspelled key or a refused value fails here, not hours into a sweep."""
    _, name, params = TRIAL_CASES[case]
    spec = load_sweep(REPO / "sweeps" / name)
    argv = build_command(spec.command, params, spec.program)
    assert argv[0] == "lipmem"
    out = lipmem_cli([*argv[1:], "--print_config"], tmp_path, WANDB_RUN_ID=f"run{case}")
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = yaml.safe_load(out.stdout)
    for key, value in params.items():
        assert _lookup(cfg, key) == pytest.approx(value, rel=1e-12), key
    # Under `wandb agent` each trial gets its own run folder, named after the W&B run.
    assert cfg["trainer"]["default_root_dir"] == f"runs/sweeps/{spec.path.stem}/run{case}"
    if name == "memory_size.yaml":
        n = params["model.generator.init_args.num_codes"]
        source = cfg["model"]["memory"]["source"]
        assert MemoryConfig(source=source).reference(n) == f"memory-bank:n{n}"
    else:
        weights = cfg["model"]["loss"]["init_args"]
        assert weights["require_l1_highest"] is True
        assert weights["l1_weight"] > max(weights["adv_weight"], weights["lpips_weight"])
