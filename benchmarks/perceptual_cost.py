"""Cost of the perceptual loss alone: one forward + backward (to the images, as in the
generator step) of LPIPS-alex (random backbone; the pretrained one has the same network and
FLOPs) vs ST-LPIPS-alex, on a batch of 96 px images.

ST-LPIPS's anti-aliased AlexNet keeps stride 1 in its first conv and blurs before each
downsampling, so it costs several times LPIPS; this measures how much on this machine. The
repeats alternate between the networks, so a change in machine load hits both; on a shared
machine the process CPU time (with --threads 1) is steadier than the wall-clock time.

    python -m benchmarks.perceptual_cost [--batch-size 16] [--image-size 96] [--repeats 5]
        [--threads N]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import torch
from torch.utils.flop_counter import FlopCounterMode

from benchmarks.common import write_result
from lightning_modules.losses.perceptual import LPIPSLoss

BACKBONES = ("random", "stlpips")


def step(loss: LPIPSLoss, fake: torch.Tensor, real: torch.Tensor) -> tuple[float, float]:
    """(wall-clock seconds, process CPU seconds) of one forward + backward."""
    x = fake.clone().requires_grad_(True)
    wall, cpu = time.perf_counter(), time.process_time()
    loss(x, real).backward()
    return time.perf_counter() - wall, time.process_time() - cpu


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--batch-size", type=int, default=16)
    ap.add_argument("--image-size", type=int, default=96)
    ap.add_argument("--repeats", type=int, default=5, help="rounds over both networks")
    ap.add_argument("--steps", type=int, default=5, help="timed steps per network per round")
    ap.add_argument("--threads", type=int, default=None, help="torch threads (default: torch's)")
    args = ap.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)

    g = torch.Generator().manual_seed(0)
    shape = (args.batch_size, 3, args.image_size, args.image_size)
    fake, real = torch.rand(shape, generator=g), torch.rand(shape, generator=g)
    losses = {b: LPIPSLoss("alex", b) for b in BACKBONES}
    times: dict[str, list[tuple[float, float]]] = {b: [] for b in BACKBONES}
    load = [os.getloadavg()[0]]
    for loss in losses.values():
        step(loss, fake, real)  # warm-up
    for _ in range(args.repeats):
        for backbone, loss in losses.items():
            times[backbone] += [step(loss, fake, real) for _ in range(args.steps)]
        load.append(os.getloadavg()[0])
    result: dict = {"what": "forward + backward to the images of LPIPSLoss('alex', backbone), "
                      "fp32",
              "torch_threads": torch.get_num_threads(),
              "batch_size": args.batch_size, "image_size": args.image_size,
              "loadavg_1min_during": [round(v, 2) for v in load]}
    for backbone, loss in losses.items():
        with FlopCounterMode(display=False) as counter:
            loss(fake, real)
        wall = [w for w, _ in times[backbone]]
        cpu = [c for _, c in times[backbone]]
        result[backbone] = {"metric_name": loss.metric_name,
                            "median_seconds": round(statistics.median(wall), 4),
                            "min_seconds": round(min(wall), 4),
                            "median_cpu_seconds": round(statistics.median(cpu), 4),
                            "steps_timed": len(wall),
                            "forward_gflop": round(counter.get_total_flops() / 1e9, 2)}
    for key in ("median_seconds", "median_cpu_seconds"):
        result[f"ratio_stlpips_over_random_{key}"] = round(
            result["stlpips"][key] / result["random"][key], 2)
    name = "perceptual_cpu" + (f"_{args.threads}thread" if args.threads else "")
    print(write_result(name, result))


if __name__ == "__main__":
    main()
