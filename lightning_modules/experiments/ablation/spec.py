"""The ablation file (configs/ablation/*.yaml): what to build, train and evaluate.

Read and checked up front, so a typo fails in a second, not after an hour of fits. The grid
is (variant, n) cells x seeds; a variant is a list of `lipmem fit` overrides, and its memory
bank reference (`--model.memory.source=...`, default `memory-bank:n{n}`) must name a bank the
file's `bank:` section builds.
"""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from memory_bank.bank import BANK_NAME, bank_alias

DEFAULT_SOURCE = "memory-bank:n{n}"     # memory_bank.memory_config.MemoryConfig.source
SOURCE_KEY = "--model.memory.source="
RESERVED_KEYS = ("--seed_everything", "--data.seed", "--trainer.default_root_dir",
                 "--model.generator.init_args.num_codes", "--model.memory.registry")
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")


class AblationConfigError(ValueError):
    """A bad ablation file: the message names the file, the key and what was expected."""


@dataclass(frozen=True)
class Run:
    """One fit + eval: a grid cell and a seed."""

    variant: str
    n: int
    seed: int
    overrides: tuple[str, ...]          # the variant's fit overrides, as written in the file
    fit_args: tuple[str, ...] = ()      # the file-wide fit args (before the overrides)

    @property
    def arm(self) -> str:
        """The cell the seeds are aggregated over."""
        return f"{self.variant}-n{self.n}"

    @property
    def name(self) -> str:
        return f"{self.arm}-s{self.seed}"

    @property
    def bank_ref(self) -> str:
        """The memory bank the fit loads (MemoryConfig replaces {n} the same way): the last
        `--model.memory.source=` on the command line, else the default. A source set inside
        a --config file is not seen here: give it on the command line."""
        source = DEFAULT_SOURCE
        for arg in (*self.fit_args, *self.overrides):
            if arg.startswith(SOURCE_KEY):
                source = arg[len(SOURCE_KEY):]
        return source.replace("{n}", str(self.n))


@dataclass
class BankPlan:
    """One autoencoder + feature matrix; centre banks for `n`, random-member banks for
    `random_n`, all published to the ablation's own registry."""

    args: list[str] = field(default_factory=list)
    n: list[int] = field(default_factory=lambda: [80])
    random_n: list[int] = field(default_factory=list)
    seed: int = 0

    def refs(self) -> set[str]:
        return ({f"{BANK_NAME}:{bank_alias(n, 'faiss_kmeans')}" for n in self.n}
                | {f"{BANK_NAME}:{bank_alias(n, 'random_members')}" for n in self.random_n})


@dataclass
class AblationSpec:
    path: Path
    sha256: str
    name: str
    data: str
    synth: list[str] | None             # `lipmem data synth` options when the corpus is missing
    seeds: list[int]
    bank: BankPlan
    fit_args: list[str]
    eval_command: list[str]
    eval_args: list[str]
    sync_expert: str | None
    variants: dict[str, list[str]]
    runs: list[Run]
    notes: str = ""


def _fail(path: Path, key: str, message: str) -> AblationConfigError:
    return AblationConfigError(f"{path}: {key}: {message}")


def _str_list(path: Path, key: str, value: Any, *, allow_empty: bool = True) -> list[str]:
    if value is None:
        value = []
    if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
        raise _fail(path, key, f"expected a list of strings (CLI arguments), got {value!r}")
    if not allow_empty and not value:
        raise _fail(path, key, "must not be empty")
    return list(value)


def _int_list(path: Path, key: str, value: Any, *, minimum: int) -> list[int]:
    if not isinstance(value, list) or not value or not all(
            isinstance(v, int) and not isinstance(v, bool) and v >= minimum for v in value):
        raise _fail(path, key, f"expected a non-empty list of integers >= {minimum}, got "
                               f"{value!r}")
    if len(set(value)) != len(value):
        raise _fail(path, key, f"{value!r} lists a value twice")
    return list(value)


def _check_overrides(path: Path, key: str, args: list[str]) -> None:
    for arg in args:
        if arg.split("=", 1)[0] in RESERVED_KEYS:
            raise _fail(path, key, f"{arg!r} is set by the runner for every run (seed, n, run "
                                   "folder, registry); remove it")


