"""The GAN training module: a discriminator step, then a generator step, on every batch."""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any

import lightning as L
import torch
from lightning.pytorch.utilities import rank_zero_info, rank_zero_warn
from torchmetrics import MeanMetric
from torchmetrics.image import PeakSignalNoiseRatio, StructuralSimilarityIndexMeasure

from datamodules.face_layout import mouth_box
from lightning_modules.losses import LipSyncLoss
from lightning_modules.nets import LipSyncGenerator
from lightning_modules.training.code_usage import CodeUsage, entropy
from lightning_modules.training.data_issue_tally import DataIssueTally
from lightning_modules.training.generator_ema import GeneratorEMA, generator_state
from lightning_modules.training.nonfinite_guard import (
    NonFiniteGuard,
    NonFiniteLossError,
    RunningStats,
    is_bad,
)
from memory_bank.bootstrap import bootstrap_codes, refit_codes
from memory_bank.install import init_from_autoencoder, load_checked_bank, record_bank
from memory_bank.memory_config import MemoryConfig

SUPPORTED_PRECISIONS = ("32-true", "32", "bf16-mixed", "bf16-true", "64-true")


def check_precision(precision: str) -> None:
    if precision not in SUPPORTED_PRECISIONS:
        raise ValueError(f"trainer.precision={precision!r}: lipmem supports {SUPPORTED_PRECISIONS}"
                         " (use bf16-mixed on GPUs; fp16 needs loss scaling across two "
                         "optimizers, which this module does not do)")


def _flatten_time(x: torch.Tensor) -> torch.Tensor:
    """(B, T, ...) -> (B*T, ...): the generator works frame by frame."""
    return x.flatten(0, 1)


def _zero_touch(params: list[torch.nn.Parameter]) -> torch.Tensor:
    """0 * (sum of one element per parameter).

    Added to the discriminator loss so the generator's parameters receive (zero) gradients
    in the discriminator's backward pass too: DDP then sees every parameter used in every
    backward and runs without `find_unused_parameters` (which would cost a graph traversal
    per step). The gradient is exactly zero, so nothing changes numerically.
    """
    return torch.stack([p.reshape(-1)[0] for p in params]).sum().mul(0.0)


