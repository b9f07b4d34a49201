"""Generating every frame of a clip, in order: what evaluation, val videos and `lipmem infer`
share.

Training sees random windows; a video needs frame ``k`` for every ``k`` with the audio window
centred on that frame (method claim 8), batched for speed. A trained generator is rebuilt
from its checkpoint alone: LipSyncGAN stores the generator's constructor arguments and the
data geometry (image size, fps, audio window, mask) under ``checkpoint["lipmem_model"]``,
and the checkpoint is read with ``torch.load(weights_only=True)`` (no code runs).
"""

from __future__ import annotations

import contextlib
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.audio_features import LogMel
from datamodules.masks import LowerFaceMask
from datamodules.sample_format import Clip
from datamodules.windows import WindowCutter
from lightning_modules.nets import LipSyncGenerator
from lightning_modules.nets.batchnorm_folding import fold_batchnorm
from lightning_modules.nets.from_record import build_from_record
from lightning_modules.training.generator_ema import EMA_PREFIX, generator_state

MODEL_RECORD_KEY = "lipmem_model"
MODEL_RECORD_FORMAT = 1
# Only these classes are ever built from a checkpoint record: a checkpoint is data, and
# importing an arbitrary class path named inside one would let a file choose code to run.
GENERATOR_CLASSES = {"lightning_modules.nets.LipSyncGenerator": LipSyncGenerator,
                     "lightning_modules.nets.generator.LipSyncGenerator": LipSyncGenerator}


@dataclass
class Geometry:
    """What a model was trained on, so inputs at inference are cut the same way."""

    image_size: int = 96
    fps: int = 25
    sample_rate: int = 16000
    audio_seconds: float = 0.2
    mask: dict[str, Any] = field(default_factory=lambda: {"shape": "rectangle",
                                                          "region": "nose_to_chin"})
    # how `lipmem data prep` cut the face crops the model trained on (margin, shift_y,
    # detector); None for corpora with their own layout (the synthetic one)
    crop: dict[str, Any] | None = None

    def cutter(self) -> WindowCutter:
        return WindowCutter(image_size=self.image_size, fps=self.fps,
                            sample_rate=self.sample_rate, audio_seconds=self.audio_seconds,
                            logmel=LogMel(sample_rate=self.sample_rate))

    def lower_face_mask(self) -> LowerFaceMask:
        return LowerFaceMask(self.mask.get("shape", "rectangle"),
                             self.mask.get("region", "nose_to_chin"), self.mask.get("top"),
                             image_size=self.image_size)

    def as_dict(self) -> dict[str, Any]:
        return {"image_size": self.image_size, "fps": self.fps, "sample_rate": self.sample_rate,
                "audio_seconds": self.audio_seconds, "mask": dict(self.mask),
                "crop": dict(self.crop) if self.crop else None}


def model_record(generator: LipSyncGenerator, datamodule: Any = None) -> dict[str, Any]:
    """Plain-typed description saved in every checkpoint (loadable with weights_only=True)."""
    geometry = Geometry(image_size=generator.image_size)
    if datamodule is not None and hasattr(datamodule, "mask"):
        mask = datamodule.mask.describe()
        manifest = getattr(datamodule, "manifest", None) or {}
        prep = manifest.get("config") if manifest.get("source") == "lipmem data prep" else None
        crop = ({k: prep.get(k) for k in ("margin", "shift_y", "detector")}
                if isinstance(prep, dict) else None)
        geometry = Geometry(image_size=int(datamodule.image_size), fps=int(datamodule.fps),
                            sample_rate=int(datamodule.sample_rate),
                            audio_seconds=float(datamodule.audio_seconds),
                            mask={"shape": mask["shape"], "region": mask["region"],
                                  "top": mask["top"]}, crop=crop)
    return {"format": MODEL_RECORD_FORMAT,
            "generator_class": "lightning_modules.nets.LipSyncGenerator",
            "generator": dict(generator.config), "geometry": geometry.as_dict()}


@dataclass
class LoadedGenerator:
    generator: LipSyncGenerator
    geometry: Geometry
    checkpoint: str
    info: dict[str, Any]


