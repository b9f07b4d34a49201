"""A test-only Lightning callback that records, per rank, what a (DDP) fit actually did.

Passed to a real `lipmem fit` subprocess with
`--trainer.callbacks+=ddp_probe.DDPProbe --trainer.callbacks.out_dir=DIR` (tests/ on
PYTHONPATH). At the end of fit every rank writes `DIR/rank{R}.json` with: its rank and world
size, how many train/val batches it ran, the clip keys it trained on, the train shards the
datamodule assigned to it (first pass, every worker), a sha256 per parameter group
(generator, discriminator, memory codes), its local (unsynced) validation metric state and
the synced value Lightning logged, and how often it wrote media or published artifacts.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.callbacks import Callback

from datamodules.atomic_files import write_json_atomic


def tensor_digest(tensors: list[tuple[str, torch.Tensor]]) -> str:
    """sha256 over names and exact bytes: equal only when bitwise equal."""
    digest = hashlib.sha256()
    for name, tensor in sorted(tensors, key=lambda item: item[0]):
        digest.update(name.encode())
        digest.update(tensor.detach().cpu().contiguous().view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


class DDPProbe(Callback):
    def __init__(self, out_dir: str) -> None:
        self.out_dir = out_dir
        self.train_batches = 0
        self.val_batches = 0
        self.keys: set[str] = set()
        self.calls = {"save_png": 0, "publish": 0}
        self.val_local: dict[str, float] = {}

    def setup(self, trainer: Any, pl_module: Any, stage: str) -> None:
        """Count the calls that write media and publish artifacts, in this process."""
        import lightning_modules.callbacks.val_media_logger as media
        from memory_bank.artifacts.registry import LocalRegistry

        def counted(name: str, fn: Any) -> Any:
            def wrapper(*args: Any, **kwargs: Any) -> Any:
                self.calls[name] += 1
                return fn(*args, **kwargs)
            return wrapper

        media.save_png = counted("save_png", media.save_png)
        LocalRegistry.publish = counted("publish", LocalRegistry.publish)

    def on_train_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.train_batches += 1
        self.keys.update(batch["key"])

    def on_validation_batch_end(self, trainer: Any, pl_module: Any, outputs: Any, batch: Any,
                                batch_idx: int, dataloader_idx: int = 0) -> None:
        if not trainer.sanity_checking:
            self.val_batches += 1

    def on_validation_epoch_end(self, trainer: Any, pl_module: Any) -> None:
        # Callbacks run before Lightning computes (and syncs) the logged metrics: the
        # MeanMetric states here are this rank's own sums.
        if not trainer.sanity_checking:
            metric = pl_module.val_l1
            self.val_local = {"sum": float(metric.mean_value), "weight": float(metric.weight)}

    def on_fit_end(self, trainer: Any, pl_module: Any) -> None:
        datamodule = trainer.datamodule
        rank, world = trainer.global_rank, trainer.world_size
        workers = max(1, datamodule.num_workers)
        shards = sorted({Path(url).name for worker in range(workers)
                         for url in datamodule.shards_for("train", rank, world, worker, workers)})
        generator = [(n, p) for n, p in pl_module.generator.named_parameters()]
        discriminator = list(pl_module.loss.discriminator.named_parameters())
        logged = trainer.callback_metrics.get("val/l1")
        payload = {
            "rank": rank, "world_size": world, "num_nodes": trainer.num_nodes,
            "node_rank": trainer.node_rank, "global_step": trainer.global_step,
            "train_batches": self.train_batches, "val_batches": self.val_batches,
            "keys": sorted(self.keys), "train_shards": shards,
            "digest": {
                "generator": tensor_digest(generator),
                "discriminator": tensor_digest(discriminator),
                "memory_codes": tensor_digest([("codes", pl_module.generator.memory.codes)]),
                # BatchNorm running stats: DDP broadcasts rank 0's at each forward, so ranks
                # differ only by their last step's local update
                "norm_buffers": tensor_digest([(n, b) for n, b in pl_module.named_buffers()
                                               if "running" in n]),
            },
            "val_local": self.val_local,
            "val_logged": float(logged) if logged is not None else None,
            "calls": self.calls,
            "checkpoint_io": type(trainer.strategy.checkpoint_io).__name__,
        }
        write_json_atomic(Path(self.out_dir) / f"rank{rank}.json", payload)
