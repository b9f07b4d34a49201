"""Training throughput of the full GAN step (D step + G step with L1, adversarial, LPIPS).

Runs the real LipSyncGAN under a real Trainer on in-memory batches (so the data pipeline is
measured separately, by benchmarks.data_pipeline), times steps after warm-up, and counts the
FLOPs of one step with torch's FlopCounterMode.

    python -m benchmarks.train_step [--image-size 96] [--batch-size 16] [--steps 12]
        [--lpips-backbone random|stlpips]
"""

from __future__ import annotations

import argparse
import time

import lightning as L
import torch
from torch.utils.data import DataLoader, Dataset
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import write_result
from datamodules.masks import LowerFaceMask
from lightning_modules.lipsync_gan import LipSyncGAN
from lightning_modules.losses import LipSyncLoss
from lightning_modules.nets import LipSyncGenerator


class RandomBatches(Dataset):
    def __init__(self, n: int, batch: int, size: int) -> None:
        g = torch.Generator().manual_seed(0)
        mask = LowerFaceMask(image_size=size).tensor()
        self.items = [{
            "face": torch.randint(0, 256, (batch, 1, 3, size, size), dtype=torch.uint8, generator=g),
            "mel": torch.randn(batch, 1, 1, 80, 16, generator=g),
            "mask": mask.expand(batch, 1, size, size).clone(),
        } for _ in range(n)]

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict:
        return self.items[i]


class StepTimer(L.Callback):
    def __init__(self) -> None:
        self.times: list[float] = []

    def on_train_batch_start(self, *args) -> None:
        self._t = time.perf_counter()

    def on_train_batch_end(self, *args) -> None:
        self.times.append(time.perf_counter() - self._t)


def build(size: int, channels_last: bool, lpips_backbone: str = "random") -> LipSyncGAN:
    gen = LipSyncGenerator(image_size=size)
    gen.memory.load_codes(torch.randn(gen.num_codes, 256))
    # random: the same network and FLOPs as the pretrained LPIPS backbone, no weights needed;
    # stlpips: ST-LPIPS's anti-aliased AlexNet, several times the FLOPs
    loss = LipSyncLoss(lpips_backbone=lpips_backbone)
    return LipSyncGAN(gen, loss, channels_last=channels_last)


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--steps", type=int, default=12)
    ap.add_argument("--warmup", type=int, default=3)
    ap.add_argument("--accelerator", default="cpu")
    ap.add_argument("--precision", default="32-true")
    ap.add_argument("--channels-last", action="store_true")
    ap.add_argument("--lpips-backbone", default="random", choices=("random", "stlpips"))
    args = ap.parse_args()

    model = build(args.image_size, args.channels_last, args.lpips_backbone)
    loader = DataLoader(RandomBatches(args.steps + args.warmup, args.batch_size, args.image_size),
                        batch_size=None)
    timer = StepTimer()
    trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision,
                        max_epochs=1, logger=False, enable_checkpointing=False,
                        enable_progress_bar=False, enable_model_summary=False, callbacks=[timer])
    trainer.fit(model, loader)
    step_s = sorted(timer.times[args.warmup:])[len(timer.times[args.warmup:]) // 2]

    flop_model = build(args.image_size, args.channels_last, args.lpips_backbone)
    flop_trainer = L.Trainer(accelerator=args.accelerator, devices=1, precision=args.precision,
                             max_epochs=1, limit_train_batches=1, logger=False,
                             enable_checkpointing=False, enable_progress_bar=False,
                             enable_model_summary=False)
    with FlopCounterMode(display=False) as counter:
        flop_trainer.fit(flop_model, DataLoader(RandomBatches(1, args.batch_size, args.image_size),
                                                batch_size=None))
    flops = counter.get_total_flops()
    frames_per_s = args.batch_size / step_s
    params_g = sum(p.numel() for p in model.generator.parameters())
    params_d = sum(p.numel() for p in model.loss.discriminator.parameters())
    perceptual = "ST-LPIPS-alex" if args.lpips_backbone == "stlpips" else "LPIPS-alex"
    suffix = "_stlpips" if args.lpips_backbone == "stlpips" else ""
    write_result(f"train_step_{args.image_size}px_{args.accelerator}{suffix}", {
        "what": f"one D step + one G step (L1 + hinge adversarial + {perceptual}), in-memory "
                "batches",
        "lpips_backbone": args.lpips_backbone,
        "image_size": args.image_size,
        "batch_size": args.batch_size,
        "precision": args.precision,
        "channels_last": args.channels_last,
        "median_step_seconds": round(step_s, 4),
        "frames_per_second": round(frames_per_s, 2),
        "gflop_per_frame": round(flops / args.batch_size / 1e9, 3),
        "achieved_gflop_per_second": round(flops / step_s / 1e9, 1),
        "generator_params_m": round(params_g / 1e6, 2),
        "discriminator_params_m": round(params_d / 1e6, 2),
        "steps_timed": len(timer.times) - args.warmup,
    })


if __name__ == "__main__":
    main()
