"""Learning speed: after how many batches do the generator's mouths follow the audio?

The quickstart-size generator (configs/quickstart.yaml) at 96 px on the synthetic corpus,
trained by `lipmem fit`'s own objects (LightningCLI, run=False) for a fixed number of
batches per seed; at 100, 200, 300 and 500 batches the judged generator (the EMA where the
recipe has one) speaks every frame of the first test clips (an unseen speaker) and is
scored against the corpus' mouth track, as `lipmem eval` scores it: ``openness_mae`` and
``silent_closed_share``. Each *arm* is a recipe; the arms add the recipe's changes one at
a time, so the JSON says which change bought what. Banks are built once per distinct bank
recipe with `lipmem bank build` (fixed step budgets, so load cannot change them).

    python -m benchmarks.learning_speed                       # every arm, seeds 0 1 2
    python -m benchmarks.learning_speed --arms recipe recipe_no_perceptual --points 100 200 300
    python -m benchmarks.learning_speed --arms recipe --seeds 0
"""

from __future__ import annotations

import argparse
import hashlib
import json
import os
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning as L
import numpy as np
import torch

from benchmarks.common import RESULTS, write_result
from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.synth.corpus import SynthConfig, synthesize
from lightning_modules.cli.trainer import DEFAULT_CONFIG, LipmemCLI
from lightning_modules.evaluation.mouth_metrics import MouthMetrics, OpennessEstimator
from lightning_modules.generation.clip_generation import generate_clip
from lightning_modules.lipsync_gan import LipSyncGAN

REPO = Path(__file__).resolve().parent.parent
POINTS = (100, 200, 300, 500)


@dataclass(frozen=True)
class Arm:
    """A recipe: the corpus' shard order, `lipmem bank build` overrides, `lipmem fit`
    overrides (both on top of the quickstart configs)."""

    what: str
    shard_order: str = "interleaved"
    bank: tuple[str, ...] = ()
    fit: tuple[str, ...] = ()


# Before: the recipe of the first quickstart (one speaker per shard, a quarter-full shuffle
# buffer, a plain lower-face autoencoder bank clustered on raw codes, a generator from random
# weights drawing the whole face, judged on its live weights, a random-backbone LPIPS).
_BEFORE_BANK = ("--model.net.init_args.context=false", "--model.net.init_args.code_input=raw",
                "--model.net.init_args.composite_feather=null", "--model.mouth_l1_emphasis=0",
                "--model.lpips_backbone=random", "--bank.centre_per=none")
_STREAM = ("--data.shuffle_buffer=512", "--data.shuffle_fill=0.25")
_AE_INIT = ("--model.memory.init_from_autoencoder=false",)
_COMPOSITE = ("--model.generator.init_args.composite_feather=null",)
_EMA = ("--model.ema_decay=null",)
_LOSS = ("--model.loss.init_args.mouth_l1_emphasis=0", "--model.loss.init_args.lpips_backbone=random",
         "--model.g_lr=5e-4")
_BEFORE_FIT = _STREAM + _AE_INIT + _COMPOSITE + _EMA + _LOSS


ARMS: dict[str, Arm] = {
    "before": Arm("the first quickstart's recipe", "by_speaker", _BEFORE_BANK, _BEFORE_FIT),
    "mixed_stream": Arm("+ interleaved shards, full shuffle buffer, continuous workers",
                        "interleaved", _BEFORE_BANK, _AE_INIT + _COMPOSITE + _EMA + _LOSS),
    "mouth_bank": Arm("+ the context autoencoder's clip-centred bank, generator started from "
                      "that autoencoder", "interleaved", (), _COMPOSITE + _EMA + _LOSS),
    "composite": Arm("+ output composited into the visible input", "interleaved", (),
                     _EMA + _LOSS),
    "ema": Arm("+ judged on the EMA weights (BatchNorm recalibrated)", "interleaved", (), _LOSS),
    "recipe": Arm("+ mouth-weighted L1, g_lr 1e-3, ST-LPIPS: the current recipe "
                  "(configs/quickstart.yaml, configs/bank_quickstart.yaml)"),
    "recipe_no_perceptual": Arm("the current recipe without the perceptual term",
                                fit=("--model.loss.init_args.lpips_weight=0",)),
}


