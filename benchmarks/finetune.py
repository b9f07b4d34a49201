"""Fine-tuning a base model on one person vs training from scratch, at 2, 5 and 10 CPU-minutes.

    python -m benchmarks.finetune --base runs/quickstart/checkpoints/last.ckpt
    python -m benchmarks.finetune --base model-3kx9q2ab:best --registry artifacts --seeds 0
    python -m benchmarks.finetune --smoke --base B.ckpt --base-config configs/smoke.yaml
    python -m benchmarks.finetune --base B.ckpt --seeds 1 2 \
        --add-to benchmarks/results/finetune_cpu.json      # more seeds, the same batch budgets

One person's mp4s are made and prepped as a user would (benchmarks.personal_corpus: videos ->
`lipmem data prep`, split by video, plus the mouth track that drew each frame). The arms train
with the same recipe (the base's config + configs/finetune.yaml) through `lipmem fit`'s own
objects: ``finetune`` starts from ``--base`` (model.init_from: its EMA weights, discriminator
and memory codes, kept as they are); ``finetune_refine`` / ``finetune_rebuild`` also refit
the base's codes on the person's frames (model.memory.refit; ``--arms`` picks them);
``scratch`` starts from random weights with memory codes bootstrapped from the person's
frames (no base, no bank). The judged generator speaks every frame of the
person's held-out test clips and is scored as `lipmem eval` scores it (``openness_mae``,
``silent_closed_share``; benchmarks.learning_speed.Judge).

Budget: the CPU-minute points are converted to fixed batch counts from the batches/s measured
at the start of the first arm (after a warm-up), and every arm trains exactly those batches;
one run per arm and seed is scored at each point on the way (the recipe has no schedule that
depends on the total, and validation, checkpoints and early stopping are off, so a run scored
at 2 minutes on its way to 10 is the same as a 2-minute run). Judging is not counted.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from benchmarks.common import RESULTS, write_result
from benchmarks.learning_speed import Judge
from benchmarks.personal_corpus import make_personal_corpus
from datamodules.lipsync_datamodule import LipSyncDataModule
from lightning_modules.cli.trainer import DEFAULT_CONFIG, LipmemCLI
from lightning_modules.generation.clip_generation import load_generator
from lightning_modules.lipsync_gan import LipSyncGAN

REPO = Path(__file__).resolve().parent.parent
FINETUNE_CONFIG = REPO / "configs" / "finetune.yaml"
MINUTES = (2.0, 5.0, 10.0)
SCORES = ("openness_mae", "silent_closed_share")
# arm -> `lipmem fit` overrides on top of the recipe; {base} / {registry} are filled in
ARMS: dict[str, tuple[str, ...]] = {
    "finetune": ("--model.init_from={base}",),
    "finetune_refine": ("--model.init_from={base}", "--model.memory.refit=refine"),
    "finetune_rebuild": ("--model.init_from={base}", "--model.memory.refit=rebuild"),
    "scratch": ("--model.memory.source=bootstrap", "--model.memory.init_from_autoencoder=false"),
}


# ---------------------------------------------------------------------------- measuring
def tree_cpu_seconds() -> float | None:
    """User + system CPU seconds of this process and its live descendants (loader workers),
    from /proc; None where there is no /proc."""
    tick = os.sysconf("SC_CLK_TCK")

    def walk(pid: int) -> float:
        try:
            stat = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            own = (int(stat[11]) + int(stat[12])) / tick  # utime, stime
            kids = [int(c) for t in Path(f"/proc/{pid}/task").iterdir()
                    for c in (t / "children").read_text().split()]
        except (OSError, ValueError, IndexError):
            return 0.0
        return own + sum(walk(k) for k in kids)

    return round(walk(os.getpid()), 1) if Path("/proc/self/stat").exists() else None


class Clock:
    """Training wall and CPU seconds, paused while judging."""

    def __init__(self) -> None:
        self.wall = 0.0
        self.cpu = 0.0
        self._since: tuple[float, float | None] | None = None

    def start(self) -> None:
        self._since = (time.perf_counter(), tree_cpu_seconds())

    def pause(self) -> None:
        if self._since is None:
            return
        wall, cpu = self._since
        self.wall += time.perf_counter() - wall
        now = tree_cpu_seconds()
        self.cpu += (now - cpu) if now is not None and cpu is not None else 0.0
        self._since = None


class BudgetCurve(L.Callback):
    """Scores the judged generator at batch counts; finds them first (from the minutes and
    the batches/s over batches ``warmup``..``warmup + calibrate``) unless ``points`` is given."""

    def __init__(self, judge: Judge, minutes: tuple[float, ...], warmup: int, calibrate: int,
                 points: dict[float, int] | None = None) -> None:
        self.judge, self.minutes = judge, minutes
        self.warmup, self.calibrate = warmup, calibrate
        self.points = points
        self.rate: float | None = None
        self.clock = Clock()
        self._calibration_start = 0.0
        self.scores: dict[float, dict[str, Any]] = {}

    def on_train_start(self, trainer: L.Trainer, pl_module: LipSyncGAN) -> None:
        self.clock.start()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: LipSyncGAN, *args: Any) -> None:
        batches = trainer.global_step // 2  # a D step and a G step per batch
        if self.points is None:
            self._calibrate(batches)
            if self.points is None:
                return
        due = [m for m, b in self.points.items() if b == batches and m not in self.scores]
        if due:
            self._score(pl_module, batches, due)
        if len(self.scores) == len(self.points):
            trainer.should_stop = True

    def _calibrate(self, batches: int) -> None:
        if batches == self.warmup:
            self._calibration_start = time.perf_counter()
        elif batches == self.warmup + self.calibrate:
            self.rate = self.calibrate / (time.perf_counter() - self._calibration_start)
            self.points = {m: max(batches, round(m * 60 * self.rate)) for m in self.minutes}
            print(f"  {self.rate:.3f} batches/s -> batch budgets {self.points}", flush=True)

    def _score(self, pl_module: LipSyncGAN, batches: int, minutes: list[float]) -> None:
        self.clock.pause()
        if pl_module.generator_ema is not None:
            pl_module.generator_ema.recalibrate()
        score = self.judge(pl_module.eval_generator, pl_module.device)
        score.update(batches=batches, train_seconds=round(self.clock.wall, 1),
                     train_cpu_seconds=round(self.clock.cpu, 1))
        for m in minutes:
            self.scores[m] = score
        print(f"  {batches} batches ({', '.join(map(str, minutes))} min): {json.dumps(score)}",
              flush=True)
        self.clock.start()


# ---------------------------------------------------------------------------- stages
def person_corpus(out: Path, args: argparse.Namespace, image_size: int) -> dict[str, Any]:
    """The person's corpus at the base's image size; made once (reused when present)."""
    root = out / "person"
    summary = out / "person_corpus.json"
    if (root / "manifest.json").is_file() and summary.is_file():
        return json.loads(summary.read_text())
    started = time.perf_counter()
    prep = {"clip_seconds": 0.8, "min_clip_seconds": 0.8} if args.smoke else {}
    made = make_personal_corpus(root, args.clips, args.seconds, args.size, image_size,
                                workers=args.workers, **prep)
    info = {"root": str(root), "clips": args.clips, "seconds_each": args.seconds,
            "video_side": args.size, "image_size": image_size,
            "splits": {k: v["clips"] for k, v in made["manifest"]["splits"].items()},
            "kept_clips": made["report"]["kept_clips"],
            "make_and_prep_seconds": round(time.perf_counter() - started, 1)}
    summary.write_text(json.dumps(info, indent=2))
    return info


def fit(arm: str, args: argparse.Namespace, root: str, seed: int, curve: BudgetCurve,
        out: Path) -> None:
    """`lipmem fit` with the recipe, the arm's overrides and the run's fixed settings."""
    filled = [o.format(base=args.base) for o in ARMS[arm]]
    registry = [f"--model.memory.registry={args.registry}"] if args.registry else []
    steps = 2 * max(curve.points.values()) if curve.points else 2_000_000
    cli_args = ["--config", str(args.base_config), "--config", str(FINETUNE_CONFIG),
                f"--seed_everything={seed}", f"--data.seed={seed}", f"--data.root={root}",
                f"--trainer.default_root_dir={out}", f"--trainer.max_steps={steps}",
                "--trainer.max_epochs=-1", "--trainer.logger=false",
                "--trainer.enable_progress_bar=false", "--trainer.enable_model_summary=false",
                "--trainer.callbacks=[]", "--trainer.enable_checkpointing=false",
                "--trainer.limit_val_batches=0", "--trainer.num_sanity_val_steps=0",
                *registry, *filled, *args.extra]
    cli = LipmemCLI(LipSyncGAN, LipSyncDataModule, run=False, args=cli_args,
                    parser_kwargs={"parser_mode": "omegaconf",
                                   "default_config_files": [str(DEFAULT_CONFIG)]},
                    save_config_callback=None)
    cli.trainer.callbacks.append(curve)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)


def score_base(args: argparse.Namespace, judge: Judge) -> dict[str, Any]:
    """The base as it is, on the person (the fine-tune's start) and, when given, on its own
    corpus (the quality the fine-tune should reach on the new face)."""
    base = load_generator(args.base, args.registry, fold_norms=False)
    result: dict[str, Any] = {"on_person": judge(base.generator, torch.device("cpu"))}
    if args.base_corpus:
        own = Judge(args.base_corpus, args.eval_clips, base.geometry.image_size)
        result["on_base_corpus"] = {"root": args.base_corpus,
                                    **own(base.generator, torch.device("cpu"))}
    return result


def summarise(arms: dict[str, dict[int, dict[float, dict[str, Any]]]],
              minutes: tuple[float, ...]) -> dict[str, Any]:
    """Per point and arm: mean and sd over seeds; whether fine-tuning beat scratch."""
    out: dict[str, Any] = {}
    for m in minutes:
        row: dict[str, Any] = {}
        for arm, seeds in arms.items():
            row[arm] = {}
            for key in SCORES:
                values = [s[m][key] for s in seeds.values() if m in s]
                row[arm][key] = {"mean": round(float(np.mean(values)), 4) if values else None,
                                 "sd": round(float(np.std(values, ddof=1)), 4)
                                 if len(values) > 1 else None}
        if {"finetune", "scratch"} <= row.keys():
            ft, sc = row["finetune"]["openness_mae"]["mean"], row["scratch"]["openness_mae"]["mean"]
            row["finetune_lower_openness_mae"] = ft < sc if None not in (ft, sc) else None
        out[str(m)] = row
    return out


def previous_result(path: Path, args: argparse.Namespace, minutes: tuple[float, ...]
                    ) -> tuple[dict[float, int], float | None, dict[str, dict[int, dict]]]:
    """A result of this benchmark to add seeds to: its batch budgets (so the new runs train
    exactly as many batches as the old ones) and its scores per arm and seed. Refused, with
    the key, when it measured something else (another base, person or set of minutes)."""
    try:
        old = json.loads(path.read_text())
        budget = old["budget"]
        points = {float(m): int(budget["batches"][str(m)]) for m in minutes}
        seeds = {arm: {int(s): {float(m): v for m, v in runs.items()} for s, runs in by_seed.items()}
                 for arm, by_seed in old["seeds"].items()}
        base, corpus = old["base"]["ref"], old["corpus"]
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as err:
        raise SystemExit(f"--add-to {path}: not a readable finetune_cpu result ({err!r})") from err
    if old.get("benchmark") != "finetune_cpu" or old.get("smoke") != args.smoke:
        raise SystemExit(f"--add-to {path}: benchmark={old.get('benchmark')!r}, "
                         f"smoke={old.get('smoke')!r}; expected finetune_cpu, smoke={args.smoke}")
    if sorted(map(float, budget["minutes"])) != list(minutes):
        raise SystemExit(f"--add-to {path}: budget.minutes={budget['minutes']}, this run "
                         f"{list(minutes)}")
    if base != args.base:
        raise SystemExit(f"--add-to {path}: base.ref={base!r}, this run --base {args.base!r}")
    for key in ("clips", "seconds_each", "video_side"):
        mine = {"clips": args.clips, "seconds_each": args.seconds, "video_side": args.size}[key]
        if corpus.get(key) != mine:
            raise SystemExit(f"--add-to {path}: corpus.{key}={corpus.get(key)!r}, this run {mine}")
    if old["recipe"].get("extra", []) != args.extra:
        raise SystemExit(f"--add-to {path}: recipe.extra={old['recipe'].get('extra')}, this run "
                         f"{args.extra}")
    unknown = sorted(set(seeds) - set(ARMS))
    if unknown:
        raise SystemExit(f"--add-to {path}: seeds has arms {unknown}; expected some of "
                         f"{sorted(ARMS)}")
    rate = budget.get("batches_per_second")
    return points, float(rate) if rate is not None else None, seeds


# ---------------------------------------------------------------------------- main
def parse_args() -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--base", required=True, help="base model: a .ckpt path or model-RUN:best")
    ap.add_argument("--base-config", default=str(REPO / "configs" / "quickstart.yaml"),
                    help="the config the base was trained with (architecture)")
    ap.add_argument("--registry", default=None, help="artifact registry for --base references")
    ap.add_argument("--base-corpus", default=None,
                    help="also score the base on this corpus' test clips (e.g. data/synth)")
    ap.add_argument("--minutes", nargs="+", type=float, default=list(MINUTES))
    ap.add_argument("--arms", nargs="+", default=["finetune", "scratch"], choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--warmup", type=int, default=3, help="batches before timing starts")
    ap.add_argument("--calibrate", type=int, default=20, help="batches timed for batches/s")
    ap.add_argument("--clips", type=int, default=24, help="the person's videos")
    ap.add_argument("--seconds", type=float, default=8.0, help="seconds per video")
    ap.add_argument("--size", type=int, default=192, help="video side in pixels")
    ap.add_argument("--workers", type=int, default=2, help="prep workers")
    ap.add_argument("--eval-clips", type=int, default=8, help="held-out test clips judged")
    ap.add_argument("--out", default="runs/bench/finetune")
    ap.add_argument("--result", default=None,
                    help="JSON path (default benchmarks/results/finetune_cpu.json; with "
                         "--smoke OUT/finetune_smoke.json)")
    ap.add_argument("--add-to", default=None, type=Path,
                    help="a previous result: train its batch budgets, keep its runs, add these "
                         "arms/seeds and write the merged result (default: to the same file)")
    ap.add_argument("--extra", action="append", default=[],
                    help="more `lipmem fit` overrides for every arm")
    ap.add_argument("--smoke", action="store_true",
                    help="seconds, not minutes: 4 short videos, 1 seed, 1 test clip, tiny budgets")
    args = ap.parse_args()
    if args.smoke:
        args.clips, args.seconds, args.size, args.workers = 4, 2.4, 160, 0
        args.seeds, args.eval_clips, args.warmup, args.calibrate = args.seeds[:1], 1, 1, 2
        if args.minutes == list(MINUTES):
            args.minutes = [0.02, 0.05]
    return args


def main() -> None:
    args = parse_args()
    out = Path(args.out).resolve()
    minutes = tuple(sorted(args.minutes))
    image_size = load_generator(args.base, args.registry).geometry.image_size
    corpus = person_corpus(out, args, image_size)
    judge = Judge(corpus["root"], args.eval_clips, image_size)
    started = time.perf_counter()
    base = score_base(args, judge)
    points: dict[float, int] | None = None
    rate: float | None = None
    arms: dict[str, dict[int, dict[float, dict[str, Any]]]] = {}
    if args.add_to is not None:
        points, rate, arms = previous_result(args.add_to, args, minutes)
    for arm in args.arms:
        for seed in args.seeds:
            if seed in arms.get(arm, {}):
                print(f"arm {arm}, seed {seed}: in {args.add_to}, kept", flush=True)
                continue
            print(f"arm {arm}, seed {seed}", flush=True)
            curve = BudgetCurve(judge, minutes, args.warmup, args.calibrate, points)
            fit(arm, args, corpus["root"], seed, curve, out / "fits" / arm / str(seed))
            points, rate = curve.points, rate or curve.rate  # every later run: same budgets
            arms.setdefault(arm, {})[seed] = curve.scores
    result = args.result or args.add_to or (out / "finetune_smoke.json" if args.smoke
                                            else RESULTS / "finetune_cpu.json")
    write_result("finetune_cpu", {
        "what": "one person (benchmarks.personal_corpus): fine-tuned from a base model vs "
                "trained from scratch with the same recipe; openness_mae and "
                f"silent_closed_share of the judged generator on the first {args.eval_clips} "
                "held-out test clips of that person",
        "smoke": args.smoke,
        "budget": {"mode": "fixed batch counts per point, from batches/s measured at the start "
                           "of the first run (warm-up excluded); judging not counted; "
                           "train_seconds / train_cpu_seconds are each run's own",
                   "minutes": list(minutes), "batches_per_second": round(rate, 4) if rate else None,
                   "warmup_batches": args.warmup, "calibration_batches": args.calibrate,
                   "batches": {str(m): b for m, b in (points or {}).items()}},
        "recipe": {"configs": [str(args.base_config), str(FINETUNE_CONFIG.relative_to(REPO))],
                   "seed": "--seed_everything and --data.seed (a fine-tune has no random "
                           "init: without the data seed its seeds would be one run)",
                   "arms": {a: list(ARMS[a]) for a in arms}, "extra": args.extra,
                   "off": "validation, checkpoints and early stopping (every run trains its "
                          "full budget)"},
        "corpus": corpus,
        "base": {"ref": args.base, **base},
        "seeds": {a: {str(s): {str(m): v for m, v in r.items()} for s, r in runs.items()}
                  for a, runs in arms.items()},
        "mean_sd": summarise(arms, minutes),
        "wall_seconds": round(time.perf_counter() - started, 1),
        "added_to": str(args.add_to) if args.add_to else None,
    }, result)


if __name__ == "__main__":
    main()
