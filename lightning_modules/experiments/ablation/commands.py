"""The subprocess command lines of an ablation: corpus, banks, one fit and one eval per run.

Every job is the real console script (`lipmem ...`), exactly what a person would type, so a
run can be repeated by hand from the command recorded in its folder.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from lightning_modules.experiments.ablation.spec import AblationSpec, Run
from lightning_modules.experiments.sweeps.command import resolve_executable

# Every arm is scored at its best validation point (val/mouth_score, the fit's top-1 checkpoint),
# which the runner links here after the fit; the test split stays unseen by the selection.
CHECKPOINT = Path("checkpoints") / "best.ckpt"
EVAL_JSON = "eval.json"


@dataclass(frozen=True)
class Layout:
    """Where everything of one ablation lives (under --out)."""

    out: Path

    @property
    def registry(self) -> Path:
        """Banks, the autoencoder and the models go to this registry, not ./artifacts, so
        the ablation never moves the aliases (memory-bank:n80, latest) a user relies on."""
        return self.out / "registry"

    @property
    def bank_dir(self) -> Path:
        return self.out / "bank"

    @property
    def random_bank_dir(self) -> Path:
        return self.out / "bank-random"

    def bank_summary(self, random: bool = False) -> Path:
        """Written by memory_bank.build_job at the end of a build: the stage marker."""
        return (self.random_bank_dir if random else self.bank_dir) / "bank" / "summary.json"

    def run_dir(self, run: Run) -> Path:
        return self.out / "runs" / run.name


def _list_arg(values: list[int]) -> str:
    return "[" + ",".join(str(v) for v in values) + "]"


def synth_command(spec: AblationSpec) -> list[str]:
    return resolve_executable(["lipmem", "data", "synth", "--out", spec.data, *(spec.synth or [])])


def bank_command(spec: AblationSpec, layout: Layout) -> list[str]:
    """Autoencoder fit -> features -> k-means centres for every bank.n."""
    return resolve_executable([
        "lipmem", "bank", "build", *spec.bank.args, f"--data.root={spec.data}",
        f"--trainer.default_root_dir={layout.bank_dir}", f"--bank.registry={layout.registry}",
        f"--bank.n={_list_arg(spec.bank.n)}", f"--bank.seed={spec.bank.seed}"])


def random_bank_command(spec: AblationSpec, layout: Layout, encoder: str,
                        features: str) -> list[str]:
    """Random corpus members from the SAME autoencoder and feature matrix as the centres."""
    return resolve_executable([
        "lipmem", "bank", "build", *spec.bank.args, f"--data.root={spec.data}",
        f"--trainer.default_root_dir={layout.random_bank_dir}",
        f"--bank.registry={layout.registry}", f"--bank.encoder={encoder}",
        f"--bank.features={features}", "--bank.method=random_members",
        f"--bank.n={_list_arg(spec.bank.random_n)}", f"--bank.seed={spec.bank.seed}"])


def fit_command(spec: AblationSpec, layout: Layout, run: Run) -> list[str]:
    """File-wide fit args, then the variant's overrides, then what the runner owns."""
    return resolve_executable([
        "lipmem", "fit", *spec.fit_args, *run.overrides, f"--data.root={spec.data}",
        f"--model.generator.init_args.num_codes={run.n}", f"--seed_everything={run.seed}",
        f"--data.seed={run.seed}",
        f"--trainer.default_root_dir={layout.run_dir(run)}",
        f"--model.memory.registry={layout.registry}",
        f"--trainer.logger.init_args.group=ablation-{spec.name}",
        f"--trainer.logger.init_args.name={run.name}"])


def eval_command(spec: AblationSpec, layout: Layout, run: Run) -> list[str]:
    """`lipmem eval --model CKPT --data ROOT --out DIR [--sync-expert REF]` (writes eval.json)."""
    run_dir = layout.run_dir(run)
    argv = [*spec.eval_command, "--model", str(run_dir / CHECKPOINT), "--data", spec.data,
            "--out", str(run_dir / "eval")]
    if spec.sync_expert:
        argv += ["--sync-expert", spec.sync_expert]
    return resolve_executable([*argv, *spec.eval_args])
