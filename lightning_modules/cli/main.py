"""`lipmem`: one console script for every job.

`lipmem fit|validate|test|predict` is a LightningCLI over LipSyncGAN + LipSyncDataModule
(YAML configs with class_path/init_args, omegaconf interpolation, flat dotted overrides such
as `--model.loss.l1_weight=3` that W&B sweeps pass through `${args}`). `lipmem bank build`
is a LightningCLI too (MouthAutoencoder + the same datamodule + `bank.*` keys). Other jobs
(`lipmem data synth|prep`, `lipmem bank inspect`) are plain argparse subcommands.
"""

from __future__ import annotations

import argparse
import sys

from lightning_modules.cli.config_files import TRAINER_COMMANDS, config_job, shipped_config_args


def run_trainer_cli(args: list[str] | None = None) -> None:
    """`lipmem fit|validate|test|predict` over LipSyncGAN (lightning_modules.cli.trainer)."""
    from lightning_modules.cli.trainer import run_trainer_cli as run

    run(args)


def run_sync_expert_cli(args: list[str] | None = None) -> None:
    """`lipmem fit --config configs/sync_expert.yaml` (lightning_modules.cli.trainer)."""
    from lightning_modules.cli.trainer import run_sync_expert_cli as run

    run(args)


def run_bank_build(args: list[str]) -> int:
    """`lipmem bank build` (lightning_modules.cli.trainer)."""
    from lightning_modules.cli.trainer import run_bank_build as run

    return run(args)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="lipmem",
        description="Train and run memory-fused lip-sync generators.",
        epilog="Training jobs: lipmem {fit,validate,test,predict} --help (LightningCLI).",
    )
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in TRAINER_COMMANDS:
        commands.add_parser(cmd, help=f"{cmd} a lip-sync GAN (LightningCLI, see `lipmem {cmd} -h`)",
                            add_help=False)
    data = commands.add_parser("data", help="build corpora").add_subparsers(
        dest="data_command", metavar="DATA_COMMAND", required=True)
    from datamodules.synth.cli import add_synth_arguments

    add_synth_arguments(data.add_parser("synth", help="write the synthetic talking-face corpus"))
    from datamodules.prep.cli import add_prep_arguments

    add_prep_arguments(data.add_parser(
        "prep", help="talking-head videos (SPEAKER/VIDEO.mp4) -> face-crop clip shards"))
    from datamodules.export_clip import add_export_arguments

    add_export_arguments(data.add_parser("export", help="one clip of a corpus as an mp4"))
    bank = commands.add_parser("bank", help="build and inspect memory banks").add_subparsers(
        dest="bank_command", metavar="BANK_COMMAND", required=True)
    bank.add_parser("build", add_help=False,
                    help="autoencoder fit -> encode -> cluster -> publish (LightningCLI, see "
                         "`lipmem bank build -h`)")
    inspect = bank.add_parser("inspect", help="print a bank's metadata and draw its codes")
    inspect.add_argument("ref", help="memory-bank:n80, memory-bank:v3, wandb:ENTITY/PROJECT/"
                                     "memory-bank:latest or a codes file")
    inspect.add_argument("--out", default=".", help="folder for the PNGs (default: .)")
    inspect.add_argument("--registry", default=None,
                         help="local artifact registry (default: $LIPMEM_REGISTRY or ./artifacts)")
    from lightning_modules.experiments.sweeps.runner import add_sweep_arguments

    add_sweep_arguments(commands.add_parser("sweep", help="run W&B sweep files offline"))
    from lightning_modules.generation.infer.cli import add_infer_arguments

    add_infer_arguments(commands.add_parser(
        "infer", help="lip-sync a face video or image to an audio track (mp4 out)"))
    from lightning_modules.evaluation.cli import add_eval_arguments

    add_eval_arguments(commands.add_parser(
        "eval", help="score a generator on a split: image, sync and mouth metrics -> "
                     "eval.json + eval.md"))
    from lightning_modules.experiments.ablation.runner import add_ablation_arguments

    add_ablation_arguments(commands.add_parser(
        "ablation", help="memory ablation: fit + eval every (variant, n, seed), mean +- sd"))
    return parser


def main(argv: list[str] | None = None) -> int:
    from_sys = argv is None
    argv = shipped_config_args(list(sys.argv[1:] if argv is None else argv))
    if from_sys and argv != sys.argv[1:]:  # LightningCLI and DDP re-execution read sys.argv
        sys.argv[1:] = argv
    if argv and argv[0] in TRAINER_COMMANDS:
        # LightningCLI reads sys.argv itself when args is None, which DDP re-execution needs.
        if config_job(argv[1:]) == "sync_expert":
            run_sync_expert_cli(None if argv == sys.argv[1:] else argv)
            return 0
        run_trainer_cli(None if argv == sys.argv[1:] else argv)
        return 0
    if argv[:2] == ["bank", "build"]:
        return run_bank_build(argv[2:])
    if argv[:1] == ["ablation"]:
        from lightning_modules.experiments.ablation.runner import run_ablation

        return run_ablation(argv[1:])
    if argv[:1] == ["sweep"]:  # its own parser: trial args after `--` (see run_sweep)
        from lightning_modules.experiments.sweeps.runner import run_sweep

        return run_sweep(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "infer":
        from lightning_modules.generation.infer.cli import run_infer

        return run_infer(args)
    if args.command == "eval":
        from lightning_modules.evaluation.cli import run_eval

        return run_eval(args)
    if args.command == "data" and args.data_command == "synth":
        from datamodules.synth.cli import run_synth

        return run_synth(args)
    if args.command == "data" and args.data_command == "prep":
        from datamodules.prep.cli import run_prep

        return run_prep(args)
    if args.command == "data" and args.data_command == "export":
        from datamodules.export_clip import run_export

        return run_export(args)
    if args.command == "bank" and args.bank_command == "inspect":
        from memory_bank.inspect_bank import inspect_bank

        inspect_bank(args.ref, args.out, args.registry)
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