# ---------------------------------------------------------------------------- evaluation
class Judge:
    """Scores a generator on the first ``clips`` test clips like `lipmem eval` does."""

    def __init__(self, root: str, clips: int, image_size: int = 96) -> None:
        dm = LipSyncDataModule(root=root, image_size=image_size, num_workers=0)
        train = ((c.frames, c.mouth[:, 0]) for c in dm.clips("train") if c.mouth is not None)
        self.estimator = OpennessEstimator(image_size).fit(train, max_frames=4000)
        self.clips = list(dm.clips("test", limit=clips))
        self.cutter = dm._cutter(train=False)
        self.mask = dm.mask.numpy()

    def __call__(self, generator: torch.nn.Module, device: torch.device,
                 strip: Path | None = None) -> dict[str, float]:
        """Scores; ``strip``: also a PNG of 12 frames of the first clip (generated over truth)."""
        metrics = MouthMetrics(self.estimator)
        was_training = generator.training
        generator.eval()
        try:
            for i, clip in enumerate(self.clips):
                frames = generate_clip(generator, clip, self.cutter, self.mask, batch_size=32,
                                       device=device).images
                metrics.update(frames, clip.frames, clip.mouth, clip.audio, clip.fps,
                               clip.sample_rate)
                if i == 0 and strip is not None:
                    save_strip(strip, frames, clip.frames)
        finally:
            generator.train(was_training)
        generated, truth = metrics.compute()
        return {**{k: round(v, 4) for k, v in generated.items()},
                "ground_truth_openness_mae": round(truth["openness_mae"], 4)}


def save_strip(path: Path, generated: np.ndarray, truth: np.ndarray, count: int = 12) -> None:
    from PIL import Image

    idx = np.linspace(0, len(truth) - 1, count).round().astype(int)
    rows = [np.concatenate(list(frames[idx]), axis=1) for frames in (generated, truth)]
    path.parent.mkdir(parents=True, exist_ok=True)
    Image.fromarray(np.concatenate(rows)).save(path)


class LearningCurve(L.Callback):
    """Scores the judged generator at the given batch counts, then stops the fit."""

    def __init__(self, judge: Judge, points: tuple[int, ...], samples: Path | None = None
                 ) -> None:
        self.judge = judge
        self.points = points
        self.samples = samples
        self.scores: dict[int, dict[str, float]] = {}
        self.started = time.perf_counter()

    def on_train_batch_end(self, trainer: L.Trainer, pl_module: LipSyncGAN, *args: Any) -> None:
        batches = trainer.global_step // 2  # a D step and a G step per batch
        if batches not in self.points or batches in self.scores:
            return
        if pl_module.generator_ema is not None:
            pl_module.generator_ema.recalibrate()
        strip = self.samples / f"test_{batches:04d}.png" if self.samples else None
        score = self.judge(pl_module.eval_generator, pl_module.device, strip)
        score["train_seconds"] = round(time.perf_counter() - self.started, 1)
        self.scores[batches] = score
        print(f"  {batches} batches: {json.dumps(score)}", flush=True)
        if batches >= max(self.points):
            trainer.should_stop = True


# ---------------------------------------------------------------------------- stages
def corpus(out: Path, shard_order: str) -> Path:
    """The default synthetic corpus in the given shard order (data/synth when interleaved)."""
    root = REPO / "data" / "synth" if shard_order == "interleaved" else out / f"synth_{shard_order}"
    if not (root / "manifest.json").is_file():
        synthesize(SynthConfig(out_dir=str(root), shard_order=shard_order), progress=False)
    return root


def build_bank(out: Path, root: Path, overrides: tuple[str, ...]) -> dict[str, Any]:
    """`lipmem bank build` with the quickstart bank config; one build per recipe."""
    key = hashlib.sha256(json.dumps([str(root), list(overrides)]).encode()).hexdigest()[:10]
    folder = out / "banks" / key
    summary = folder / "bank" / "summary.json"
    registry = out / "registry"
    if not summary.is_file():
        env = dict(os.environ, WANDB_MODE="disabled", PYTHONPATH=str(REPO))
        cmd = [sys.executable, "-m", "lightning_modules.cli.main", "bank", "build", "--config",
               str(REPO / "configs" / "bank_quickstart.yaml"), f"--data.root={root}",
               f"--trainer.default_root_dir={folder}", f"--bank.registry={registry}",
               "--bank.name=memory-bank-" + key, "--trainer.logger=false", *overrides]
        subprocess.run(cmd, cwd=REPO, env=env, check=True)
    done = json.loads(summary.read_text())
    return {"ref": done["published"][0]["ref"], "registry": str(registry),
            "metrics": done.get("metrics", {}), "autoencoder": done["stages"]["autoencoder"]}


