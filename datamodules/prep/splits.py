"""Which split each prepared clip goes to, and which shard it is packed into.

Split modes (``lipmem data prep --split-by``), all deterministic given the seed:

``speaker``  whole speakers per split: val/test measure faces never seen in training. The
             default when the corpus has at least 3 speakers.
``video``    whole source videos per split: with one or two people (a personal corpus),
             val/test are other recordings of the same faces. The default below 3 speakers.
``clip``     for a person with one or two long recordings: each non-test video gives the
             contiguous block of clips at its end to val, after a gap of one clip that goes
             nowhere (neighbouring clips share pose, light and phrasing; the gap keeps the
             clips at a block edge from having a near-copy on the other side). Test is still
             made of whole videos.

Why test is never cut from a training video, in any mode: test numbers are what gets
reported, and frames from the recording a model trained on (same session, light, framing)
flatter it. Val only chooses checkpoints and stops training, where a slightly optimistic
held-out block of the same recording is far better than no validation at all; so clip mode
holds out time blocks for val only, and a single recording gives train + val, no test.

Shards interleave: a split's clips are ordered speaker by speaker and video by video (each
in a seeded order, clips of a video seeded-shuffled) and dealt round-robin to the split's
shards, and each shard's clips are then seeded-shuffled. So a speaker or video with at least
as many clips as there are shards is in every shard, and a streaming loader's shuffle buffer
sees many speakers in any stretch of the stream. Splits get at least ``min_shards`` shards
(when they have that many clips) so every loader worker on every rank reads its own shards.
"""

from __future__ import annotations

import hashlib
import math
from collections import defaultdict
from dataclasses import dataclass

from datamodules.prep.sources import assign_splits

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class ClipRef:
    """One prepared clip: its sample key, speaker, source video and index in that video
    (clips of a video are numbered in time order)."""

    key: str
    speaker: str
    video: str
    index: int


def resolve_split_mode(requested: str, num_speakers: int) -> str:
    """``requested`` unless ``auto``: speaker with >= 3 speakers (one each for train, val,
    test), else video."""
    if requested != "auto":
        return requested
    return "speaker" if num_speakers >= 3 else "video"


def _rank(*parts: object) -> str:
    """A seeded sort key that does not depend on the other items being sorted."""
    return hashlib.sha256("\0".join(map(str, parts)).encode()).hexdigest()


def assign_clip_splits(clips: list[ClipRef], mode: str, fractions: tuple[float, float, float],
                       seed: int = 0) -> tuple[dict[str, str], list[str]]:
    """(clip key -> split, keys of gap clips left out); see the module docstring."""
    videos: dict[str, list[ClipRef]] = defaultdict(list)
    for clip in clips:
        videos[clip.video].append(clip)
    if mode == "speaker":
        by_speaker = assign_splits(sorted({c.speaker for c in clips}), fractions, seed)
        return {c.key: by_speaker[c.speaker] for c in clips}, []
    if mode == "video":
        by_video = assign_splits(sorted(videos), fractions, seed)
        return {c.key: by_video[c.video] for c in clips}, []
    if mode != "clip":
        raise ValueError(f"split mode {mode!r}: expected speaker, video or clip")
    train_f, val_f, test_f = fractions
    # test: whole videos, as video mode would pick them with val folded into train
    by_video = assign_splits(sorted(videos), (train_f + val_f, 0.0, test_f), seed)
    val_share = val_f / (train_f + val_f)
    out: dict[str, str] = {}
    gaps: list[str] = []
    for video, refs in sorted(videos.items()):
        refs = sorted(refs, key=lambda c: c.index)
        if by_video[video] == "test":
            out.update({c.key: "test" for c in refs})
            continue
        n = len(refs)
        n_val = max(1, round(val_share * n)) if val_share > 0 else 0
        if n_val and n - n_val - 1 < 1:  # no room for a train clip and the gap
            n_val = 0
        n_train = n - n_val - (1 if n_val else 0)
        out.update({c.key: "train" for c in refs[:n_train]})
        if n_val:
            gaps.append(refs[n_train].key)
            out.update({c.key: "val" for c in refs[n - n_val:]})
    return out, gaps


def shard_count(num_clips: int, clips_per_shard: int, min_shards: int) -> int:
    """Enough shards for ``clips_per_shard`` each, and at least ``min_shards`` when there are
    that many clips (one clip per shard at the least)."""
    if num_clips <= 0:
        return 0
    return max(math.ceil(num_clips / clips_per_shard), min(min_shards, num_clips))


def pack_shards(clips: list[ClipRef], clips_per_shard: int, min_shards: int, seed: int = 0,
                split: str = "") -> list[list[ClipRef]]:
    """The clips of one split dealt round-robin into interleaved shards (module docstring);
    the same clips and seed give the same shards."""
    count = shard_count(len(clips), clips_per_shard, min_shards)
    order = sorted(clips, key=lambda c: (_rank(seed, split, "speaker", c.speaker),
                                         _rank(seed, split, "video", c.video),
                                         _rank(seed, split, "clip", c.key)))
    shards: list[list[ClipRef]] = [[] for _ in range(count)]
    for i, clip in enumerate(order):
        shards[i % count].append(clip)
    return [sorted(shard, key=lambda c: _rank(seed, split, "within", c.key)) for shard in shards]


__all__ = ["SPLITS", "ClipRef", "assign_clip_splits", "pack_shards", "resolve_split_mode",
           "shard_count"]
