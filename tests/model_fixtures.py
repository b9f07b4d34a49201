"""An untrained but complete lipmem generator checkpoint, made in a second: what `lipmem infer`
and `lipmem eval` load, for tests that only need a loadable model (hostile-file tests change
its fields)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch

SIZE = 48


def tiny_generator():
    from lightning_modules.nets import LipSyncGenerator

    torch.manual_seed(0)
    generator = LipSyncGenerator(image_size=SIZE, num_codes=4, embed_dim=16, audio_dim=16,
                                 base_channels=4, max_channels=16, attention_heads=2,
                                 mapping_hidden=16, cond_channels=4)
    generator.memory.load_codes(torch.randn(4, 16))
    return generator


def generator_checkpoint(path: Path, *, crop: dict[str, Any] | None = None,
                         **extra: Any) -> Path:
    """A checkpoint with the `lipmem_model` record LipSyncGAN writes; ``crop`` as `lipmem
    data prep` records it (margin, shift_y, detector); ``extra`` top-level keys."""
    from lightning_modules.generation.clip_generation import MODEL_RECORD_KEY, model_record

    generator = tiny_generator()
    record = model_record(generator)
    record["geometry"]["image_size"] = SIZE
    record["geometry"]["crop"] = crop
    state = {f"generator.{k}": v for k, v in generator.state_dict().items()}
    torch.save({"state_dict": state, MODEL_RECORD_KEY: record, "global_step": 0, "epoch": 0,
                **extra}, path)
    return path