def fit(root: Path, bank: dict[str, Any], arm: Arm, seed: int, judge: Judge,
        points: tuple[int, ...], out: Path) -> dict[int, dict[str, float]]:
    args = ["--config", str(REPO / "configs" / "quickstart.yaml"), f"--seed_everything={seed}",
            f"--data.seed={seed}",
            f"--data.root={root}", f"--trainer.default_root_dir={out}",
            "--trainer.max_time=null", f"--trainer.max_steps={2 * max(points)}",
            "--trainer.logger=false", "--trainer.enable_progress_bar=false",
            "--trainer.enable_model_summary=false", "--trainer.callbacks=[]",
            "--trainer.enable_checkpointing=false", "--trainer.limit_val_batches=0",
            "--trainer.num_sanity_val_steps=0",
            f"--model.memory.source={bank['ref']}", f"--model.memory.registry={bank['registry']}",
            *arm.fit]
    cli = LipmemCLI(LipSyncGAN, LipSyncDataModule, run=False, args=args,
                    parser_kwargs={"parser_mode": "omegaconf",
                                   "default_config_files": [str(DEFAULT_CONFIG)]},
                    save_config_callback=None)
    curve = LearningCurve(judge, points, out / "samples")
    cli.trainer.callbacks.append(curve)
    cli.trainer.fit(cli.model, datamodule=cli.datamodule)
    return curve.scores


def summarise(runs: dict[int, dict[int, dict[str, float]]]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    points = sorted({p for scores in runs.values() for p in scores})
    for p in points:
        row = {}
        for key in ("openness_mae", "silent_closed_share"):
            values = [runs[s][p][key] for s in runs if p in runs[s]]
            row[key] = {"mean": round(float(np.mean(values)), 4),
                        "sd": round(float(np.std(values, ddof=1)), 4) if len(values) > 1 else None}
        out[str(p)] = row
    return out


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--arms", nargs="+", default=list(ARMS), choices=list(ARMS))
    ap.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    ap.add_argument("--points", nargs="+", type=int, default=list(POINTS))
    ap.add_argument("--eval-clips", type=int, default=8)
    ap.add_argument("--out", default="runs/bench/learning_speed")
    ap.add_argument("--result", default=str(RESULTS / "learning_speed_96px_cpu.json"))
    ap.add_argument("--extra", action="append", default=[],
                    help="more `lipmem fit` overrides for every arm (exploration)")
    ap.add_argument("--bank", default=None, help="use this bank REF instead of building one")
    ap.add_argument("--bank-registry", default=None)
    args = ap.parse_args()
    out = Path(args.out).resolve()
    points = tuple(sorted(args.points))
    result_path = Path(args.result)
    previous = json.loads(result_path.read_text()) if result_path.is_file() else {}
    arms_done: dict[str, Any] = dict(previous.get("arms", {}))
    judges: dict[str, Judge] = {}
    for name in args.arms:
        arm = ARMS[name]
        print(f"arm {name}: {arm.what}", flush=True)
        started = time.perf_counter()
        root = corpus(out, arm.shard_order)
        judge = judges.setdefault(str(root), Judge(str(root), args.eval_clips))
        bank = (build_bank(out, root, arm.bank) if args.bank is None else
                {"ref": args.bank, "registry": args.bank_registry})
        if args.extra:
            arm = Arm(arm.what + " + " + " ".join(args.extra), arm.shard_order, arm.bank,
                      arm.fit + tuple(args.extra))
        runs = {}
        for seed in args.seeds:
            print(f" seed {seed}", flush=True)
            runs[seed] = fit(root, bank, arm, seed, judge, points, out / "fits" / name / str(seed))
        arms_done[name] = {"what": arm.what, "shard_order": arm.shard_order,
                           "bank_overrides": list(arm.bank), "fit_overrides": list(arm.fit),
                           "bank": bank, "seeds": {str(s): {str(p): v for p, v in r.items()}
                                                   for s, r in runs.items()},
                           "mean_sd": summarise(runs),
                           "wall_seconds": round(time.perf_counter() - started, 1)}
        write_result("learning_speed_96px_cpu", {
            "what": "quickstart-size generator, 96 px, synthetic corpus: mouth openness error "
                    "and silent-frame closure of the judged generator on the first "
                    f"{args.eval_clips} test clips (an unseen speaker) after N batches of 16",
            "points": list(points), "arms": arms_done}, result_path)


if __name__ == "__main__":
    main()