def load_spec(path: str | Path) -> AblationSpec:
    path = Path(path)
    if not path.is_file():
        raise AblationConfigError(f"{path}: no such ablation file (see configs/ablation/)")
    text = path.read_text()
    raw = yaml.safe_load(text)
    if not isinstance(raw, dict):
        raise AblationConfigError(f"{path}: expected a YAML mapping at the top level")
    known = {"name", "notes", "data", "synth", "seeds", "bank", "fit", "eval", "variants", "grid"}
    unknown = sorted(set(raw) - known)
    if unknown:
        raise _fail(path, ", ".join(unknown), f"unknown key(s); expected {sorted(known)}")
    name = raw.get("name") or path.stem
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise _fail(path, "name", f"{name!r}: expected letters, digits, . _ -")
    data = raw.get("data")
    if not isinstance(data, str) or not data:
        raise _fail(path, "data", f"{data!r}: expected the corpus root (a folder with "
                                  "manifest.json)")
    seeds = _int_list(path, "seeds", raw.get("seeds"), minimum=0)
    synth_raw = raw.get("synth", False)  # true, or a list of `lipmem data synth` options
    synth = ([] if synth_raw is True else
             None if synth_raw is False or synth_raw is None else
             _str_list(path, "synth", synth_raw))

    bank_raw = raw.get("bank") or {}
    if not isinstance(bank_raw, dict):
        raise _fail(path, "bank", f"expected a mapping, got {bank_raw!r}")
    bad = sorted(set(bank_raw) - {"args", "n", "random_n", "seed"})
    if bad:
        raise _fail(path, f"bank.{bad[0]}", "unknown key; expected args, n, random_n, seed")
    bank = BankPlan(args=_str_list(path, "bank.args", bank_raw.get("args")),
                    n=_int_list(path, "bank.n", bank_raw.get("n", [80]), minimum=1),
                    random_n=(_int_list(path, "bank.random_n", bank_raw["random_n"], minimum=1)
                              if bank_raw.get("random_n") else []),
                    seed=int(bank_raw.get("seed", 0)))
    for arg in bank.args:
        if arg.split("=", 1)[0] in ("--bank.n", "--bank.method", "--bank.registry",
                                    "--bank.encoder", "--bank.features",
                                    "--trainer.default_root_dir", "--bank.seed"):
            raise _fail(path, "bank.args", f"{arg!r} is set by the runner (use bank.n, "
                                           "bank.random_n, bank.seed)")

    fit = raw.get("fit") or {}
    fit_args = _str_list(path, "fit.args", fit.get("args") if isinstance(fit, dict) else fit)
    _check_overrides(path, "fit.args", fit_args)
    ev = raw.get("eval") or {}
    if not isinstance(ev, dict):
        raise _fail(path, "eval", f"expected a mapping, got {ev!r}")
    eval_command = _str_list(path, "eval.command", ev.get("command", ["lipmem", "eval"]),
                             allow_empty=False)
    eval_args = _str_list(path, "eval.args", ev.get("args"))
    sync_expert = ev.get("sync_expert")

    variants_raw = raw.get("variants")
    if not isinstance(variants_raw, dict) or not variants_raw:
        raise _fail(path, "variants", "expected a mapping of name -> list of fit overrides")
    variants = {}
    for vname, args in variants_raw.items():
        if not isinstance(vname, str) or not NAME_RE.match(vname):
            raise _fail(path, f"variants.{vname}", "names are letters, digits, . _ -")
        variants[vname] = _str_list(path, f"variants.{vname}", args)
        _check_overrides(path, f"variants.{vname}", variants[vname])

    grid = raw.get("grid")
    if not isinstance(grid, list) or not grid:
        raise _fail(path, "grid", "expected a list of {variants: [...], n: [...]} cells")
    runs: list[Run] = []
    available = bank.refs()
    for i, cell in enumerate(grid):
        key = f"grid[{i}]"
        if not isinstance(cell, dict) or set(cell) != {"variants", "n"}:
            raise _fail(path, key, f"expected {{variants: [...], n: [...]}}, got {cell!r}")
        names = _str_list(path, f"{key}.variants", cell["variants"], allow_empty=False)
        for vname in names:
            if vname not in variants:
                raise _fail(path, f"{key}.variants", f"{vname!r} is not in variants "
                                                     f"({sorted(variants)})")
        for n in _int_list(path, f"{key}.n", cell["n"], minimum=1):
            for vname in names:
                for seed in seeds:
                    run = Run(vname, n, seed, tuple(variants[vname]), tuple(fit_args))
                    if run.bank_ref not in available:
                        raise _fail(path, f"{key}", f"variant {vname!r} at n={n} loads "
                                    f"{run.bank_ref!r}, which bank: does not build (it builds "
                                    f"{sorted(available)}); add {n} to bank.n or bank.random_n")
                    runs.append(run)
    names_seen = [r.name for r in runs]
    dupes = sorted({x for x in names_seen if names_seen.count(x) > 1})
    if dupes:
        raise _fail(path, "grid", f"runs listed twice: {dupes}")
    return AblationSpec(path=path, sha256=hashlib.sha256(text.encode()).hexdigest(), name=name,
                        data=data, synth=synth, seeds=seeds, bank=bank,
                        fit_args=fit_args, eval_command=eval_command, eval_args=eval_args,
                        sync_expert=sync_expert, variants=variants, runs=runs,
                        notes=str(raw.get("notes") or ""))


def describe(spec: AblationSpec) -> dict[str, Any]:
    """The spec as recorded in ablation.json."""
    return json.loads(json.dumps({
        "file": str(spec.path), "sha256": spec.sha256, "name": spec.name, "data": spec.data,
        "seeds": spec.seeds, "bank": {"args": spec.bank.args, "n": spec.bank.n,
                                      "random_n": spec.bank.random_n, "seed": spec.bank.seed},
        "fit_args": spec.fit_args, "eval_command": spec.eval_command,
        "eval_args": spec.eval_args, "sync_expert": spec.sync_expert,
        "variants": spec.variants, "notes": spec.notes}))
