"""Validation media for the GAN: an image grid, a video with its audio, code-usage histograms.

Media logging kept out of the LightningModule, as taming-transformers' ImageLogger: the
module computes metrics and hands over what it generated (``validation_step`` returns the
first batch's masked / generated / truth images, ``last_code_usage`` the rank-synced mean
weight per memory code); this callback decides when to write files and what to log.
Everything here runs on rank zero only. ``lipmem fit`` adds it as ``media`` (keys
``--media.every_n_val``, ``--media.num_images``, ``--media.video_seconds``).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from lightning.pytorch import Callback
from lightning.pytorch.utilities import rank_zero_only, rank_zero_warn

from lightning_modules.media.visualize import sample_grid, save_png


class ValMediaLogger(Callback):
    def __init__(self, every_n_val: int = 1, num_images: int = 8,
                 video_seconds: float = 4.0) -> None:
        """every_n_val: media on the 1st, (K+1)th, ... validation run (files and uploads cost
        time; 0 = none); num_images: rows of the val grid; video_seconds: seconds of the first
        val clip as a video with its audio (0 = no video)."""
        if isinstance(every_n_val, bool) or not isinstance(every_n_val, int) or every_n_val < 0:
            raise ValueError(f"media.every_n_val={every_n_val!r}: an integer >= 0 "
                             "(0 = no val images or videos)")
        if isinstance(num_images, bool) or not isinstance(num_images, int) or num_images < 1:
            raise ValueError(f"media.num_images={num_images!r}: an integer >= 1")
        if video_seconds < 0:
            raise ValueError(f"media.video_seconds={video_seconds}: must be >= 0 (0 = no video)")
        self.every_n_val = every_n_val
        self.num_images = num_images
        self.video_seconds = float(video_seconds)
        self._val_runs = 0
        self._images: tuple[torch.Tensor, ...] | None = None

    def _due(self, trainer: Any) -> bool:
        return (not trainer.sanity_checking and self.every_n_val > 0
                and self._val_runs % self.every_n_val == 0)

    def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
        self._images = None

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if self._images is None and isinstance(outputs, dict) and self._due(trainer) \
                and trainer.is_global_zero:
            self._images = tuple(outputs[k][:self.num_images].detach().float().cpu()
                                 for k in ("masked", "generated", "truth"))

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        if trainer.sanity_checking:
            return
        if self._due(trainer):
            if self._images is not None:
                self._write_grid(trainer, *self._images)
            if self.video_seconds > 0:
                self._write_video(trainer, pl_module)
        self._val_runs += 1
        self._images = None

    def on_validation_end(self, trainer: Any, pl_module: Any) -> None:
        if not trainer.sanity_checking:
            self._log_usage_histogram(trainer, pl_module, "val")

    def on_test_end(self, trainer: Any, pl_module: Any) -> None:
        self._log_usage_histogram(trainer, pl_module, "test")

    @staticmethod
    def _name(trainer: Any, suffix: str) -> Path:
        folder = Path(trainer.default_root_dir) / "samples"
        return folder / f"val_epoch{trainer.current_epoch:03d}_step{trainer.global_step:07d}{suffix}"

    @rank_zero_only
    def _write_grid(self, trainer: Any, masked: torch.Tensor, fake: torch.Tensor,
                    real: torch.Tensor) -> None:
        grid = sample_grid(masked, fake, real, self.num_images)
        path = self._name(trainer, ".png")
        save_png(path, grid)
        save_png(path.parent / "val_latest.png", grid)
        for logger in trainer.loggers:
            if hasattr(logger, "log_image"):
                logger.log_image("val/samples", [grid], step=trainer.global_step,
                                 caption=["masked | generated | ground truth"])

    @rank_zero_only
    def _write_video(self, trainer: Any, pl_module: Any) -> None:
        from lightning_modules.generation.clip_generation import Geometry, model_record
        from lightning_modules.media.val_media import log_video, render_val_video

        datamodule = getattr(trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "clips"):
            return
        clip = next(iter(datamodule.clips("val", limit=1)), None)
        if clip is None:
            rank_zero_warn("lipmem: no usable val clip for the validation video")
            return
        geometry = Geometry(**model_record(pl_module.generator, datamodule)["geometry"])
        path = self._name(trainer, ".mp4")
        precision = str(trainer.precision)
        render_val_video(pl_module.eval_generator, clip, geometry, path,
                         seconds=self.video_seconds,
                         batch_size=max(1, int(getattr(datamodule, "val_batch_size", 16))),
                         device=pl_module.device,
                         precision="bf16-mixed" if precision.startswith("bf16") else None)
        log_video(trainer.loggers, "val/video", path, trainer.global_step,
                  f"{clip.key}: masked | generated | ground truth")

    @rank_zero_only
    def _log_usage_histogram(self, trainer: Any, pl_module: Any, stage: str) -> None:
        usage = getattr(pl_module, "last_code_usage", {}).get(stage)
        if usage is None:
            return
        for logger in trainer.loggers:
            if hasattr(logger, "mode") and logger.mode != "disabled":
                import wandb

                bins = list(range(usage.numel() + 1))  # one bar per code index
                logger.experiment.log({f"{stage}/code_usage": wandb.Histogram(
                    np_histogram=(usage.tolist(), bins)),
                    "trainer/global_step": trainer.global_step})