def load_generator(ref: str | Path, registry: str | None = None,
                   device: str | torch.device = "cpu", fold_norms: bool = True
                   ) -> LoadedGenerator:
    """A generator in eval mode from a checkpoint file or a model reference
    (``model-RUN:best``, ``wandb:e/p/model-RUN:latest``): sha256-checked when it comes from
    an artifact, read without running code, rebuilt from the record in the checkpoint.
    ``fold_norms`` merges BatchNorm into the convolutions (same output up to float rounding,
    faster): the result is for inference only, its state_dict no longer has BatchNorm keys."""
    from lightning_modules.checkpoints.references import load_checkpoint

    path, checkpoint = load_checkpoint(str(ref), registry)
    record = checkpoint.get(MODEL_RECORD_KEY)
    if not isinstance(record, dict) or "generator" not in record:
        raise ValueError(f"checkpoint {path} has no {MODEL_RECORD_KEY!r} record (not a lipmem "
                         f"LipSyncGAN checkpoint, or one written before lipmem recorded it)")
    cls = GENERATOR_CLASSES.get(record.get("generator_class", ""))
    if cls is None:
        raise ValueError(f"checkpoint {path}: generator_class {record.get('generator_class')!r} "
                         f"is not one of {sorted(GENERATOR_CLASSES)}")
    prefix = "generator."
    state = {k[len(prefix):]: v for k, v in
             generator_state(checkpoint.get("state_dict", {})).items()}
    # the recorded arguments are data: checked against the stored weights before allocating
    generator = build_from_record(cls, record["generator"], state,
                                  f"checkpoint {path}: generator")
    if not bool(generator.memory.loaded):
        raise ValueError(f"checkpoint {path}: the generator's memory codes were never loaded "
                         "(a checkpoint saved before training started?)")
    generator.eval()
    if fold_norms:
        fold_batchnorm(generator)
    try:
        geometry = Geometry(**record.get("geometry", {}))
        if not isinstance(geometry.mask, dict) or not isinstance(geometry.crop, (dict, type(None))):
            raise TypeError("mask must be an object and crop an object or null")
    except TypeError as exc:
        raise ValueError(f"checkpoint {path}: geometry record {record.get('geometry')!r} does "
                         f"not fit {sorted(Geometry.__dataclass_fields__)} ({exc})") from exc
    info = {"checkpoint": str(path), "ref": str(ref), "global_step": checkpoint.get("global_step"),
            "weights": "ema" if any(k.startswith(EMA_PREFIX)
                                    for k in checkpoint.get("state_dict", {})) else "live",
            "epoch": checkpoint.get("epoch"), "memory": checkpoint.get("memory_info") or {}}
    return LoadedGenerator(generator.to(device), geometry, str(path), info)


def frame_mels(audio: np.ndarray, num_frames: int, cutter: WindowCutter, shift: int = 0
               ) -> np.ndarray:
    """(T, n_mels, mel_frames) float32: for frame ``k`` the mel window centred on frame
    ``k + shift``'s centre; audio outside the signal is silence (no wrapping)."""
    with torch.no_grad():
        mel = cutter.logmel(torch.from_numpy(np.ascontiguousarray(audio, dtype=np.float32)))
    mel = mel.numpy()
    return np.stack([cutter.mel_window(mel, (k + shift + 0.5) / cutter.fps)
                     for k in range(num_frames)]) if num_frames else \
        np.zeros((0, cutter.mel_bins, cutter.mel_frames), np.float32)


@dataclass
class GeneratedFrames:
    images: np.ndarray   # uint8 (T, S, S, 3)
    weights: np.ndarray  # float32 (T, n): memory attention per frame


def _autocast(device: torch.device, precision: str | None) -> contextlib.AbstractContextManager:
    if precision in (None, "32", "32-true"):
        return contextlib.nullcontext()
    if precision in ("bf16", "bf16-mixed"):
        return torch.autocast(device_type=device.type, dtype=torch.bfloat16)
    raise ValueError(f"precision={precision!r}: use 32-true or bf16-mixed")


