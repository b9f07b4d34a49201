"""The pieces of the streaming input pipeline (webdataset stages and the loader).

Pipeline per split (see :class:`datamodules.lipsync_datamodule.LipSyncDataModule`)::

    ShardSource -> TarSamples(state) -> ClipsToWindows
        -> SeededShuffle (train only) -> wds.batched(..., collation_fn=Collate) -> StreamLoader

Everything that varies per process lives in one :class:`StreamState` shared by the stages of
one pipeline: the seed, the epoch and the DDP rank/world size (written by the loader in the
main process right before the DataLoader starts its workers, so forked or spawned workers
see them as plain ints and never have to ask torch.distributed), plus per-worker counters
of skipped, repaired and decoded clips. Skips and repairs are counted by category
(:mod:`datamodules.data_issues`); counters in worker processes reach the training step only
through the batches, so :class:`Collate` puts the counts since the worker's previous batch
into each batch (``skipped``: total, ``issues``: int64 vector in ``data_issues.ISSUES``
order). Every stage is a picklable object (no closures), so the
pipeline also works with the ``spawn`` start method.
"""

from __future__ import annotations

import logging
import os
import random
import tarfile
import warnings
import zlib
from collections import Counter
from collections.abc import Callable, Iterator
from itertools import islice
from typing import Any

import numpy as np
import torch
import webdataset as wds
from torch.utils.data import IterableDataset, get_worker_info

from datamodules.data_issues import check_reason, issue_vector
from datamodules.sample_format import SampleError, decode_sample
from datamodules.windows import WindowCutter

log = logging.getLogger(__name__)

# Train streams give up (instead of spinning forever) after this many full passes over a
# worker's shards without a single usable clip.
MAX_EMPTY_PASSES = 2


class SkippedSampleWarning(UserWarning):
    """A sample (or part of a shard) was unusable and skipped; the stream goes on."""


class RepairedSampleWarning(UserWarning):
    """A sample was repaired (resampled, resized, ...) and used; once per kind and worker."""


# ---------------------------------------------------------------------- rank / world size
def rank_and_world_size(trainer: Any = None) -> tuple[int, int]:
    """Global rank and world size of this process.

    Order: an initialised torch.distributed group (the truth once DDP is up), then an
    attached Lightning trainer, then the environment. Lightning's script launcher sets
    WORLD_SIZE, LOCAL_RANK and NODE_RANK but not RANK, so RANK is not required: the global
    rank is then ``NODE_RANK * LOCAL_WORLD_SIZE + LOCAL_RANK`` (``LOCAL_RANK`` on node 0).
    """
    if torch.distributed.is_available() and torch.distributed.is_initialized():
        return torch.distributed.get_rank(), torch.distributed.get_world_size()
    if trainer is not None:
        try:
            return int(trainer.global_rank), int(trainer.world_size)
        except (AttributeError, RuntimeError, TypeError) as exc:  # strategy not set up yet
            log.debug("trainer has no rank yet (%s); using the environment", exc)
    env = os.environ
    world = int(env.get("WORLD_SIZE", "1") or 1)
    if "RANK" in env:
        rank = int(env["RANK"])
    elif "LOCAL_RANK" in env:
        local = int(env["LOCAL_RANK"])
        node = int(env.get("NODE_RANK", env.get("GROUP_RANK", "0")) or 0)
        local_world = int(env.get("LOCAL_WORLD_SIZE", "0") or 0)
        if node == 0:
            rank = local
        elif local_world > 0:
            rank = node * local_world + local
        else:
            raise RuntimeError(f"cannot determine the global rank: RANK is unset, NODE_RANK={node} "
                               f"and LOCAL_WORLD_SIZE is unset (WORLD_SIZE={world})")
    else:
        rank = 0
    if world < 1 or not 0 <= rank < world:
        raise RuntimeError(f"inconsistent distributed environment: rank {rank}, world size {world}")
    return rank, world


