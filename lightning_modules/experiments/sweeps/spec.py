"""Load and check a W&B sweep file, so a bad one fails before any trial starts.

The installed `wandb` package ships no sweep-config schema (the server and the separate
`sweeps` package validate, and that package pins numpy<2), so the rules W&B documents are
checked here: method, metric, parameters (values / value / a distribution and its bounds)
and a `command:` list.
"""

from __future__ import annotations

import hashlib
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

METHODS = ("grid", "random", "bayes")
GOALS = ("minimize", "maximize")
TOP_LEVEL_KEYS = ("program", "entity", "project", "description", "name", "method", "metric",
                  "parameters", "early_terminate", "command", "run_cap", "controller", "job",
                  "image_uri")
# W&B's distributions and the bounds each needs (docs: "Sweep configuration options").
RANGE_DISTRIBUTIONS = ("int_uniform", "uniform", "q_uniform", "log_uniform",
                       "log_uniform_values", "q_log_uniform", "q_log_uniform_values",
                       "inv_log_uniform", "inv_log_uniform_values")
DISTRIBUTIONS = ("constant", "categorical", *RANGE_DISTRIBUTIONS, "normal", "q_normal",
                 "log_normal", "q_log_normal", "beta", "q_beta")
# `wandb agent`'s default when a file has no `command:`.
DEFAULT_COMMAND = ["${env}", "${interpreter}", "${program}", "${args}"]


class SweepConfigError(ValueError):
    """A sweep file that W&B (or the offline runner) would refuse; names the file and key."""


@dataclass
class SweepSpec:
    path: Path
    method: str
    parameters: dict[str, dict[str, Any]]
    command: list[str]
    metric_name: str | None = None
    goal: str = "minimize"
    program: str | None = None
    run_cap: int | None = None
    raw: dict[str, Any] = field(default_factory=dict)
    sha256: str = ""


def distribution_of(param: dict[str, Any]) -> str:
    """The distribution W&B uses for a parameter, inferred as W&B does when not given."""
    if "distribution" in param:
        return str(param["distribution"])
    if "value" in param:
        return "constant"
    if "values" in param:
        return "categorical"
    if _is_int(param.get("min")) and _is_int(param.get("max")):
        return "int_uniform"
    return "uniform"


def _is_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)


def check_parameter(name: str, param: Any, where: str) -> None:
    """Raise SweepConfigError unless `param` is a parameter block W&B accepts."""
    at = f"{where}: parameters.{name}"
    if not isinstance(param, dict):
        raise SweepConfigError(f"{at}: expected a mapping (values/value/distribution), "
                               f"got {param!r}")
    if "parameters" in param:
        raise SweepConfigError(f"{at}: nested parameters are not supported; use flat dotted "
                               "keys such as model.loss.init_args.l1_weight")
    dist = distribution_of(param)
    if dist not in DISTRIBUTIONS:
        raise SweepConfigError(f"{at}: distribution={dist!r}: expected one of {DISTRIBUTIONS}")
    if dist == "constant" and "value" not in param:
        raise SweepConfigError(f"{at}: distribution constant needs `value`")
    if dist == "categorical":
        values = param.get("values")
        if not isinstance(values, list) or not values:
            raise SweepConfigError(f"{at}: values={values!r}: expected a non-empty list")
        probs = param.get("probabilities")
        if probs is not None and (len(probs) != len(values) or abs(sum(probs) - 1) > 1e-6):
            raise SweepConfigError(f"{at}: probabilities={probs!r}: expected one per value, "
                                   "summing to 1")
    if dist in RANGE_DISTRIBUTIONS:
        lo, hi = param.get("min"), param.get("max")
        if not (_is_number(lo) and _is_number(hi)) or not lo < hi:
            raise SweepConfigError(f"{at}: min={lo!r} max={hi!r}: expected numbers with "
                                   f"min < max for distribution {dist}")
        if dist == "int_uniform" and not (_is_int(lo) and _is_int(hi)):
            raise SweepConfigError(f"{at}: int_uniform needs integer min/max, got {lo!r}, {hi!r}")
        if dist.endswith("_values") and lo <= 0:
            raise SweepConfigError(f"{at}: min={lo!r}: {dist} needs min > 0")
    if "q" in param and not (_is_number(param["q"]) and param["q"] > 0):
        raise SweepConfigError(f"{at}: q={param['q']!r}: expected a number > 0")
    if "sigma" in param and not (_is_number(param["sigma"]) and param["sigma"] > 0):
        raise SweepConfigError(f"{at}: sigma={param['sigma']!r}: expected a number > 0")


def check_sweep(raw: Any, where: str) -> SweepSpec:
    """Build a SweepSpec from a parsed sweep file, or raise naming the bad key and value."""
    if not isinstance(raw, dict):
        raise SweepConfigError(f"{where}: expected a mapping at the top level, got {raw!r}")
    unknown = sorted(set(raw) - set(TOP_LEVEL_KEYS))
    if unknown:
        raise SweepConfigError(f"{where}: unknown top-level key(s) {unknown}: expected "
                               f"{TOP_LEVEL_KEYS}")
    method = raw.get("method")
    if method not in METHODS:
        raise SweepConfigError(f"{where}: method={method!r}: expected one of {METHODS}")
    metric = raw.get("metric")
    name, goal = None, "minimize"
    if metric is not None:
        if not isinstance(metric, dict) or not isinstance(metric.get("name"), str):
            raise SweepConfigError(f"{where}: metric={metric!r}: expected {{name, goal}}")
        name, goal = metric["name"], metric.get("goal", "minimize")
        if goal not in GOALS:
            raise SweepConfigError(f"{where}: metric.goal={goal!r}: expected one of {GOALS}")
    elif method == "bayes":
        raise SweepConfigError(f"{where}: method bayes needs a metric {{name, goal}}")
    params = raw.get("parameters")
    if not isinstance(params, dict) or not params:
        raise SweepConfigError(f"{where}: parameters={params!r}: expected a non-empty mapping")
    for key, param in params.items():
        check_parameter(key, param, where)
    command = raw.get("command", DEFAULT_COMMAND)
    if not isinstance(command, list) or not all(isinstance(c, (str, int, float)) for c in command):
        raise SweepConfigError(f"{where}: command={command!r}: expected a list of strings")
    run_cap = raw.get("run_cap")
    if run_cap is not None and not (_is_int(run_cap) and run_cap > 0):
        raise SweepConfigError(f"{where}: run_cap={run_cap!r}: expected a positive integer")
    return SweepSpec(path=Path(where), method=method, parameters=dict(params),
                     command=[str(c) for c in command], metric_name=name, goal=goal,
                     program=raw.get("program"), run_cap=run_cap, raw=raw)


def load_sweep(path: str | Path) -> SweepSpec:
    """Read and check a sweep YAML file."""
    path = Path(path)
    if not path.is_file():
        raise SweepConfigError(f"sweep file {path} does not exist")
    data = path.read_bytes()
    try:
        raw = yaml.safe_load(data)
    except yaml.YAMLError as err:
        raise SweepConfigError(f"{path}: not valid YAML: {err}") from err
    spec = check_sweep(raw, str(path))
    spec.path = path
    spec.sha256 = hashlib.sha256(data).hexdigest()
    return spec