@torch.inference_mode()
def generate_frames(generator: LipSyncGenerator, faces: np.ndarray, mels: np.ndarray,
                    mask: np.ndarray | torch.Tensor, *, references: np.ndarray | None = None,
                    batch_size: int = 32, device: str | torch.device | None = None,
                    precision: str | None = None, channels_last: bool = False
                    ) -> GeneratedFrames:
    """Generate frame ``k`` from ``faces[k]`` with its lower half hidden by ``mask`` (1 =
    hidden, (S, S) or (1, S, S)) and ``mels[k]``; ``references`` (T, S, S, 3) for models
    trained with a reference frame."""
    if faces.ndim != 4 or faces.shape[-1] != 3 or faces.dtype != np.uint8:
        raise ValueError(f"faces must be uint8 (T, S, S, 3), got {faces.dtype} {faces.shape}")
    size = generator.image_size
    if faces.shape[1:3] != (size, size):
        raise ValueError(f"faces are {faces.shape[2]}x{faces.shape[1]}, the model expects "
                         f"{size}x{size}")
    if mels.shape[0] != faces.shape[0]:
        raise ValueError(f"{mels.shape[0]} mel windows for {faces.shape[0]} frames")
    if generator.use_reference and references is None:
        raise ValueError("this model was trained with reference frames: pass references")
    if batch_size < 1:
        raise ValueError(f"batch_size={batch_size}: must be >= 1")
    device = torch.device(device) if device is not None else next(generator.parameters()).device
    mask_t = torch.as_tensor(np.asarray(mask, dtype=np.float32)).reshape(1, 1, size, size)
    mask_t = mask_t.to(device)
    images, weights = [], []
    for start in range(0, faces.shape[0], batch_size):
        stop = start + batch_size
        face = torch.from_numpy(faces[start:stop]).to(device).permute(0, 3, 1, 2).float() / 255.0
        masked = face * (1.0 - mask_t)
        mel = torch.from_numpy(np.ascontiguousarray(mels[start:stop], dtype=np.float32))
        mel = mel[:, None].to(device)
        ref = None
        if generator.use_reference:
            ref = torch.from_numpy(references[start:stop]).to(device).permute(0, 3, 1, 2)
            ref = ref.float() / 255.0
        if channels_last:
            masked = masked.contiguous(memory_format=torch.channels_last)
            ref = ref.contiguous(memory_format=torch.channels_last) if ref is not None else None
        with _autocast(device, precision):
            out = generator(masked, mel, ref, mask_t)
        image = out.image.float().clamp(0, 1).mul(255.0).add_(0.5).to(torch.uint8)
        images.append(image.permute(0, 2, 3, 1).cpu().numpy())
        weights.append(out.weights.float().cpu().numpy())
    if not images:
        return GeneratedFrames(np.zeros((0, size, size, 3), np.uint8),
                               np.zeros((0, generator.num_codes), np.float32))
    return GeneratedFrames(np.concatenate(images), np.concatenate(weights))


def reference_frames(frames: np.ndarray) -> np.ndarray:
    """A deterministic other frame per target (half the clip away), never the target itself
    when the clip has more than one frame, so the ground-truth mouth does not leak in."""
    n = frames.shape[0]
    return frames[(np.arange(n) + n // 2) % n]


def generate_clip(generator: LipSyncGenerator, clip: Clip, cutter: WindowCutter,
                  mask: np.ndarray | torch.Tensor | LowerFaceMask, *, shift: int = 0,
                  **kwargs: Any) -> GeneratedFrames:
    """Every frame of ``clip`` from its masked ground-truth face and the audio centred on it
    (or on frame ``k + shift`` to measure off-sync behaviour)."""
    if isinstance(mask, LowerFaceMask):
        mask = mask.numpy()
    mels = frame_mels(clip.audio, clip.num_frames, cutter, shift)
    refs = reference_frames(clip.frames) if generator.use_reference else None
    return generate_frames(generator, clip.frames, mels, mask, references=refs, **kwargs)