def worker_id_and_count() -> tuple[int, int]:
    info = get_worker_info()
    return (0, 1) if info is None else (info.id, info.num_workers)


def seed_worker(worker_id: int) -> None:
    """DataLoader worker_init_fn: torch and ``random`` are already seeded per worker by
    PyTorch; give numpy's global generator a per-worker seed too. (The pipeline itself uses
    explicit generators derived from seed/epoch/rank/worker, see StreamState.rng.)"""
    np.random.seed(torch.initial_seed() % 2**32)


# ---------------------------------------------------------------------- shared state
class StreamState:
    """Per-pipeline settings plus per-worker counters (each worker has its own copy)."""

    def __init__(self, name: str, seed: int = 0) -> None:
        self.name = name
        self.seed = int(seed)
        self.epoch = 0
        self.rank = 0
        self.world_size = 1
        self.skipped = 0        # since the last batch; reset by Collate
        self.skipped_total = 0
        self.issues: Counter[str] = Counter()        # by category, since the last batch
        self.issues_total: Counter[str] = Counter()  # by category, this worker's whole stream
        self.ok_clips = 0
        self.current_url: str | None = None  # the shard being read (set by ShardSource)
        self._errored_url: str | None = None

    def rng(self, tag: str) -> np.random.Generator:
        """A generator unique to (seed, epoch, rank, worker, tag) and reproducible from them."""
        worker, _ = worker_id_and_count()
        return np.random.default_rng(
            [self.seed, self.epoch, self.rank, worker, zlib.crc32(tag.encode())])

    def skip(self, key: str, reason: str, category: str = "other") -> None:
        """Count a skipped sample under ``category`` (data_issues.SKIP_REASONS) and warn."""
        check_reason(category, "skip")
        self.skipped += 1
        self.skipped_total += 1
        self.issues[category] += 1
        self.issues_total[category] += 1
        warnings.warn(f"[{self.name}] skipping sample {key!r} ({category}): {reason}",
                      SkippedSampleWarning, stacklevel=2)

    def repair(self, key: str, category: str) -> None:
        """Count a repaired (and used) sample; warn on the first of each kind, log the rest."""
        check_reason(category, "repair")
        first = self.issues_total[category] == 0
        self.issues[category] += 1
        self.issues_total[category] += 1
        if first:
            warnings.warn(f"[{self.name}] repaired sample {key!r} ({category}); further "
                          f"{category} repairs are counted in data/repaired/{category} and "
                          "logged at DEBUG level", RepairedSampleWarning, stacklevel=2)
        else:
            log.debug("[%s] repaired sample %r (%s)", self.name, key, category)

    def tar_error(self, exn: BaseException) -> bool:
        """webdataset handler for unreadable shards / tar members: warn, count, continue.

        Classified by exception type: a broken tar stream (``tarfile.TarError``,
        ``EOFError``) is ``truncated_tar``, anything else (a shard that cannot be opened,
        ...) ``other``. A broken stream raises twice (the member, then the stream) and
        loses the rest of the shard: it is counted once per read of that shard.
        """
        url = self.current_url or "unknown shard"
        first = exn.args[0] if getattr(exn, "args", None) else ""
        reason = f"{type(exn).__name__}: {str(first)[:300]}"
        broken_tar = isinstance(exn, (tarfile.TarError, EOFError))
        if broken_tar and self._errored_url == url:
            log.debug("[%s] further error in shard %s: %s", self.name, url, reason)
            return True
        if broken_tar:
            self._errored_url = url
        self.skip(f"<tar data in {url}>", reason, "truncated_tar" if broken_tar else "other")
        return True

    def start_shard(self, url: str) -> None:
        self.current_url = url
        self._errored_url = None

    def take_skipped(self) -> int:
        count, self.skipped = self.skipped, 0
        return count

    def take_issues(self) -> torch.Tensor:
        """Counts by category since the previous call, as a data_issues vector; resets them."""
        vector, self.issues = issue_vector(self.issues), Counter()
        return vector


