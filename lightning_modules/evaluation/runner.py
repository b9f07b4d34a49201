"""One evaluation: generate every frame of every clip of a split, score it, write the report.

The generator and (optionally) the sync expert are loaded by reference; test clips come
whole from the datamodule (``LipSyncDataModule.clips``), so each generated video is frame
``k`` from the masked ground-truth face ``k`` and the audio centred on it
(``clip_generation.generate_clip``). Every metric is computed on the same frames, with the
ground-truth video's own scores beside them where that means something.
"""

from __future__ import annotations

import time
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from datamodules.atomic_files import sha256_file
from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.manifest import manifest_path
from lightning_modules.evaluation.fid import FID, fid_unavailable_reason
from lightning_modules.evaluation.image_metrics import ImageMetrics
from lightning_modules.evaluation.mouth_metrics import (
    CLOSED_BELOW,
    SILENCE_DB,
    MouthMetrics,
    OpennessEstimator,
)
from lightning_modules.evaluation.report import build_report, write_report
from lightning_modules.evaluation.sync_scores import VSHIFT, SyncScores, clip_sync_score
from lightning_modules.generation.clip_generation import Geometry, generate_clip, load_generator


@dataclass
class EvalSettings:
    model: str
    data: str
    split: str = "test"
    sync_expert: str | None = None
    out: str = "eval"
    device: str = "cpu"
    batch_size: int = 32
    lpips_backbone: str = "auto"
    max_clips: int | None = None
    registry: str | None = None
    vshift: int = VSHIFT
    openness_train_frames: int = 4000
    silence_db: float = SILENCE_DB
    closed_below: float = CLOSED_BELOW


def _datamodule(root: str, geometry: Geometry, **kw: Any) -> LipSyncDataModule:
    return LipSyncDataModule(root=root, image_size=geometry.image_size, fps=geometry.fps,
                             sample_rate=geometry.sample_rate,
                             audio_seconds=geometry.audio_seconds, num_workers=0, **kw)


def _fit_openness(dm: LipSyncDataModule, image_size: int, max_frames: int) -> OpennessEstimator:
    clips = ((c.frames, c.mouth[:, 0]) for c in dm.clips("train") if c.mouth is not None)
    return OpennessEstimator(image_size).fit(clips, max_frames=max_frames)


def evaluate(settings: EvalSettings) -> dict[str, Any]:
    """Run the evaluation and write ``eval.json`` + ``eval.md`` into ``settings.out``."""
    started = time.perf_counter()
    notes: list[str] = []
    loaded = load_generator(settings.model, settings.registry, settings.device)
    geometry = loaded.geometry
    cutter = geometry.cutter()
    mask = geometry.lower_face_mask().numpy()
    dm = _datamodule(settings.data, geometry)
    expert, expert_cutter = None, None
    if settings.sync_expert:
        from lightning_modules.checkpoints.sync_expert_file import load_sync_expert

        expert = load_sync_expert(settings.sync_expert, settings.registry, settings.device)
        if expert.net.image_size != geometry.image_size:
            raise ValueError(f"sync expert {settings.sync_expert!r} judges "
                             f"{expert.net.image_size} px faces, the model makes "
                             f"{geometry.image_size} px faces")
        expert_geometry = Geometry(image_size=geometry.image_size, fps=geometry.fps,
                                   sample_rate=geometry.sample_rate,
                                   audio_seconds=float(expert.geometry.get(
                                       "audio_seconds", geometry.audio_seconds)))
        expert_cutter = expert_geometry.cutter()
    else:
        notes.append("lse_d/lse_c skipped: no --sync-expert given (train one with "
                     "`lipmem fit --config configs/sync_expert.yaml`)")
    has_mouth = dm.has_mouth_track
    mouth = None
    if has_mouth:
        mouth = MouthMetrics(_fit_openness(dm, geometry.image_size,
                                           settings.openness_train_frames),
                             settings.silence_db, settings.closed_below)
    else:
        notes.append("openness_mae/silent_closed_share skipped: the corpus has no ground-truth "
                     "mouth track")
    fid_reason = fid_unavailable_reason()
    fid = None if fid_reason else FID(settings.device)
    if fid_reason:
        notes.append(fid_reason)

    images = ImageMetrics(geometry.image_size, settings.lpips_backbone,
                          device=settings.device)
    perceptual = images.lpips
    notes.append(f"{perceptual.metric_name}_face/{perceptual.metric_name}_mouth: "
                 f"{perceptual.description} (--lpips-backbone {settings.lpips_backbone})")
    sync_gen, sync_gt = SyncScores(), SyncScores()
    clips = frames = 0
    for clip in dm.clips(settings.split, settings.max_clips):
        generated = generate_clip(loaded.generator, clip, cutter, mask,
                                  batch_size=settings.batch_size, device=settings.device).images
        images.update(generated, clip.frames)
        if expert is not None:
            for video, scores in ((generated, sync_gen), (clip.frames, sync_gt)):
                scores.update(clip_sync_score(expert.net, video, clip.audio, expert_cutter,
                                              vshift=settings.vshift,
                                              batch_size=settings.batch_size,
                                              device=settings.device))
        if mouth is not None and clip.mouth is not None:
            mouth.update(generated, clip.frames, clip.mouth, clip.audio, clip.fps,
                         clip.sample_rate)
        if fid is not None:
            fid.update(generated, clip.frames)
        clips += 1
        frames += clip.num_frames
    if not clips:
        raise ValueError(f"no usable clip in split {settings.split!r} of {settings.data!r}")

    metrics: dict[str, float] = dict(images.compute())
    truth: dict[str, float] = {}
    if expert is not None:
        metrics.update(sync_gen.compute())
        truth.update(sync_gt.compute())
    if mouth is not None and mouth.errors["generated"]:
        gen, gt = mouth.compute()
        metrics.update(gen)
        truth.update(gt)
        notes.append(f"openness estimator: ridge regression on {mouth.estimator.fitted_frames} "
                     "ground-truth train frames; ground_truth.openness_mae is its own floor")
    if fid is not None:
        if fid.frames >= 2:
            metrics["fid"] = fid.compute()
        else:
            notes.append("fid skipped: fewer than 2 frames")
    manifest = manifest_path(settings.data)
    data = {"root": str(Path(settings.data).resolve()), "split": settings.split,
            "manifest_sha256": sha256_file(manifest) if manifest.is_file() else None,
            "clips": clips, "frames": frames,
            "settings": {k: v for k, v in asdict(settings).items() if k not in ("model", "data")},
            "model_info": {**loaded.info, "geometry": geometry.as_dict()},
            "perceptual": {"metric": perceptual.metric_name, "net": perceptual.net_name,
                           "backbone": perceptual.backbone},
            "sync_expert": None if expert is None else {
                "ref": expert.ref, "checkpoint": expert.checkpoint, "geometry": expert.geometry},
            "seconds": round(time.perf_counter() - started, 2)}
    report = build_report(settings.model, data, metrics, truth, notes)
    write_report(report, settings.out)
    return report
