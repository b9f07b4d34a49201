"""The LightningCLI jobs behind `lipmem fit|validate|test|predict` and `lipmem bank build`.

Kept apart from the `lipmem` entry point (lightning_modules.cli.main) so that commands which do
not train (`infer`, `eval`, `data prep`, ...) start without importing Lightning.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from lightning.pytorch.cli import LightningCLI, SaveConfigCallback

from datamodules.windows import mel_frames_for
from lightning_modules.callbacks.graceful_stop import GracefulStop
from lightning_modules.callbacks.val_media_logger import ValMediaLogger
from lightning_modules.cli.config_files import (
    BANK_CONFIG,
    DEFAULT_CONFIG,
    SYNC_EXPERT_CONFIG,
    TRAINER_COMMANDS,
    require_default_config,
)
from lightning_modules.training.signals import exit_code_on_signal


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
    _checked_ckpt: str | None = None

    def _parse_ckpt_path(self) -> None:
        """Check a local `--ckpt_path` file right after parsing (sha256 sidecar, no
        code-carrying pickle). LightningCLI would also merge the file's `hyper_parameters`
        into the config here; lipmem does not: they can name class paths, and a file never
        chooses code. The config comes from the command line and config files alone."""
        subcommand = self.config.get("subcommand")
        ckpt_path = self.config[subcommand].get("ckpt_path") if subcommand else None
        if ckpt_path and Path(ckpt_path).is_file():
            from lightning_modules.checkpoints.digest import load_checkpoint_safely

            load_checkpoint_safely(ckpt_path)
            self._checked_ckpt = str(ckpt_path)

    def before_instantiate_classes(self) -> None:
        """`--ckpt_path REF` becomes the artifact's checkpoint file; a resumed fit logs into
        the W&B run the checkpoint was written by."""
        super().before_instantiate_classes()
        from lightning_modules.checkpoints.references import (
            local_ckpt_file,
            resolve_ckpt_path,
            wandb_run_id,
        )

        config = self.config[self.subcommand] if self.subcommand else self.config
        if not config.get("ckpt_path"):
            return
        if "weights_only" in config and config.weights_only is None:
            config.weights_only = True  # Lightning then unpickles tensors and plain types only
        asked = config.ckpt_path
        config.ckpt_path = resolve_ckpt_path(config.ckpt_path)
        from_registry = config.ckpt_path != asked  # sha256-checked against artifact.json
        ckpt_file = local_ckpt_file(config.ckpt_path, config.trainer.default_root_dir)
        if ckpt_file is not None:
            # Lightning looks for `last` only in the checkpoint callbacks' folders, which
            # RunCheckpoint sets late; name the file (a missing one stays `last`: fresh start)
            config.ckpt_path = str(ckpt_file)
            from lightning_modules.checkpoints.digest import load_checkpoint_safely

            # sha256 sidecar (registry files were checked on resolve) + a code-free load,
            # before anything is built: a tampered or code-carrying file stops the job here
            if str(ckpt_file) != self._checked_ckpt:
                load_checkpoint_safely(ckpt_file, warn_missing=not from_registry)
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
        # val grids, videos and code-usage histograms (`--media.*`): always on for the GAN
        parser.add_lightning_class_args(ValMediaLogger, "media")
        parser.link_arguments("data.audio_seconds", "model.generator.init_args.mel_frames",
                              compute_fn=mel_frames_for)


class BankCLI(RunFolderCLI):
    def add_arguments_to_parser(self, parser: Any) -> None:
        from memory_bank.build_job import BankSpec

        parser.add_dataclass_arguments(BankSpec, "bank")
        parser.link_arguments("data.image_size", "model.net.init_args.image_size")


def _run_subcommand_cli(cli_class: type[LipmemCLI], model_class: type, default_config: Path,
                        args: list[str] | None) -> None:
    """A fit/validate/test/predict CLI with ``default_config`` loaded first (when present)."""
    from datamodules.lipsync_datamodule import LipSyncDataModule

    defaults = [str(require_default_config(default_config))]
    with exit_code_on_signal():  # SIGTERM / Ctrl-C: last.ckpt saved, exit 143 / 130
        cli_class(
            model_class,
            LipSyncDataModule,
            parser_kwargs={
                "parser_mode": "omegaconf",
                **{cmd: {"default_config_files": defaults} for cmd in TRAINER_COMMANDS},
            },
            save_config_callback=LoggedConfigCallback,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [GracefulStop()]},  # always there, beside the config's
            args=args,
        )


def run_trainer_cli(args: list[str] | None = None) -> None:
    from lightning_modules.lipsync_gan import LipSyncGAN

    _run_subcommand_cli(LipmemCLI, LipSyncGAN, DEFAULT_CONFIG, args)


class SyncExpertCLI(LipmemCLI):
    """LipmemCLI's checkpoint references and W&B resume, with the expert's own links."""

    def add_arguments_to_parser(self, parser: Any) -> None:
        parser.add_argument("--lipmem_job", default="sync_expert",
                            help="which job the config is for (read before parsing)")
        parser.link_arguments("data.image_size", "model.net.init_args.image_size")
        parser.link_arguments("data.audio_seconds", "model.net.init_args.mel_frames",
                              compute_fn=mel_frames_for)


def run_sync_expert_cli(args: list[str] | None = None) -> None:
    """`lipmem fit --config configs/sync_expert.yaml`: SyncExpert on the same shards."""
    from lightning_modules.sync_expert import SyncExpert

    _run_subcommand_cli(SyncExpertCLI, SyncExpert, SYNC_EXPERT_CONFIG, args)


def run_bank_build(args: list[str]) -> int:
    """Autoencoder fit -> encode -> cluster -> publish (memory_bank.build_job)."""
    from datamodules.lipsync_datamodule import LipSyncDataModule
    from lightning_modules.mouth_autoencoder import MouthAutoencoder
    from memory_bank.build_job import BankBuild, BankSpec

    with exit_code_on_signal():
        cli = BankCLI(
            MouthAutoencoder,
            LipSyncDataModule,
            run=False,
            parser_kwargs={"parser_mode": "omegaconf",
                           "default_config_files": [str(require_default_config(BANK_CONFIG))]},
            save_config_callback=LoggedConfigCallback,
            save_config_kwargs={"overwrite": True},
            trainer_defaults={"callbacks": [GracefulStop()]},
            args=args,
        )
        spec = cli.config_init.bank
        spec = spec if isinstance(spec, BankSpec) else BankSpec(**dict(spec))
        BankBuild(spec, cli.trainer, cli.model, cli.datamodule)()
    return 0