# ---------------------------------------------------------------------- tar -> samples
class TarSamples:
    """``wds.tarfile_to_samples`` with members grouped into samples here, so that every
    problem is counted once per sample it costs: webdataset raises one ValueError per
    repeated member name (three for a repeated clip) and keeps the first copy, so two
    clips written under one key became one sample built from the first and counted as
    errors. Here such a sample is skipped and counted once, as ``duplicate_member``.
    Consecutive members with one key form a sample (WebDataset's rule); a key ends at the
    next key or at the end of a shard."""

    def __init__(self, state: StreamState) -> None:
        self.state = state

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        from webdataset.tariterators import base_plus_ext, tar_file_expander, url_opener

        streams = url_opener(src, handler=self.state.tar_error)
        current: dict[str, Any] | None = None
        repeated: list[str] = []
        for member in tar_file_expander(streams, handler=self.state.tar_error):
            key, suffix = (None, None) if member == {} else base_plus_ext(member["fname"])
            if member == {} or (key is not None and (current is None
                                                     or key != current["__key__"])):
                yield from self._finish(current, repeated)
                current, repeated = None, []
            if key is None:
                continue  # the end of a shard, or a member name without an extension
            if current is None:
                current = {"__key__": key, "__url__": member["__url__"]}
            suffix = suffix.lower()
            if suffix in current:
                repeated.append(suffix)
            else:
                current[suffix] = member["data"]
        yield from self._finish(current, repeated)

    def _finish(self, sample: dict[str, Any] | None,
                repeated: list[str]) -> Iterator[dict[str, Any]]:
        if sample is None:
            return
        if repeated:
            self.state.skip(sample["__key__"], f"member(s) {sorted(set(repeated))} appear more "
                            "than once under this key: several samples share the name, which "
                            "members belong together is unknown", "duplicate_member")
            return
        yield sample


# ---------------------------------------------------------------------- shard assignment
def assign_shards(urls: list[str], rank: int, world_size: int, worker: int, num_workers: int,
                  *, fill_ranks: bool, fill_workers: bool) -> list[str]:
    """The shards one (rank, worker) reads out of ``urls`` (already in pass order).

    Normal case (``len(urls) >= world_size * num_workers``): ``urls[rank::world_size]``
    (what ``wds.split_by_node`` does) then every ``num_workers``-th of those (what
    ``wds.split_by_worker`` does): disjoint, covering. With too few shards a rank
    (``fill_ranks``) or worker (``fill_workers``) that would get none is given one
    round-robin (``urls[slot % len(urls)]``) instead, so no infinite stream is ever empty.
    """
    if not urls:
        return []
    n = len(urls)
    slots = world_size * num_workers
    if fill_ranks and fill_workers and n < slots:
        return [urls[(rank * num_workers + worker) % n]]
    mine = urls[rank::world_size]
    if not mine and fill_ranks:
        mine = [urls[rank % n]]
    mine = mine[worker::num_workers]
    if not mine and fill_workers:
        mine = [urls[(rank * num_workers + worker) % n]]
    return mine


