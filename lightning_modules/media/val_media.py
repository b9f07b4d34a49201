"""Validation media: a short video of one val clip, with its audio, as W&B shows it.

A still grid cannot show lip sync; a video with the driving audio can. The clip is
generated frame by frame in order (lightning_modules.generation.clip_generation) and written as
``masked | generated | ground truth`` side by side, H.264 + AAC, then logged as
``wandb.Video`` from rank zero only.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.media_writer import write_video
from datamodules.sample_format import Clip
from lightning_modules.generation.clip_generation import Geometry, generate_clip


def trim_clip(clip: Clip, seconds: float) -> Clip:
    """The first ``seconds`` of a clip (frames and the audio under them)."""
    frames = max(1, min(clip.num_frames, round(seconds * clip.fps)))
    samples = round(frames * clip.sample_rate / clip.fps)
    mouth = clip.mouth[:frames] if clip.mouth is not None else None
    return Clip(key=clip.key, frames=clip.frames[:frames], audio=clip.audio[:samples],
                fps=clip.fps, sample_rate=clip.sample_rate, mouth=mouth, meta=clip.meta)


def triptych(masked: np.ndarray, generated: np.ndarray, truth: np.ndarray) -> np.ndarray:
    """(T, S, S, 3) x 3 -> (T, S, 3S, 3)."""
    return np.concatenate([masked, generated, truth], axis=2)


def render_val_video(generator: torch.nn.Module, clip: Clip, geometry: Geometry,
                     path: str | Path, *, seconds: float, batch_size: int,
                     device: torch.device, precision: str | None = None) -> Path:
    """Generate ``seconds`` of ``clip`` and write the side-by-side video with its audio."""
    clip = trim_clip(clip, seconds)
    mask = geometry.lower_face_mask().numpy()
    out = generate_clip(generator, clip, geometry.cutter(), mask, batch_size=batch_size,
                        device=device, precision=precision)
    hidden = mask[0][None, :, :, None] > 0
    masked = np.where(hidden, 0, clip.frames).astype(np.uint8)
    frames = triptych(masked, out.images, clip.frames)
    return write_video(path, frames, clip.fps, clip.audio, clip.sample_rate)


def log_video(loggers: list[Any], key: str, path: Path, step: int, caption: str) -> None:
    """wandb.Video to every W&B logger (an mp4 path keeps its audio track)."""
    for logger in loggers:
        if hasattr(logger, "mode") and logger.mode != "disabled":
            import wandb

            logger.experiment.log({key: wandb.Video(str(path), caption=caption, format="mp4"),
                                   "trainer/global_step": step})
