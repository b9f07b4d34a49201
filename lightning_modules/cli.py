"""`lipmem`: one console script for every job.

`lipmem fit|validate|test|predict` is a LightningCLI over LipSyncGAN + LipSyncDataModule
(YAML configs with class_path/init_args, omegaconf interpolation, flat dotted overrides such
as `--model.loss.l1_weight=3` that W&B sweeps pass through `${args}`). `lipmem bank build`
is a LightningCLI too (MouthAutoencoder + the same datamodule + `bank.*` keys). Other jobs
(`lipmem data synth`, `lipmem bank inspect`) are plain argparse subcommands.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from datamodules.windows import mel_frames_for

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
REPO_ROOT = Path(__file__).resolve().parent.parent
DEFAULT_CONFIG = REPO_ROOT / "configs" / "default.yaml"
BANK_CONFIG = REPO_ROOT / "configs" / "bank.yaml"


class LoggedConfigCallback(SaveConfigCallback):
    """Saves the resolved config beside the run and records it in every logger (W&B config)."""

    def save_config(self, trainer: Any, pl_module: Any, stage: str) -> None:
        config = self.config.as_dict() if hasattr(self.config, "as_dict") else dict(self.config)
        for logger in trainer.loggers:
            logger.log_hyperparams(config)


class RunFolderCLI(LightningCLI):
    def before_instantiate_classes(self) -> None:
        """A logger without save_dir writes into the run folder, like the checkpoints."""
        config = self.config[self.subcommand] if self.subcommand else self.config
        trainer = config.trainer
        logger = trainer.get("logger")
        loggers = logger if isinstance(logger, list) else [logger]
        for item in loggers:
            init_args = getattr(item, "init_args", None)
            if init_args is not None and "save_dir" in init_args and init_args.save_dir is None:
                init_args.save_dir = trainer.default_root_dir or "."


class LipmemCLI(RunFolderCLI):
    def before_instantiate_classes(self) -> None:
        """`--ckpt_path REF` becomes the artifact's checkpoint file; a resumed fit logs into
        the W&B run the checkpoint was written by."""
        super().before_instantiate_classes()
        from lightning_modules.checkpoint_refs import (
            local_ckpt_file,
            resolve_ckpt_path,
            wandb_run_id,
        )

        config = self.config[self.subcommand] if self.subcommand else self.config
        if not config.get("ckpt_path"):
            return
        config.ckpt_path = resolve_ckpt_path(config.ckpt_path)
        ckpt_file = local_ckpt_file(config.ckpt_path, config.trainer.default_root_dir)
        if ckpt_file is not None:
            # Lightning looks for `last` only in the checkpoint callbacks' folders, which
            # RunCheckpoint sets late; name the file (a missing one stays `last`: fresh start)
            config.ckpt_path = str(ckpt_file)
        if self.subcommand != "fit" or ckpt_file is None:
            return
        run_id = wandb_run_id(ckpt_file)
        logger = config.trainer.get("logger")
        for item in logger if isinstance(logger, list) else [logger]:
            init_args = getattr(item, "init_args", None)
            if run_id and init_args is not None and "id" in init_args and not init_args.id:
                init_args.id = run_id

    def add_arguments_to_parser(self, parser: Any) -> None:
        # The data decides the geometry; the generator is built to match it.
        parser.link_arguments("data.image_size", "model.generator.init_args.image_size")
        parser.link_arguments("data.use_reference", "model.generator.init_args.use_reference")
        parser.link_arguments("data.audio_seconds", "model.generator.init_args.mel_frames",
                              compute_fn=mel_frames_for)


class BankCLI(RunFolderCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        from memory_bank.build_job import BankSpec

        parser.add_dataclass_arguments(BankSpec, "bank")
        parser.link_arguments("data.image_size", "model.net.init_args.image_size")


def run_trainer_cli(args: list[str] | None = None) -> None:
    from datamodules.lipsync_datamodule import LipSyncDataModule
    from lightning_modules.lipsync_gan import LipSyncGAN

    defaults = [str(DEFAULT_CONFIG)] if DEFAULT_CONFIG.is_file() else []
    LipmemCLI(
        LipSyncGAN,
        LipSyncDataModule,
        parser_kwargs={
            "parser_mode": "omegaconf",
            **{cmd: {"default_config_files": defaults} for cmd in TRAINER_COMMANDS},
        },
        save_config_callback=LoggedConfigCallback,
        save_config_kwargs={"overwrite": True},
        args=args,
    )


def run_bank_build(args: list[str]) -> int:
    """Autoencoder fit -> encode -> cluster -> publish (memory_bank.build_job)."""
    from datamodules.lipsync_datamodule import LipSyncDataModule
    from lightning_modules.mouth_autoencoder import MouthAutoencoder
    from memory_bank.build_job import BankBuild, BankSpec

    cli = BankCLI(
        MouthAutoencoder,
        LipSyncDataModule,
        run=False,
        parser_kwargs={"parser_mode": "omegaconf",
                       "default_config_files": [str(BANK_CONFIG)] if BANK_CONFIG.is_file() else []},
        save_config_callback=LoggedConfigCallback,
        save_config_kwargs={"overwrite": True},
        args=args,
    )
    spec = cli.config_init.bank
    spec = spec if isinstance(spec, BankSpec) else BankSpec(**dict(spec))
    BankBuild(spec, cli.trainer, cli.model, cli.datamodule)()
    return 0


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
    from lightning_modules.sweep_runner import add_sweep_arguments

    add_sweep_arguments(commands.add_parser("sweep", help="run W&B sweep files offline"))
    return parser


def main(argv: list[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if argv and argv[0] in TRAINER_COMMANDS:
        # LightningCLI reads sys.argv itself when args is None, which DDP re-execution needs.
        run_trainer_cli(None if argv == sys.argv[1:] else argv)
        return 0
    if argv[:2] == ["bank", "build"]:
        return run_bank_build(argv[2:])
    if argv[:1] == ["sweep"]:  # its own parser: trial args after `--` (see run_sweep)
        from lightning_modules.sweep_runner import run_sweep

        return run_sweep(argv[1:])
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.command is None:
        parser.print_help()
        return 2
    if args.command == "data" and args.data_command == "synth":
        from datamodules.synth.cli import run_synth

        return run_synth(args)
    if args.command == "bank" and args.bank_command == "inspect":
        from memory_bank.inspect_bank import inspect_bank

        inspect_bank(args.ref, args.out, args.registry)
        return 0
    parser.error(f"unknown command {args.command!r}")
    return 2


if __name__ == "__main__":
    sys.exit(main())