class ShardSource(IterableDataset):
    """First pipeline stage: yields ``dict(url=...)`` for this rank and worker.

    ``train=True``: endless passes over the shard list, each pass in a new order drawn from
    (seed, epoch, pass) -- the same order on every rank and worker, so their slices are
    disjoint -- and every rank/worker gets at least one shard per pass.
    ``train=False``: one pass in manifest order; ranks always get at least one shard, a
    worker may get none (its stream just ends).
    """

    def __init__(self, urls: list[str], state: StreamState, *, train: bool) -> None:
        super().__init__()
        if not urls:
            raise ValueError(f"[{state.name}] no shards to read")
        self.urls = list(urls)
        self.state = state
        self.train = train

    def pass_order(self, pass_index: int) -> list[str]:
        if not self.train:
            return list(self.urls)
        order = list(self.urls)
        random.Random(zlib.crc32(f"{self.state.seed}|{self.state.epoch}|{pass_index}".encode())
                      ).shuffle(order)
        return order

    def __iter__(self) -> Iterator[dict[str, str]]:
        state = self.state
        worker, num_workers = worker_id_and_count()
        if not self.train:
            for url in assign_shards(self.urls, state.rank, state.world_size, worker, num_workers,
                                     fill_ranks=True, fill_workers=False):
                state.start_shard(url)
                yield {"url": url}
            return
        pass_index = 0
        empty_passes = 0
        while True:
            seen = state.ok_clips
            mine = assign_shards(self.pass_order(pass_index), state.rank, state.world_size,
                                 worker, num_workers, fill_ranks=True, fill_workers=True)
            for url in mine:
                state.start_shard(url)
                yield {"url": url}
            pass_index += 1
            # Samples of this pass have been decoded by the time the next url is requested
            # (except perhaps the last one of a truncated tar): count passes with none usable.
            # Also after earlier good passes: shards deleted or corrupted under a running job
            # would otherwise be retried (and warned about) forever.
            empty_passes = empty_passes + 1 if state.ok_clips == seen else 0
            if empty_passes >= MAX_EMPTY_PASSES:
                raise RuntimeError(
                    f"[{state.name}] rank {state.rank} worker {worker}: {MAX_EMPTY_PASSES} full "
                    f"passes over shards {mine} gave no usable clip ({state.skipped_total} "
                    f"skipped, {state.ok_clips} usable before; see the SkippedSampleWarning "
                    "messages); refusing to loop forever")


# ---------------------------------------------------------------------- samples -> windows
class ClipsToWindows:
    """Decode each raw sample into a clip and cut windows; bad samples are warned about,
    counted and skipped, never raised."""

    def __init__(self, cutter: WindowCutter, state: StreamState, windows_per_clip: int, *,
                 train: bool) -> None:
        self.cutter = cutter
        self.state = state
        self.windows_per_clip = windows_per_clip
        self.train = train

    def __call__(self, src: Iterator[dict[str, Any]]) -> Iterator[dict[str, Any]]:
        rng = self.state.rng("windows") if self.train else None
        for sample in src:
            key = str(sample.get("__key__", "<no key>"))
            try:
                clip = self.cutter.prepare(decode_sample(sample, self.cutter.limits))
                windows = self.cutter.cut(clip, self.windows_per_clip, rng, check=False)
            except SampleError as exc:
                self.state.skip(exc.key, exc.reason, exc.category)
                continue
            except Exception as exc:  # noqa: BLE001 - the stream must not die on one sample
                self.state.skip(key, f"{type(exc).__name__}: {exc}", "other")
                continue
            for repair in clip.repairs:
                self.state.repair(clip.key, repair)
            self.state.ok_clips += 1
            yield from windows


class SeededShuffle:
    """``wds.shuffle`` with a generator drawn from (seed, epoch, rank, worker).

    ``fill`` is the share of the buffer filled before the first window leaves it; by
    default all of it: a partly filled buffer holds the first shard or two only, so the
    first batches would come from a handful of clips (and, in a corpus cut speaker by
    speaker, from one face).
    """

    def __init__(self, bufsize: int, state: StreamState, fill: float = 1.0) -> None:
        self.bufsize = bufsize
        self.state = state
        self.fill = fill

    def __call__(self, src: Iterator[Any]) -> Iterator[Any]:
        if self.bufsize <= 1:
            return iter(src)
        rng = random.Random(int(self.state.rng("shuffle").integers(2**62)))
        initial = max(1, round(self.bufsize * self.fill))
        return wds.shuffle(self.bufsize, initial=initial, rng=rng)(src)


