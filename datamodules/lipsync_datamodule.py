"""LightningDataModule streaming lip-sync training windows from WebDataset clip shards.

Shards hold whole clips (:mod:`datamodules.sample_format`); the loader workers decode
them, cut windows (:mod:`datamodules.windows`) and batch them, so the main process only
receives ready batches::

    batch = {
        "face":    uint8   (B, T, 3, S, S)  ground-truth target frames
        "mel":     float32 (B, T, 1, 80, mel_frames)  log-mel window per target frame
        "mask":    float32 (B, 1, S, S)  1 = hidden (generated) region
        "ref":     uint8   (B, T, 3, S, S)  only with use_reference
        "mel_off": float32 (B, T, 1, 80, mel_frames)  only with off_sync_min_shift > 0
        "mouth":   float32 (B, T, 3)  only when every clip in the batch has a mouth track
        "key":     list[str]  clip keys
        "speaker": list[str]  the clips' speakers ("" when a clip does not name one)
        "frame":   int64   (B,)  first target frame index
        "skipped": int64   ()  samples this worker skipped since its previous batch
        "issues":  int64   (len(data_issues.ISSUES),)  skips and repairs by category, same span
    }

Train: endless reshuffled shard passes split by rank then by worker (every rank and worker
gets at least one shard), random windows per clip, a sample shuffle buffer, and a fixed
``batches_per_epoch`` per rank so DDP ranks never wait on each other. Val/test: one
deterministic pass, evenly spaced windows, partial last batch kept. A corpus without a val
split fits with validation off (``trainer.limit_val_batches = 0``, one warning).
"""

from __future__ import annotations

import math
import re
import warnings
from collections.abc import Iterator
from pathlib import Path
from typing import Any, Literal

import lightning as L
import webdataset as wds
from lightning.pytorch.utilities import rank_zero_warn

from datamodules.audio_features import SAMPLE_RATE, LogMel
from datamodules.loader_stages import (
    ClipsToWindows,
    Collate,
    SeededShuffle,
    ShardSource,
    StreamLoader,
    StreamState,
    TarSamples,
    assign_shards,
    rank_and_world_size,
)
from datamodules.manifest import (
    load_manifest,
    manifest_path,
    split_clips,
    split_urls,
    verify_shards,
)
from datamodules.masks import LowerFaceMask
from datamodules.sample_format import MOUTH_KEY, Clip, SampleError, decode_sample
from datamodules.sample_limits import DEFAULT_MAX_CLIP_SECONDS
from datamodules.windows import WindowCutter

SPLITS = ("train", "val", "test")
_STAGE_SPLITS = {"fit": ("train", "val"), "validate": ("val",), "test": ("test",),
                 "predict": ("test",), None: None}
_REMOTE = re.compile(r"^(pipe:|[a-zA-Z][a-zA-Z0-9+.-]*://)")


def _is_local(url: str) -> bool:
    return not _REMOTE.match(url)


def _local_path(url: str) -> str:
    return url.removeprefix("file:")


def _check_int(name: str, value: Any, minimum: int, optional: bool = False) -> None:
    if optional and value is None:
        return
    if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
        raise ValueError(f"{name}={value!r}: must be an integer >= {minimum}"
                         + (" or null" if optional else ""))


def expand_shard_spec(spec: str, key: str) -> list[str]:
    """Brace-expand a webdataset URL spec (``::`` separates several); ValueError naming
    ``key`` when nothing remains, FileNotFoundError naming a local shard that is missing."""
    urls = [u.strip() for u in wds.shardlists.expand_urls(spec.strip())] if spec.strip() else []
    urls = [u for u in urls if u]
    if not urls:
        raise ValueError(f"{key}={spec!r}: the pattern expands to no shard")
    missing = [u for u in urls if _is_local(u) and not Path(_local_path(u)).is_file()]
    if missing:
        more = f" (and {len(missing) - 1} more)" if len(missing) > 1 else ""
        raise FileNotFoundError(f"{key}: shard {missing[0]!r} does not exist{more}")
    return urls


