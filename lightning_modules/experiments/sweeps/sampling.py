"""Trial parameters for the offline runner: grid points or seeded random draws.

Each random trial draws from its own generator seeded by (seed, trial index), so trial k gets
the same parameters whatever `--count` is: a resumed or extended sweep repeats the finished
trials' parameters exactly. `bayes` needs W&B's server-side engine; offline it runs as
random over the same distributions, and the plan says so.
"""

from __future__ import annotations

import itertools
import math
import random
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from lightning_modules.experiments.sweeps.spec import SweepConfigError, SweepSpec, distribution_of

BAYES_NOTE = ("method bayes: no Bayesian engine offline (W&B runs it on its server); drawing "
              "random samples from the same distributions instead")


def _log_uniform(lo: float, hi: float) -> Callable[[random.Random], float]:
    return lambda rng: math.exp(rng.uniform(math.log(lo), math.log(hi)))


def _quantized(draw: Callable[[random.Random], float], q: float) -> Callable[[random.Random], float]:
    return lambda rng: round(draw(rng) / q) * q


def _sampler(param: dict[str, Any]) -> Callable[[random.Random], Any]:
    dist = distribution_of(param)
    lo, hi = param.get("min"), param.get("max")
    q = float(param.get("q", 1.0))
    mu, sigma = float(param.get("mu", 0.0)), float(param.get("sigma", 1.0))
    if dist == "constant":
        return lambda rng: param["value"]
    if dist == "categorical":
        values, probs = param["values"], param.get("probabilities")
        return lambda rng: rng.choices(values, weights=probs)[0]
    simple: dict[str, Callable[[random.Random], Any]] = {
        "int_uniform": lambda rng: rng.randint(lo, hi),
        "uniform": lambda rng: rng.uniform(lo, hi),
        "log_uniform": lambda rng: math.exp(rng.uniform(lo, hi)),
        "normal": lambda rng: rng.gauss(mu, sigma),
        "log_normal": lambda rng: rng.lognormvariate(mu, sigma),
        "beta": lambda rng: rng.betavariate(float(param.get("a", 1.0)), float(param.get("b", 1.0))),
    }
    if dist in simple:
        return simple[dist]
    if dist == "log_uniform_values":
        return _log_uniform(lo, hi)
    if dist.startswith("q_") and dist[2:] in simple:
        return _quantized(simple[dist[2:]], q)
    if dist == "q_log_uniform_values":
        return _quantized(_log_uniform(lo, hi), q)
    raise SweepConfigError(f"distribution {dist!r} is not supported by the offline runner")


def random_draw(spec: SweepSpec, seed: int, index: int) -> dict[str, Any]:
    """Parameters of random trial `index` (independent of how many trials are run)."""
    rng = random.Random(f"lipmem-sweep:{seed}:{index}")
    draw: dict[str, Any] = {}
    for name, param in spec.parameters.items():
        try:
            sampler = _sampler(param)
        except SweepConfigError as err:
            raise SweepConfigError(f"{spec.path}: parameters.{name}: {err}") from None
        draw[name] = sampler(rng)
    return draw


def _grid_values(name: str, param: dict[str, Any], where: str) -> list[Any]:
    dist = distribution_of(param)
    if dist == "constant":
        return [param["value"]]
    if dist == "categorical":
        return list(param["values"])
    if dist == "int_uniform":
        return list(range(param["min"], param["max"] + 1))
    if dist == "q_uniform":
        q = float(param.get("q", 1.0))
        steps = math.floor((param["max"] - param["min"]) / q + 1e-9)
        return [param["min"] + i * q for i in range(steps + 1)]
    raise SweepConfigError(f"{where}: parameters.{name}: method grid needs values, value, "
                           f"int_uniform or q_uniform, not distribution {dist!r}")


def grid_points(spec: SweepSpec) -> list[dict[str, Any]]:
    """Every combination, first parameter varying slowest (the file's order)."""
    names = list(spec.parameters)
    axes = [_grid_values(n, spec.parameters[n], str(spec.path)) for n in names]
    return [dict(zip(names, combo, strict=True)) for combo in itertools.product(*axes)]


@dataclass
class Plan:
    method: str                      # what actually runs: grid or random
    trials: list[dict[str, Any]]
    notes: list[str] = field(default_factory=list)


def plan_trials(spec: SweepSpec, count: int | None, seed: int) -> Plan:
    """The trials to run: the grid (capped by count) or `count` seeded draws."""
    notes: list[str] = []
    if count is not None and count <= 0:
        raise SweepConfigError(f"--count={count}: expected a positive number of trials")
    if spec.run_cap is not None and (count is None or count > spec.run_cap):
        if count is not None:
            notes.append(f"run_cap={spec.run_cap} in {spec.path} caps --count={count}")
        count = spec.run_cap
    if spec.method == "grid":
        points = grid_points(spec)
        return Plan("grid", points[:count] if count else points, notes)
    if count is None:
        raise SweepConfigError(f"{spec.path}: method {spec.method} needs --count (how many "
                               "trials to draw)")
    if spec.method == "bayes":
        notes.append(BAYES_NOTE)
    if spec.raw.get("early_terminate"):
        notes.append("early_terminate is ignored offline: every trial runs to its end")
    return Plan("random", [random_draw(spec, seed, i) for i in range(count)], notes)