class Collate:
    """List of windows -> batch dict (runs inside the workers)."""

    def __init__(self, mask: np.ndarray, state: StreamState, use_reference: bool) -> None:
        self.mask = np.asarray(mask, dtype=np.float32)
        self.state = state
        self.use_reference = use_reference

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        b = len(samples)
        batch: dict[str, Any] = {
            "face": torch.from_numpy(np.stack([s["face"] for s in samples])),
            "mel": torch.from_numpy(np.stack([s["mel"] for s in samples]).astype(np.float32)),
            "mask": torch.from_numpy(np.repeat(self.mask[None], b, axis=0)),
            "key": [s["key"] for s in samples],
            "speaker": [s.get("speaker", "") for s in samples],
            "frame": torch.tensor([s["frame"] for s in samples], dtype=torch.int64),
        }
        if self.use_reference:
            batch["ref"] = torch.from_numpy(np.stack([s["ref"] for s in samples]))
        if all("mel_off" in s for s in samples):  # sync-expert negatives (off_sync_min_shift)
            batch["mel_off"] = torch.from_numpy(
                np.stack([s["mel_off"] for s in samples]).astype(np.float32))
        if all(s.get("mouth") is not None for s in samples):
            batch["mouth"] = torch.from_numpy(np.stack([s["mouth"] for s in samples]))
        batch["skipped"] = torch.tensor(self.state.take_skipped(), dtype=torch.int64)
        batch["issues"] = self.state.take_issues()  # per category, see data_issues.ISSUES
        return batch


# ---------------------------------------------------------------------- loader
class StreamLoader(wds.WebLoader):
    """``wds.WebLoader`` (batch_size=None: batches come ready from the workers) that, right
    before its workers start, writes the epoch and the rank/world size into the pipeline's
    :class:`StreamState` (``context(pass_index) -> (epoch, rank, world)``).

    ``num_batches`` fixes the epoch length so every DDP rank yields exactly that many
    batches. Such a (train) stream is *continuous*: one worker pool and one live iterator
    serve every epoch, each epoch taking the next ``num_batches`` batches. Restarting the
    workers at each epoch would also empty their shuffle buffers and restart their shard
    passes, so every epoch would begin with a few clips only; and workers kept alive by
    ``persistent_workers`` would never see the new epoch's seed. ``close()`` stops the pool.
    Without ``num_batches`` (val/test) every iteration is one fresh pass.
    """

    def __init__(self, dataset: wds.DataPipeline, state: StreamState,
                 context: Callable[[int], tuple[int, int, int]], *, num_workers: int,
                 num_batches: int | None = None, **kw: Any) -> None:
        kw.setdefault("pin_memory", torch.cuda.is_available())
        super().__init__(dataset, batch_size=None, num_workers=num_workers,
                         worker_init_fn=seed_worker if num_workers > 0 else None,
                         persistent_workers=False, **kw)
        self.state = state
        self.context = context
        self.num_batches = num_batches
        self.iterations = 0
        self._live: Iterator[dict[str, Any]] | None = None

    def __len__(self) -> int:
        if self.num_batches is None:
            raise TypeError("this stream has no fixed length")
        return self.num_batches

    def _set_context(self) -> None:
        epoch, rank, world_size = self.context(self.iterations)
        self.state.epoch, self.state.rank, self.state.world_size = epoch, rank, world_size
        self.iterations += 1

    def __iter__(self) -> Iterator[dict[str, Any]]:
        if self.num_batches is None:
            self._set_context()
            return super().__iter__()
        if self._live is None:
            self._set_context()
            self._live = iter(self.pipeline[0])  # the DataLoader: an endless train stream
        return islice(self._live, self.num_batches)

    def close(self) -> None:
        """Stop a continuous stream's workers (the next iteration starts a new stream)."""
        live, self._live = self._live, None
        shutdown = getattr(live, "_shutdown_workers", None)
        if shutdown is not None:
            shutdown()