def _single_reader(iteration: int) -> tuple[int, int, int]:
    """(epoch, rank, world) of a loader every rank runs whole: all shards, in order."""
    return 0, 0, 1


class LipSyncDataModule(L.LightningDataModule):
    def __init__(
        self,
        root: str | None = "data/synth",
        train_shards: str | None = None,
        val_shards: str | None = None,
        test_shards: str | None = None,
        verify_manifest: bool = True,
        image_size: int = 96,
        fps: int = 25,
        sample_rate: int = 16000,
        audio_seconds: float = 0.2,
        frames_per_window: int = 1,
        mask_shape: Literal["rectangle", "semicircle", "half_face"] = "rectangle",
        mask_region: Literal["lips", "nose_to_chin", "below_eyes"] = "nose_to_chin",
        mask_top: float | None = None,
        use_reference: bool = False,
        ref_min_gap: int = 5,
        windows_per_clip: int = 16,
        val_windows_per_clip: int = 8,
        batch_size: int = 16,
        val_batch_size: int | None = None,
        num_workers: int = 2,
        shuffle_buffer: int = 1024,
        shuffle_fill: float = 1.0,
        batches_per_epoch: int | None = None,
        seed: int = 0,
        audio_shift_frames: int = 0,
        skip_silent_audio: bool = True,
        length_tolerance_frames: float = 1.0,
        off_sync_min_shift: int = 0,
        off_sync_max_shift: int = 15,
        max_clip_seconds: float = DEFAULT_MAX_CLIP_SECONDS,
    ) -> None:
        """
        Args:
            root: corpus folder holding ``manifest.json`` and the shards it lists.
            train_shards, val_shards, test_shards: webdataset URL specs overriding the
                manifest's split (brace patterns, ``::``-joined lists, ``pipe:`` commands,
                e.g. ``pipe:curl -s https://host/train-{0000..0099}.tar``).
            verify_manifest: check size and sha256 of the manifest's shards at ``setup()``.
            image_size, fps, sample_rate: what every clip must have (else it is skipped).
            audio_seconds: mel window per frame; at least 5 frame durations (claim 8).
            frames_per_window: T consecutive target frames per window.
            mask_shape, mask_region, mask_top: see :class:`datamodules.masks.LowerFaceMask`.
            use_reference: add a reference window from the same clip (``ref``), at least
                ``ref_min_gap`` frames from the target.
            windows_per_clip: random windows cut from each decoded train clip.
            val_windows_per_clip: evenly spaced windows per val/test clip.
            batch_size, val_batch_size: val defaults to batch_size.
            num_workers: loader workers per rank (0: read in the main process).
            shuffle_buffer: train sample shuffle buffer in windows (0/1: no shuffle).
            shuffle_fill: share of the buffer filled before the first window leaves it
                (1: full, so the first batches already mix many clips).
            batches_per_epoch: train batches per rank per epoch; default
                manifest train clips * windows_per_clip // (batch_size * world_size).
            seed: seeds shard order, window choice and shuffling (with epoch, rank, worker).
            audio_shift_frames: take each frame's audio from frame + shift (wrapping in
                the clip); 0 for training, non-zero to evaluate with mismatched audio.
            skip_silent_audio: skip (and count) clips whose entire audio is exactly zero,
                almost always a broken export; false keeps them (silent stretches inside a
                clip are always kept).
            length_tolerance_frames: audio up to this many frame durations longer or
                shorter than the frames is trimmed / zero-padded; further off, the clip is
                skipped as ``length_mismatch``. Bad samples never stop a run: each is skipped
                or repaired and counted by category (:mod:`datamodules.data_issues`).
            off_sync_min_shift, off_sync_max_shift: when min > 0, every window also carries
                ``mel_off``, its frames' audio shifted by a random s with min <= |s| <= max
                frames (the sync expert's negatives); 0 (default) for the GAN.
            max_clip_seconds: longest clip (frames and audio) a sample may hold; longer
                ones, frames above 4 x image_size and sample rates outside 4-192 kHz are
                skipped as ``oversized`` before they are decoded in full or resampled.
        """
        super().__init__()
        self.save_hyperparameters()
        if root is None and not (train_shards or val_shards or test_shards):
            raise ValueError("root=None and no train_shards/val_shards/test_shards: nothing to read")
        for name, spec in (("train_shards", train_shards), ("val_shards", val_shards),
                           ("test_shards", test_shards)):
            if spec is not None and not str(spec).strip():
                raise ValueError(f"{name}={spec!r}: empty shard pattern (use null for the manifest)")
        _check_int("image_size", image_size, 8)
        if sample_rate != SAMPLE_RATE:
            raise ValueError(f"sample_rate={sample_rate!r}: the log-mel features are defined at "
                             f"{SAMPLE_RATE} Hz; resample the corpus")
        _check_int("windows_per_clip", windows_per_clip, 1)
        _check_int("val_windows_per_clip", val_windows_per_clip, 1)
        _check_int("batch_size", batch_size, 1)
        _check_int("val_batch_size", val_batch_size, 1, optional=True)
        _check_int("num_workers", num_workers, 0)
        _check_int("shuffle_buffer", shuffle_buffer, 0)
        if isinstance(shuffle_fill, bool) or not isinstance(shuffle_fill, (int, float)) \
                or not 0.0 < shuffle_fill <= 1.0:
            raise ValueError(f"shuffle_fill={shuffle_fill!r}: must be in (0, 1]")
        _check_int("batches_per_epoch", batches_per_epoch, 1, optional=True)
        _check_int("seed", seed, 0)
        # The configuration lives in self.hparams only; the properties below read it.
        self._mask = LowerFaceMask(mask_shape, mask_region, mask_top, image_size)
        # Checks the audio / reference / off-sync settings (WindowCutter owns those rules)
        # and fixes mel_bins and mel_frames.
        self._probe_cutter = self._cutter(train=False)
        self._manifest: dict[str, Any] | None = None
        self._manifest_checked = False
        self._urls: dict[str, list[str]] = {}
        self._from_manifest: dict[str, bool] = {}
        self._verified: set[str] = set()
        self._has_mouth: bool | None = None
        self._warned_fill: set[str] = set()
        self._warned_no_val = False
        self.train_batches_per_epoch: int | None = None
        self._train_loader: StreamLoader | None = None

    # ------------------------------------------------------------------ properties
    # what models, callbacks and jobs read from the data (all from self.hparams)
    @property
    def root(self) -> str | None:
        return self.hparams.root

    @property
    def shard_specs(self) -> dict[str, str | None]:
        h = self.hparams
        return {"train": h.train_shards, "val": h.val_shards, "test": h.test_shards}

    @property
    def image_size(self) -> int:
        return self.hparams.image_size

    @property
    def fps(self) -> int:
        return self.hparams.fps

    @property
    def sample_rate(self) -> int:
        return self.hparams.sample_rate

    @property
    def audio_seconds(self) -> float:
        return float(self.hparams.audio_seconds)

    @property
    def frames_per_window(self) -> int:
        return self.hparams.frames_per_window

    @property
    def batch_size(self) -> int:
        return self.hparams.batch_size

    @property
    def val_batch_size(self) -> int:
        return self.hparams.val_batch_size or self.hparams.batch_size

    @property
    def num_workers(self) -> int:
        return self.hparams.num_workers

    @property
    def mel_bins(self) -> int:
        return self._probe_cutter.mel_bins

    @property
    def mel_frames(self) -> int:
        return self._probe_cutter.mel_frames

    @property
    def mask(self) -> LowerFaceMask:
        return self._mask

    @property
    def manifest(self) -> dict[str, Any] | None:
        """The corpus manifest when ``root`` holds one (loaded lazily), else None."""
        if self._manifest is None and self.root is not None \
                and manifest_path(self.root).is_file():
            self._manifest = load_manifest(self.root)
        return self._manifest

    @property
    def has_mouth_track(self) -> bool:
        """Whether the corpus carries ground-truth mouth tracks: the manifest's
        ``has_mouth_track`` field when present, else a look at the first train shard."""
        if self._has_mouth is None:
            self._has_mouth = self._detect_mouth_track()
        return self._has_mouth

    def _detect_mouth_track(self) -> bool:
        manifest = self.manifest
        if manifest is not None and isinstance(manifest.get("has_mouth_track"), bool):
            return manifest["has_mouth_track"]
        try:
            urls = self._resolve("train", verify=False)
        except (ValueError, FileNotFoundError):
            return False
        local = [u for u in urls if _is_local(u)]
        if not local:
            return False
        peek = wds.DataPipeline(wds.SimpleShardList(local[:1]),
                                wds.tarfile_to_samples(handler=wds.ignore_and_continue))
        for sample in peek:
            return MOUTH_KEY in sample
        return False

    def describe(self) -> dict[str, Any]:
        """Settings worth recording with a run (JSON-friendly)."""
        return {"mel_bins": self.mel_bins, "mel_frames": self.mel_frames,
                "mask": self._mask.describe(), "fps": self.fps, "sample_rate": self.sample_rate,
                "audio_seconds": self.audio_seconds, "frames_per_window": self.frames_per_window,
                "train_batches_per_epoch": self.train_batches_per_epoch,
                "shards": {k: len(v) for k, v in self._urls.items()}}

    # ------------------------------------------------------------------ setup
    def _require_manifest(self, split: str) -> dict[str, Any]:
        if self.root is None:
            raise ValueError(f"{split}_shards is not set and root=None: no shards for split "
                             f"{split!r}")
        manifest = load_manifest(self.root)  # FileNotFoundError / ManifestError name the file
        self._manifest = manifest
        if not self._manifest_checked:
            for key in ("fps", "sample_rate", "image_size"):
                if int(manifest[key]) != int(getattr(self, key)):
                    raise ValueError(f"manifest {manifest['_path']!r}: {key}={manifest[key]} but "
                                     f"the datamodule is configured with {key}="
                                     f"{getattr(self, key)}")
            self._manifest_checked = True
        return manifest

    def _resolve(self, split: str, verify: bool) -> list[str]:
        spec = self.shard_specs[split]
        if spec is not None:
            self._from_manifest[split] = False
            return expand_shard_spec(spec, f"{split}_shards")
        manifest = self._require_manifest(split)
        urls = split_urls(manifest, self.root, split)
        if not urls:
            raise ValueError(f"manifest {manifest['_path']!r}: split {split!r} has no shards")
        if verify and split not in self._verified:
            verify_shards(manifest, self.root, check_sha256=True, splits=[split])
            self._verified.add(split)
        missing = [u for u in urls if not Path(u).is_file()]
        if missing:
            raise FileNotFoundError(f"shard {missing[0]!r} listed in manifest "
                                    f"{manifest['_path']!r} does not exist")
        self._from_manifest[split] = True
        return urls

    def setup(self, stage: str | None = None) -> None:
        if stage not in _STAGE_SPLITS:
            raise ValueError(f"stage={stage!r}: expected one of {list(_STAGE_SPLITS)}")
        splits = _STAGE_SPLITS[stage]
        if splits is None:  # all splits that are configured or in the manifest
            manifest = self.manifest
            splits = tuple(s for s in SPLITS if self.shard_specs[s] is not None
                           or (manifest is not None and s in manifest["splits"]))
            if not splits:
                raise ValueError(f"no split found under root={self.root!r} and no shard patterns")
        for split in splits:
            if stage == "fit" and split == "val" and not self._has_shards("val"):
                self._validation_off()
                continue
            self._setup_split(split)

    def _has_shards(self, split: str) -> bool:
        """Whether ``split`` has shards to read: a pattern, or a manifest split with shards."""
        if self.shard_specs[split] is not None:
            return True
        if self.root is None:
            return False
        manifest = self._require_manifest(split)
        return bool(manifest["splits"].get(split, {}).get("shards"))

    def _validation_off(self) -> None:
        """A corpus without a val split (one person's videos, a train-only shard list) still
        fits: validation is switched off for this trainer, and said so once."""
        if not self._warned_no_val:
            self._warned_no_val = True
            where = (f"manifest {self.manifest['_path']!r}" if self.manifest is not None
                     else "the configured shards")
            rank_zero_warn(f"lipmem: {where} has no 'val' split: fitting WITHOUT validation (no "
                           f"val metrics; checkpoint callbacks monitoring one keep last.ckpt "
                           f"only). To validate on held-out clips of the same person, prepare "
                           f"with `lipmem data prep --split-by video` (several videos) or "
                           f"`--split-by clip` (one long video).")
        if self.trainer is not None:
            self.trainer.limit_val_batches = 0

    def _setup_split(self, split: str) -> None:
        self._urls[split] = self._resolve(split, verify=self.hparams.verify_manifest)
        if split == "train":
            self.train_batches_per_epoch = self._batches_per_epoch()

    def _batches_per_epoch(self) -> int:
        if self.hparams.batches_per_epoch is not None:
            return self.hparams.batches_per_epoch
        if not self._from_manifest.get("train"):
            raise ValueError("batches_per_epoch=None needs the manifest's train clip count, but "
                             f"train_shards={self.shard_specs['train']!r} overrides the manifest: "
                             f"set batches_per_epoch")
        _, world_size = rank_and_world_size(self.trainer)
        clips = split_clips(self._require_manifest("train"), "train")
        return max(1, clips * self.hparams.windows_per_clip // (self.batch_size * world_size))

    # ------------------------------------------------------------------ loaders
    def _context(self, iteration: int) -> tuple[int, int, int]:
        """(epoch, rank, world size) for a loader's ``iteration``-th pass (0-based): the
        trainer's current epoch when a trainer is attached (so a resumed run continues the
        sequence of shard orders), else the loader's own pass count."""
        rank, world_size = rank_and_world_size(self.trainer)
        epoch = int(self.trainer.current_epoch) if self.trainer is not None else iteration
        return epoch, rank, world_size

    def _warn_if_filled(self, split: str, urls: list[str], train: bool) -> None:
        _, world_size = rank_and_world_size(self.trainer)
        workers = max(1, self.num_workers)
        slots = world_size * workers if train else world_size
        if len(urls) < slots and split not in self._warned_fill:
            self._warned_fill.add(split)
            what = f"{world_size} rank(s) x {workers} worker(s)" if train else f"{world_size} ranks"
            warnings.warn(f"{split}: {len(urls)} shard(s) for {what}; shards are assigned "
                          f"round-robin so some are read by several {'workers' if train else 'ranks'}"
                          f" (use at least {slots} shards to avoid duplicates)", stacklevel=3)

    def _cutter(self, train: bool) -> WindowCutter:
        h = self.hparams
        return WindowCutter(image_size=h.image_size, fps=h.fps, sample_rate=h.sample_rate,
                            audio_seconds=float(h.audio_seconds),
                            frames_per_window=h.frames_per_window,
                            use_reference=h.use_reference, ref_min_gap=h.ref_min_gap,
                            skip_silent_audio=h.skip_silent_audio,
                            length_tolerance_frames=h.length_tolerance_frames,
                            off_sync_min_shift=h.off_sync_min_shift,
                            off_sync_max_shift=h.off_sync_max_shift,
                            max_clip_seconds=h.max_clip_seconds,
                            audio_shift_frames=0 if train else h.audio_shift_frames,
                            logmel=LogMel(sample_rate=h.sample_rate))

    def _loader(self, split: str, *, windows_per_clip: int | None = None,
                every_rank_reads_all: bool = False, num_workers: int | None = None
                ) -> StreamLoader:
        if split not in self._urls:  # used without Lightning: set up just this split
            self._setup_split(split)
        urls = self._urls[split]
        train = split == "train" and not every_rank_reads_all
        if windows_per_clip is None:
            windows_per_clip = self.hparams.windows_per_clip if train else self.hparams.val_windows_per_clip
        state = StreamState(split, self.hparams.seed)
        batch_size = self.batch_size if train else self.val_batch_size
        dataset = wds.DataPipeline(
            ShardSource(urls, state, train=train),
            TarSamples(state),
            ClipsToWindows(self._cutter(train), state, windows_per_clip, train=train),
            SeededShuffle(self.hparams.shuffle_buffer, state, float(self.hparams.shuffle_fill)) if train else None,
            wds.batched(batch_size, collation_fn=Collate(self._mask.numpy(), state,
                                                         self.hparams.use_reference),
                        partial=not train),
        )
        workers = self.num_workers if num_workers is None else num_workers
        context = _single_reader if every_rank_reads_all else self._context
        if not every_rank_reads_all:
            self._warn_if_filled(split, urls, train)
            if not train:  # more workers than shards a rank reads only adds idle processes
                _, world_size = rank_and_world_size(self.trainer)
                workers = min(workers, max(1, math.ceil(len(urls) / world_size)))
        return StreamLoader(dataset, state, context, num_workers=workers,
                            num_batches=self.train_batches_per_epoch if train else None)

    def memory_batches(self, max_frames: int) -> StreamLoader:
        """Deterministic batches of training frames for building memory codes.

        Windows are spread evenly over every training clip (not the first M frames), so the
        sample covers the corpus' mouth shapes; every DDP rank reads the same frames, so ranks
        that cluster them get the same codes.
        """
        if "train" not in self._urls:
            self._setup_split("train")
        from_manifest = self._from_manifest.get("train")
        clips = split_clips(self._require_manifest("train"), "train") if from_manifest else None
        per_clip = self.hparams.val_windows_per_clip if clips is None else max(1, math.ceil(max_frames / clips))
        return self._loader("train", windows_per_clip=per_clip, every_rank_reads_all=True,
                            num_workers=0)

    def train_dataloader(self) -> StreamLoader:
        if self._train_loader is not None:
            self._train_loader.close()
        self._train_loader = self._loader("train")
        return self._train_loader

    def teardown(self, stage: str) -> None:
        """Stop the continuous train stream's workers when fitting ends."""
        if self._train_loader is not None:
            self._train_loader.close()
            self._train_loader = None

    def val_dataloader(self) -> StreamLoader:
        return self._loader("val")

    def test_dataloader(self) -> StreamLoader:
        return self._loader("test")

    def clips(self, split: str, limit: int | None = None) -> Iterator[Clip]:
        """Whole decoded clips of a split, in shard order (every rank the same): for videos
        and evaluation, which need every frame of a clip rather than random windows.
        Unusable clips are skipped with a SkippedSampleWarning, as in the loaders."""
        if split not in self._urls:
            self._setup_split(split)
        state = StreamState(f"{split}-clips", self.hparams.seed)
        cutter = self._cutter(train=False)
        count = 0
        for sample in TarSamples(state)(iter([{"url": url} for url in self._urls[split]])):
            if limit is not None and count >= limit:
                return
            try:
                # repaired where well-defined; nothing over the limits is decoded in full
                clip = cutter.prepare(decode_sample(sample, cutter.limits))
            except SampleError as exc:
                state.skip(exc.key, exc.reason, exc.category)
                continue
            count += 1
            yield clip

    def shards_for(self, split: str, rank: int, world_size: int, worker: int = 0,
                   num_workers: int = 1) -> list[str]:
        """Which shards (of the first train pass / the val-test pass) a rank and worker read;
        for inspection and tests."""
        if split not in self._urls:
            self._setup_split(split)
        train = split == "train"
        urls = ShardSource(self._urls[split], StreamState(split, self.hparams.seed), train=train)
        return assign_shards(urls.pass_order(0), rank, world_size, worker, num_workers,
                             fill_ranks=True, fill_workers=train)


__all__ = ["LipSyncDataModule", "expand_shard_spec"]