class LipSyncGAN(L.LightningModule):
    """Composes the generator (nets) with the loss (which owns the discriminator and LPIPS).

    Manual optimisation: per batch, one discriminator step on (real, detached fake), then one
    generator step on the weighted L1 + adversarial + LPIPS loss. Lightning counts every
    optimizer step, so `trainer.global_step` advances by 2 per batch.
    """

    def __init__(
        self,
        generator: LipSyncGenerator,
        loss: LipSyncLoss,
        g_lr: float = 2e-4,
        d_lr: float = 2e-4,
        betas: tuple[float, float] = (0.5, 0.999),
        weight_decay: float = 0.0,
        grad_clip_norm: float | None = 1.0,
        memory: MemoryConfig | None = None,
        channels_last: bool = False,
        max_nonfinite_steps: int = 10,
        init_from: str | None = None,
        ema_decay: float | None = 0.999,
        ema_recalibration_batches: int = 8,
        ema_warmup: float = 10.0,
        openness_frames: int = 4000,
        image_lr_scale: float = 1.0,
    ) -> None:
        super().__init__()
        if g_lr <= 0 or d_lr <= 0:
            raise ValueError(f"model.g_lr={g_lr}, model.d_lr={d_lr}: learning rates must be > 0")
        if grad_clip_norm is not None and grad_clip_norm <= 0:
            raise ValueError(f"model.grad_clip_norm={grad_clip_norm}: must be > 0 or null")
        memory = memory if memory is not None else MemoryConfig()
        if memory.is_bootstrap and memory.bootstrap_frames < generator.num_codes:
            raise ValueError(f"model.memory.bootstrap_frames={memory.bootstrap_frames} must be at "
                             f"least the number of memory codes ({generator.num_codes})")
        if memory.refit != "keep" and not init_from:
            raise ValueError(f"model.memory.refit={memory.refit!r} refits a base model's codes "
                             "on the new data: it needs model.init_from (the base)")
        self.automatic_optimization = False
        self.generator = generator
        # validation, checkpoints' published weights, eval and infer use this average
        self.generator_ema = (GeneratorEMA(generator, ema_decay, ema_recalibration_batches,
                                           ema_warmup)
                              if ema_decay is not None else None)
        self.loss = loss
        self.g_lr, self.d_lr, self.betas, self.weight_decay = g_lr, d_lr, tuple(betas), weight_decay
        self.grad_clip_norm = grad_clip_norm
        self.memory = memory
        self.channels_last = channels_last
        self.init_from = init_from
        self.memory_info: dict[str, Any] = {}
        # optimizer steps with a NaN/inf loss are skipped; this many bad batches in a row stop
        self.nonfinite = NonFiniteGuard(max_nonfinite_steps)
        self.data_issues = DataIssueTally()  # rank-summed skip/repair counts of the loader
        self._last_batch_end: float | None = None
        # the rank-synced mean weight per memory code of the last val / test run, for
        # callbacks (callbacks.val_media_logger draws its histogram)
        self.last_code_usage: dict[str, torch.Tensor] = {}
        self.openness_frames = openness_frames
        if image_lr_scale <= 0:
            raise ValueError(f"model.image_lr_scale={image_lr_scale}: must be > 0")
        self.image_lr_scale = image_lr_scale
        self._openness: Any = None  # evaluation.mouth_metrics.OpennessEstimator, when fitted
        self._openness_checked = False
        for stage in ("val", "test"):
            setattr(self, f"{stage}_l1", MeanMetric())
            setattr(self, f"{stage}_l1_mouth", MeanMetric())
            setattr(self, f"{stage}_l1_masked", MeanMetric())
            setattr(self, f"{stage}_openness_mae", MeanMetric())
            setattr(self, f"{stage}_psnr", PeakSignalNoiseRatio(data_range=1.0))
            setattr(self, f"{stage}_ssim", StructuralSimilarityIndexMeasure(data_range=1.0))
            setattr(self, f"{stage}_code_usage", CodeUsage(generator.num_codes))

    @property
    def eval_generator(self) -> LipSyncGenerator:
        """The weights that are judged: the EMA when there is one, else the live ones."""
        return self.generator_ema.module if self.generator_ema is not None else self.generator

    # ------------------------------------------------------------------ setup
    def setup(self, stage: str) -> None:
        if self._trainer is not None:
            check_precision(str(self.trainer.precision))
        if self.channels_last:
            self.to(memory_format=torch.channels_last)

    def _ensure_memory(self, fitting: bool = False) -> None:
        """Install the memory codes unless a checkpoint already brought them.

        Runs in the fit/validate/test/predict start hooks, i.e. after any checkpoint
        restore, so a resumed or loaded model keeps the codes it was trained with. Every
        rank loads the same file (or bootstraps from the same frames), so ranks agree.
        """
        if self.generator.memory.loaded:
            self.memory_info = self.memory_info or {"source": "checkpoint"}
            self._sync_ema_codes()
            return
        if self.memory.is_bootstrap:
            self._bootstrap_memory()
            return
        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        mask = datamodule.mask.describe() if hasattr(datamodule, "mask") else None
        bank = load_checked_bank(self.memory, self.generator, mask)
        self.generator.memory.load_codes(bank.codes)
        self._sync_ema_codes()
        self.memory_info = bank.describe()
        rank_zero_info(f"lipmem: memory codes from {bank.ref} -> {bank.resolved} "
                       f"({bank.codes.shape[0]} x {bank.codes.shape[1]}, "
                       f"{bank.meta.get('method', '?')})")
        if fitting and self.memory.init_from_autoencoder:
            init_from_autoencoder(self.generator, bank, self.memory)
        record_bank(self.loggers, bank)

    def _sync_ema_codes(self) -> None:
        """The averaged generator fuses the same memory codes as the live one."""
        ema = self.generator_ema
        if ema is not None and not bool(ema.module.memory.loaded):
            ema.module.memory.load_codes(self.generator.memory.codes)

    def _memory_datamodule(self, what: str) -> Any:
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not hasattr(datamodule, "memory_batches"):
            raise RuntimeError(f"{what} needs a LipSyncDataModule: the memory codes are "
                               "computed from its training frames")
        return datamodule

    def _bootstrap_memory(self) -> None:
        datamodule = self._memory_datamodule("model.memory.source=bootstrap (or pass a memory "
                                             "bank reference)")
        started = time.perf_counter()
        was_training = self.generator.training
        self.generator.eval()
        codes, result, frames = bootstrap_codes(
            self.generator.encode_mouth,
            datamodule.memory_batches(self.memory.bootstrap_frames),
            self.generator.num_codes,
            max_samples=self.memory.bootstrap_frames,
            seed=self.memory.seed,
            device=self.device,
        )
        self.generator.train(was_training)
        self.generator.memory.load_codes(codes)
        self._sync_ema_codes()
        self.memory_info = {"source": "bootstrap", "frames": frames, "method": result.method,
                            "inertia": result.inertia, "device": result.device}
        rank_zero_info(f"lipmem: bootstrapped {codes.shape[0]} memory codes from {frames} "
                       f"training frames (untrained encoder + k-means, "
                       f"{time.perf_counter() - started:.1f} s); this is not the method's "
                       "memory bank: build one with `lipmem bank build`")

    def _refit_memory(self, mode: str) -> None:
        """Fine-tune on new data: rebuild or refine the base's codes from the new lower faces
        as the base's image encoder sees them (every rank gets the same frames and seed)."""
        datamodule = self._memory_datamodule(f"model.memory.refit={mode}")
        started = time.perf_counter()
        was_training = self.generator.training
        self.generator.eval()
        codes, result, frames = refit_codes(
            self.generator.encode_mouth, datamodule.memory_batches(self.memory.bootstrap_frames),
            self.generator.memory.codes, mode, max_samples=self.memory.bootstrap_frames,
            seed=self.memory.seed, device=self.device)
        self.generator.train(was_training)
        moved = (codes.to(self.generator.memory.codes) - self.generator.memory.codes).norm(dim=1)
        self.generator.memory.load_codes(codes)
        self.memory_info = {**self.memory_info, "refit": mode, "refit_frames": frames,
                            "refit_inertia": result.inertia,
                            "refit_mean_code_shift": float(moved.mean())}
        rank_zero_info(f"lipmem: memory codes {mode} on {frames} frames of the new data "
                       f"({time.perf_counter() - started:.1f} s; mean code shift "
                       f"{float(moved.mean()):.4f})")

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        # the codes travel as a buffer; where they came from travels beside them
        checkpoint["memory_info"] = dict(self.memory_info)
        # enough to rebuild the generator and cut its inputs without the training config
        from lightning_modules.generation.clip_generation import MODEL_RECORD_KEY, model_record

        datamodule = getattr(self.trainer, "datamodule", None) if self._trainer else None
        checkpoint[MODEL_RECORD_KEY] = model_record(self.generator, datamodule)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        self.memory_info = dict(checkpoint.get("memory_info") or {})

    def _ensure_openness_estimator(self) -> None:
        """Fit the mouth-openness estimator once, where the corpus has a mouth track.

        It scores the mouth shape of generated validation frames (``val/openness_mae``),
        a far better guide to lip sync than pixel L1 on the lower face, and the metric
        checkpoints are chosen by (``val/mouth_score``). Every rank fits the same
        estimator on the same frames.
        """
        if self._openness is not None or self._openness_checked:
            return
        self._openness_checked = True
        datamodule = getattr(self.trainer, "datamodule", None)
        if datamodule is None or not getattr(datamodule, "has_mouth_track", False):
            return
        from lightning_modules.evaluation.mouth_metrics import OpennessEstimator

        clips = ((c.frames, c.mouth[:, 0]) for c in datamodule.clips("train")
                 if c.mouth is not None)
        try:
            self._openness = OpennessEstimator(self.generator.image_size).fit(
                clips, max_frames=self.openness_frames)
        except ValueError as exc:
            rank_zero_warn(f"lipmem: no val/openness_mae ({exc})")

    def on_fit_start(self) -> None:
        if self.init_from and self.trainer.global_step == 0:
            self._init_weights_from(self.init_from)
            if self.memory.refit != "keep":
                self._refit_memory(self.memory.refit)
        self._ensure_memory(fitting=True)
        self._ensure_openness_estimator()
        if self.generator_ema is not None and self.trainer.global_step == 0:
            self.generator_ema.copy_from(self.generator)  # the average starts at the start

    def _init_weights_from(self, ref: str) -> None:
        """Fine-tune: start from another run's weights (generator, memory codes,
        discriminator) with fresh optimisers, schedules and step counters. The generator
        starts from the source's averaged (EMA) weights when it has them, the ones it was
        judged and published by. A resumed fine-tune (global_step > 0) keeps its own
        checkpoint's weights instead."""
        from lightning_modules.checkpoints.references import load_checkpoint

        registry = self.memory.registry
        path, checkpoint = load_checkpoint(ref, registry)
        state = generator_state(checkpoint["state_dict"])
        state.update({k: v for k, v in checkpoint["state_dict"].items() if k.startswith("loss.")})
        own = {k: v for k, v in self.state_dict().items()
               if not k.startswith("generator_ema.")}  # the average restarts at the weights
        mismatched = [k for k in own if k in state and state[k].shape != own[k].shape]
        missing = [k for k in own if k not in state]
        if mismatched or missing:
            raise ValueError(
                f"model.init_from={ref!r} ({path}) does not fit this model: "
                f"{len(mismatched)} tensor(s) differ in shape (e.g. {mismatched[:3]}), "
                f"{len(missing)} missing (e.g. {missing[:3]}); fine-tuning needs the same "
                "architecture and num_codes")
        self.load_state_dict({k: state[k] for k in own}, strict=False)
        self.memory_info = {**dict(checkpoint.get("memory_info") or {}), "init_from": ref}
        rank_zero_info(f"lipmem: fine-tuning from {ref} ({path}, global_step "
                       f"{checkpoint.get('global_step')}): weights and memory codes loaded, "
                       "optimisers and counters start fresh")
        for logger in self.loggers:
            logger.log_hyperparams({"init_from": {"ref": ref, "file": str(path)}})

    def on_validation_start(self) -> None:
        if not self.trainer.training and not self.trainer.sanity_checking:
            self._ensure_memory()
        self._ensure_openness_estimator()
        if self.generator_ema is not None and self.trainer.training:
            self.generator_ema.recalibrate()  # BatchNorm statistics of the averaged weights

    def on_test_start(self) -> None:
        self._ensure_memory()
        self._ensure_openness_estimator()

    def on_predict_start(self) -> None:
        self._ensure_memory()

    def configure_optimizers(self) -> list[torch.optim.Optimizer]:
        # the image encoder and decoder may start trained (init_from_autoencoder); the audio
        # path always starts from scratch and may learn faster (image_lr_scale < 1)
        image = [*self.generator.image_encoder.parameters(), *self.generator.decoder.parameters()]
        ids = {id(p) for p in image}
        audio = [p for p in self.generator.parameters() if id(p) not in ids]
        opt_g = torch.optim.Adam([{"params": audio, "lr": self.g_lr},
                                  {"params": image, "lr": self.g_lr * self.image_lr_scale}],
                                 lr=self.g_lr, betas=self.betas, weight_decay=self.weight_decay)
        opt_d = torch.optim.Adam(self.loss.discriminator.parameters(), lr=self.d_lr,
                                 betas=self.betas, weight_decay=self.weight_decay)
        return [opt_g, opt_d]

    # ------------------------------------------------------------------ batches
    def _prepare(self, batch: dict[str, Any]) -> dict[str, torch.Tensor]:
        """uint8 frames -> float [0, 1], time folded into batch, mask applied."""
        face = _flatten_time(batch["face"]).float().div_(255.0)
        frames_per_window = batch["face"].shape[1]
        mask = batch["mask"].float().repeat_interleave(frames_per_window, dim=0)
        mel = _flatten_time(batch["mel"]).float()
        ref = _flatten_time(batch["ref"]).float().div_(255.0) if "ref" in batch else None
        masked = face * (1.0 - mask)
        if self.channels_last:
            face, masked = (t.contiguous(memory_format=torch.channels_last) for t in (face, masked))
            ref = ref.contiguous(memory_format=torch.channels_last) if ref is not None else None
        return {"face": face, "mask": mask, "mel": mel, "ref": ref, "masked": masked}

    def forward(self, masked: torch.Tensor, mel: torch.Tensor,
                ref: torch.Tensor | None = None, mask: torch.Tensor | None = None) -> torch.Tensor:
        return self.generator(masked, mel, ref, mask).image

    # ------------------------------------------------------------------ training
    def training_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        x = self._prepare(batch)
        opt_g, opt_d = self.optimizers()
        running_stats = RunningStats(self)  # put back if this batch turns out non-finite
        out = self.generator(x["masked"], x["mel"], x["ref"], x["mask"])
        fake = out.image
        reduce = self.trainer.strategy.reduce  # sum over DDP ranks; identity on one device

        # A step with a non-finite loss is skipped on every rank (they agree first, or DDP
        # would hang in backward); the loader's skip counts share that one all-reduce.
        d_loss, d_logs = self.loss.discriminator_loss(fake, x["face"])
        d_bad, issues = NonFiniteGuard.agree(d_loss, lambda t: reduce(t, reduce_op="sum"),
                                             self.data_issues.local(batch))
        # the generator's zero touch: DDP sees every parameter used in the D backward too
        d_bad, d_norm = self._optimizer_step(
            opt_d, d_loss + _zero_touch(list(self.generator.parameters())), d_bad,
            self.loss.discriminator.parameters())

        step = self.trainer.global_step // 2  # batches seen: two optimizer steps per batch
        g_loss, g_logs = self.loss.generator_loss(fake, x["face"], step, x["mask"], x["mel"],
                                                  batch["face"].shape[1])
        g_bad, _ = NonFiniteGuard.agree(g_loss, lambda t: reduce(t, reduce_op="sum"))
        g_bad, g_norm = self._optimizer_step(opt_g, g_loss, g_bad, self.generator.parameters())
        if not g_bad and self.generator_ema is not None:
            self.generator_ema.update(self.generator, {
                "masked_face": x["masked"], "mel": x["mel"], "reference": x["ref"],
                "mask": x["mask"]})

        weights = out.weights.detach().float()
        usage = weights.mean(dim=0)
        logs = {f"train/{k}": v for k, v in {**g_logs, **d_logs}.items()}
        logs.update({
            "train/grad_norm_g": g_norm,
            "train/grad_norm_d": d_norm,
            "train/lr_g": float(opt_g.param_groups[0]["lr"]),
            "train/lr_d": float(opt_d.param_groups[0]["lr"]),
            "memory/weight_entropy": -(weights * weights.clamp_min(1e-12).log()).sum(1).mean(),
            "memory/usage_entropy": -(usage * usage.clamp_min(1e-12).log()).sum(),
            "memory/max_weight": weights.max(dim=1).values.mean(),
        })
        self.log_dict(logs, on_step=True, on_epoch=False, batch_size=fake.shape[0])
        self.log("train/l1", g_logs["g_l1"], prog_bar=True, on_step=True, batch_size=fake.shape[0])
        if d_bad or g_bad:
            running_stats.restore()
        stop = self.nonfinite.record(int(d_bad) + int(g_bad))
        self.log("train/nonfinite_steps", float(self.nonfinite.skipped_steps), on_step=True,
                 batch_size=fake.shape[0])
        if issues is not None:
            self.data_issues.add(issues)
            self.log_dict(self.data_issues.metrics(), on_step=True, on_epoch=False,
                          batch_size=fake.shape[0])
        if stop:
            self._stop_nonfinite(f" (last: D loss {float(d_loss.detach()):.4g}, "
                                 f"G loss {float(g_loss.detach()):.4g})")

    def _stop_nonfinite(self, details: str) -> None:
        """Save the current (= last finite) weights, then stop the run with the reason."""
        from lightning_modules.checkpoints.digest import write_digest

        path = Path(self.trainer.default_root_dir) / "checkpoints" / "nonfinite-stop.ckpt"
        self.trainer.save_checkpoint(path)  # every rank calls it (they agreed on the flags)
        if self.trainer.is_global_zero:
            write_digest(path)
        raise NonFiniteLossError(self.nonfinite.message(str(path), details))

    def _optimizer_step(self, optimizer: Any, loss: torch.Tensor, bad: bool,
                        params: Any) -> tuple[bool, torch.Tensor]:
        """One step of D or G, the same for both: zero_grad, backward, clip, step. Skipped
        (gradients dropped) when the loss was agreed non-finite or the clipped gradient norm
        is; the norm is of rank-averaged gradients, so every rank agrees without a message.
        No toggle_optimizer: under DDP every parameter needs a gradient in every backward
        (hence the zero touch), which parameters frozen by a toggle would not get.
        Returns (skipped, gradient norm)."""
        optimizer.zero_grad(set_to_none=True)
        if bad:
            return True, torch.full((), math.nan)
        self.manual_backward(loss)
        norm = self._clip(params)
        if is_bad(norm):
            optimizer.zero_grad(set_to_none=True)
            return True, norm
        optimizer.step()
        return False, norm

    def _clip(self, params: Any) -> torch.Tensor:
        params = [p for p in params if p.grad is not None]
        max_norm = self.grad_clip_norm if self.grad_clip_norm is not None else math.inf
        return torch.nn.utils.clip_grad_norm_(params, max_norm).detach()

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        if self._last_batch_end is None:
            self._last_batch_end = time.perf_counter()

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        now = time.perf_counter()
        frames = batch["face"].shape[0] * batch["face"].shape[1]
        if self._last_batch_end is not None and now > self._last_batch_end:
            self.log("perf/frames_per_sec", frames / (now - self._last_batch_end), on_step=True,
                     prog_bar=True)
        self._last_batch_end = now

    # ------------------------------------------------------------------ evaluation
    def _evaluate(self, batch: dict[str, Any], stage: str) -> dict[str, torch.Tensor]:
        x = self._prepare(batch)
        out = self.eval_generator(x["masked"], x["mel"], x["ref"], x["mask"])
        fake = out.image.float()
        getattr(self, f"{stage}_code_usage").update(out.weights)
        real, mask = x["face"], x["mask"]
        err = (fake - real).abs()
        n = fake.shape[0]
        getattr(self, f"{stage}_l1").update(err.mean(), weight=n)
        masked_weight = mask.sum() * 3
        getattr(self, f"{stage}_l1_masked").update((err * mask).sum() / masked_weight,
                                                   weight=masked_weight)
        y0, y1, x0, x1 = mouth_box(fake.shape[-1])
        getattr(self, f"{stage}_l1_mouth").update(err[:, :, y0:y1, x0:x1].mean(), weight=n)
        getattr(self, f"{stage}_psnr").update(fake, real)
        getattr(self, f"{stage}_ssim").update(fake, real)
        names = ["l1", "l1_mouth", "l1_masked", "psnr", "ssim"]
        if self._openness is not None and "mouth" in batch:
            frames = fake.detach().clamp(0, 1).mul(255).round().to(torch.uint8)
            estimate = self._openness.predict(frames.permute(0, 2, 3, 1).cpu().numpy())
            truth = batch["mouth"][..., 0].reshape(-1).cpu().numpy()
            getattr(self, f"{stage}_openness_mae").update(
                torch.as_tensor(abs(estimate - truth).mean(), device=self.device), weight=n)
            names.append("openness_mae")
        for name in names:
            self.log(f"{stage}/{name}", getattr(self, f"{stage}_{name}"), on_step=False,
                     on_epoch=True, prog_bar=name == "l1_mouth", batch_size=n)
        # what checkpoints are chosen by: mouth shape where the corpus can tell, else pixels
        score = "openness_mae" if "openness_mae" in names else "l1_mouth"
        self.log(f"{stage}/mouth_score", getattr(self, f"{stage}_{score}"), on_step=False,
                 on_epoch=True, batch_size=n)
        # what callbacks may show (callbacks.val_media_logger); they copy what they keep
        return {"masked": x["masked"], "generated": fake, "truth": real}

    def validation_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, torch.Tensor]:
        images = self._evaluate(batch, "val")
        self.data_issues.log_eval(self, batch, "val")  # per val pass, summed over ranks
        return images

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> None:
        self._evaluate(batch, "test")

    def predict_step(self, batch: dict[str, Any], batch_idx: int) -> dict[str, Any]:
        x = self._prepare(batch)
        fake = self.eval_generator(x["masked"], x["mel"], x["ref"], x["mask"]).image.float()
        b, t = batch["face"].shape[:2]
        return {"key": batch.get("key"), "frame": batch.get("frame"),
                "generated": fake.reshape(b, t, *fake.shape[1:]).cpu()}

    def on_validation_epoch_end(self) -> None:
        self._log_code_usage("val")

    def on_test_epoch_end(self) -> None:
        self._log_code_usage("test")

    def _log_code_usage(self, stage: str) -> None:
        """Entropy of the (rank-synced) mean weight per code; the usage itself is kept in
        ``last_code_usage`` for the histogram callback."""
        metric = getattr(self, f"{stage}_code_usage")
        self.last_code_usage.pop(stage, None)
        if not metric.update_called:
            return
        usage = metric.compute()
        metric.reset()
        self.log(f"{stage}/usage_entropy", entropy(usage), sync_dist=False)
        self.log(f"{stage}/max_code_usage", usage.max(), sync_dist=False)
        self.last_code_usage[stage] = usage.detach().cpu()
