"""Generate a complete synthetic lip-sync corpus: shards plus manifest.

The unit of work is one shard, so workers never share a file and a crash leaves no
half-written shard (``write_shard`` is atomic); the manifest is written last, so a folder
with a manifest is a finished corpus. Every random draw is seeded from (seed, speaker) or
(seed, speaker, clip) alone, so the bytes do not depend on worker count or scheduling.
Speakers, not clips, are split into train/val/test so evaluation measures unseen faces.
"""

from __future__ import annotations

import multiprocessing
import sys
from collections.abc import Iterator
from concurrent.futures import ProcessPoolExecutor, as_completed
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

import numpy as np

from datamodules.atomic_files import write_json_atomic
from datamodules.sample_format import encode_sample
from datamodules.shards import MANIFEST_NAME, ShardInfo, build_manifest, write_shard
from datamodules.synth.faces import FaceRenderer, head_motion, sample_appearance
from datamodules.synth.mouth_track import articulation, frame_track
from datamodules.synth.phones import sample_phones
from datamodules.synth.speech import sample_voice, synthesize_speech

SPLITS = ("train", "val", "test")
SHARD_ORDERS = ("interleaved", "by_speaker")
SOURCE = "synth"
_SPEAKER_STREAM, _CLIP_STREAM, _SHARD_STREAM = 1, 2, 3  # independent seed streams


@dataclass
class SynthConfig:
    """What to generate. Defaults give 10 speakers x 16 clips x 6 s = 16 minutes at 96 px."""

    out_dir: str
    seed: int = 0
    speakers: int = 10
    clips_per_speaker: int = 16
    clip_seconds: float = 6.0
    image_size: int = 96
    fps: int = 25
    sample_rate: int = 16000
    val_speakers: int = 1
    test_speakers: int = 1
    clips_per_shard: int = 8
    workers: int = 2
    shard_order: str = "interleaved"   # interleaved | by_speaker (one speaker's clips together)

    @property
    def num_frames(self) -> int:
        return round(self.clip_seconds * self.fps)

    def problems(self) -> list[tuple[str, str]]:
        """(field, message) for each invalid setting; empty when the config is usable."""
        out: list[tuple[str, str]] = []
        if self.val_speakers < 0 or self.test_speakers < 0:
            out.append(("val_speakers" if self.val_speakers < 0 else "test_speakers",
                        "must be >= 0"))
        if self.speakers <= self.val_speakers + self.test_speakers:
            msg = (f"must exceed val_speakers + test_speakers ({self.val_speakers} + "
                   f"{self.test_speakers}) so training has a speaker, got {self.speakers}")
            out.append(("speakers", msg))
        if self.clips_per_speaker < 1:
            out.append(("clips_per_speaker", f"must be >= 1, got {self.clips_per_speaker}"))
        if self.clip_seconds < 0.5 or self.clip_seconds > 600:
            out.append(("clip_seconds", f"must be between 0.5 and 600, got {self.clip_seconds}"))
        if self.image_size % 2 or not 32 <= self.image_size <= 256:
            msg = f"must be even and between 32 and 256, got {self.image_size}"
            out.append(("image_size", msg))
        if self.fps < 1:
            out.append(("fps", f"must be >= 1, got {self.fps}"))
        elif self.sample_rate % self.fps:
            msg = (f"must be a multiple of fps ({self.fps}) so frames align with whole audio "
                   f"samples, got {self.sample_rate}")
            out.append(("sample_rate", msg))
        if self.sample_rate < 16000:
            msg = f"must be >= 16000 (fricative bands reach 7.5 kHz), got {self.sample_rate}"
            out.append(("sample_rate", msg))
        if self.clips_per_shard < 1:
            out.append(("clips_per_shard", f"must be >= 1, got {self.clips_per_shard}"))
        if self.workers < 0:
            out.append(("workers", f"must be >= 0, got {self.workers}"))
        if self.shard_order not in SHARD_ORDERS:
            out.append(("shard_order", f"must be one of {SHARD_ORDERS}, got {self.shard_order!r}"))
        return out

    def validate(self) -> None:
        problems = self.problems()
        if problems:
            raise ValueError("; ".join(f"{name}: {msg}" for name, msg in problems))


def speaker_name(index: int) -> str:
    return f"spk{index:03d}"


def clip_name(index: int) -> str:
    return f"clip{index:04d}"


def speaker_splits(cfg: SynthConfig) -> dict[str, list[int]]:
    """Speaker indices per split: the last val+test speakers are held out."""
    n_train = cfg.speakers - cfg.val_speakers - cfg.test_speakers
    return {
        "train": list(range(n_train)),
        "val": list(range(n_train, n_train + cfg.val_speakers)),
        "test": list(range(n_train + cfg.val_speakers, cfg.speakers)),
    }


@dataclass(frozen=True)
class ShardUnit:
    """One shard's worth of work: which (speaker, clip) pairs go into which file."""

    split: str
    index: int
    clips: tuple[tuple[int, int], ...]

    @property
    def name(self) -> str:
        return f"{self.split}-{self.index:06d}.tar"


def plan_shards(cfg: SynthConfig) -> list[ShardUnit]:
    """Which clips go into which shard.

    ``interleaved`` (default) deals each split's (speaker, clip) pairs into shards in a
    seeded random order, so every shard mixes speakers and a streaming loader, which reads
    a few shards at a time, never sees one face for hundreds of windows. ``by_speaker``
    keeps one speaker's clips together (the layout of a corpus cut video by video).
    """
    units: list[ShardUnit] = []
    for split, speakers in speaker_splits(cfg).items():
        pairs = [(s, c) for s in speakers for c in range(cfg.clips_per_speaker)]
        if cfg.shard_order == "interleaved":
            order = _rng(cfg.seed, _SHARD_STREAM, SPLITS.index(split)).permutation(len(pairs))
            pairs = [pairs[i] for i in order]
        for i in range(0, len(pairs), cfg.clips_per_shard):
            units.append(ShardUnit(split, i // cfg.clips_per_shard,
                                   tuple(pairs[i:i + cfg.clips_per_shard])))
    return units


def _rng(*key: int) -> np.random.Generator:
    return np.random.default_rng(np.random.SeedSequence([int(k) for k in key]))


def make_clip(cfg: SynthConfig, speaker: int, clip: int) -> dict[str, Any]:
    """Everything about one clip, before encoding: phones, track, audio and frames."""
    spk_rng = _rng(cfg.seed, _SPEAKER_STREAM, speaker)
    voice = sample_voice(spk_rng)
    appearance = sample_appearance(spk_rng)
    rng = _rng(cfg.seed, _CLIP_STREAM, speaker, clip)
    num_frames = cfg.num_frames
    duration = num_frames / cfg.fps
    num_samples = num_frames * cfg.sample_rate // cfg.fps
    phones = sample_phones(rng, duration, voice.rate)
    control = articulation(phones, duration)
    track = frame_track(control, num_frames, cfg.fps)
    audio = synthesize_speech(rng, phones, control, voice, num_samples, cfg.sample_rate)
    renderer = FaceRenderer(appearance, cfg.image_size, rng)
    poses, gains = head_motion(rng, num_frames, cfg.fps)
    frames = renderer.render_clip(track, poses, gains)
    return {"phones": phones, "mouth": track, "audio": audio, "frames": frames,
            "poses": poses, "gains": gains}


def _samples(cfg: SynthConfig, unit: ShardUnit) -> Iterator[dict[str, Any]]:
    for speaker, clip in unit.clips:
        c = make_clip(cfg, speaker, clip)
        spk, name = speaker_name(speaker), clip_name(clip)
        yield encode_sample(
            f"{spk}_{name}", c["frames"], c["audio"], fps=cfg.fps, sample_rate=cfg.sample_rate,
            speaker=spk, clip=name, source=SOURCE, mouth=c["mouth"],
            extra_meta={"phones": [p.as_list() for p in c["phones"]], "seed": cfg.seed},
        )


def _worker_init() -> None:
    """One OpenCV thread per worker process: the pool already uses the cores."""
    import cv2

    cv2.setNumThreads(1)


def write_unit(cfg: SynthConfig, unit: ShardUnit) -> ShardInfo:
    """Render and write one shard (runs in a worker process)."""
    return write_shard(Path(cfg.out_dir) / unit.name, unit.split, _samples(cfg, unit))


def _prepare_out_dir(out: Path, overwrite: bool) -> None:
    manifest = out / MANIFEST_NAME
    if manifest.exists() and not overwrite:
        raise FileExistsError(
            f"{out} already holds a corpus ({MANIFEST_NAME} exists); choose another output "
            f"folder or pass overwrite=True (--overwrite) to replace it")
    out.mkdir(parents=True, exist_ok=True)
    # Manifest first, so an interrupted overwrite never leaves a "complete" mixed folder.
    manifest.unlink(missing_ok=True)
    for split in SPLITS:
        for old in out.glob(f"{split}-*.tar"):
            old.unlink()
    for tmp in out.glob(".*.tar.*.tmp"):
        tmp.unlink()


def _progress(enabled: bool | None):
    """A rich progress bar on a terminal; None (silence) when output is piped or logged."""
    if enabled is None:
        enabled = sys.stdout.isatty()
    if not enabled:
        return None
    from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn

    return Progress(TextColumn("synth shards"), BarColumn(), MofNCompleteColumn(),
                    TimeElapsedColumn(), transient=True)


def manifest_config(cfg: SynthConfig) -> dict[str, Any]:
    config = asdict(cfg)
    config.pop("out_dir")
    return config


def synthesize(cfg: SynthConfig, overwrite: bool = False,
               progress: bool | None = None) -> dict[str, Any]:
    """Generate the corpus into ``cfg.out_dir`` and return its manifest (also written there)."""
    cfg.validate()
    out = Path(cfg.out_dir)
    _prepare_out_dir(out, overwrite)
    units = plan_shards(cfg)
    infos: list[ShardInfo] = []
    bar = _progress(progress)
    task = bar.add_task("shards", total=len(units)) if bar else None
    try:
        if bar:
            bar.start()
        if cfg.workers <= 1:
            for unit in units:
                infos.append(write_unit(cfg, unit))
                if bar:
                    bar.advance(task)
        else:
            # spawn, not fork: forking a parent whose OpenCV/codec thread pools have run
            # deadlocks the children (seen when the caller rendered anything in-process).
            pool = ProcessPoolExecutor(min(cfg.workers, len(units)), initializer=_worker_init,
                                       mp_context=multiprocessing.get_context("spawn"))
            try:
                futures = [pool.submit(write_unit, cfg, unit) for unit in units]
                for future in as_completed(futures):
                    infos.append(future.result())
                    if bar:
                        bar.advance(task)
            except BaseException:
                pool.shutdown(wait=True, cancel_futures=True)
                raise
            pool.shutdown(wait=True)
    finally:
        if bar:
            bar.stop()
    manifest = build_manifest(
        infos, fps=cfg.fps, sample_rate=cfg.sample_rate, image_size=cfg.image_size,
        name="synth", source="lipmem data synth", seed=cfg.seed, has_mouth_track=True,
        config=manifest_config(cfg),
    )
    write_json_atomic(out / MANIFEST_NAME, manifest)
    return manifest
