"""Splits that fit the data (by speaker, video or clip block), interleaved shards, and a fit
on a one-person corpus that has no val split."""

from __future__ import annotations

import json
import shutil
from collections import Counter, defaultdict
from pathlib import Path

import pytest
import webdataset as wds

from datamodules.manifest import load_manifest, verify_shards
from datamodules.prep.build import prepare
from datamodules.prep.job import PrepConfig
from datamodules.prep.splits import (
    ClipRef,
    assign_clip_splits,
    pack_shards,
    resolve_split_mode,
    shard_count,
)
from tests.media_fixtures import make_talking_video

FRACTIONS = (0.8, 0.1, 0.1)


def _refs(layout: dict[str, dict[str, int]]) -> list[ClipRef]:
    """speaker -> {video: clips} as ClipRefs keyed like prep's samples."""
    return [ClipRef(f"{spk}_{video}-{i:03d}", spk, f"{spk}/{video}.mp4", i)
            for spk, videos in layout.items() for video, n in videos.items() for i in range(n)]


def _splits_of(clips: list[ClipRef], assigned: dict[str, str], attr: str) -> dict[str, set]:
    out: dict[str, set] = defaultdict(set)
    for c in clips:
        if c.key in assigned:
            out[getattr(c, attr)].add(assigned[c.key])
    return out


# ----------------------------------------------------------------------------- split modes
def test_default_mode_is_speaker_from_three_speakers_else_video():
    assert [resolve_split_mode("auto", n) for n in (1, 2, 3, 10)] == [
        "video", "video", "speaker", "speaker"]
    assert resolve_split_mode("clip", 10) == "clip"


def test_speaker_mode_keeps_each_speaker_in_one_split():
    clips = _refs({f"s{i}": {"a": 2, "b": 1} for i in range(10)})
    assigned, gaps = assign_clip_splits(clips, "speaker", FRACTIONS, seed=0)
    assert not gaps and set(assigned) == {c.key for c in clips}
    assert all(len(s) == 1 for s in _splits_of(clips, assigned, "speaker").values())
    assert set(assigned.values()) == {"train", "val", "test"}


def test_video_mode_keeps_each_video_in_one_split_and_is_deterministic():
    clips = _refs({"me": {f"v{i:02d}": 3 for i in range(10)}})
    assigned, gaps = assign_clip_splits(clips, "video", FRACTIONS, seed=0)
    assert not gaps
    assert all(len(s) == 1 for s in _splits_of(clips, assigned, "video").values())
    assert Counter(assigned.values()) == {"train": 24, "val": 3, "test": 3}
    assert assign_clip_splits(list(reversed(clips)), "video", FRACTIONS, seed=0)[0] == assigned
    assert assign_clip_splits(clips, "video", FRACTIONS, seed=1)[0] != assigned


def test_clip_mode_holds_out_the_end_of_each_video_for_val_never_for_test():
    clips = _refs({"me": {"long": 30, "other": 20, "third": 10, "tiny": 2}})
    assigned, gaps = assign_clip_splits(clips, "clip", FRACTIONS, seed=0)
    by_video = _splits_of(clips, assigned, "video")
    test_videos = [v for v, s in by_video.items() if "test" in s]
    assert len(test_videos) == 1 and by_video[test_videos[0]] == {"test"}  # a whole video
    for video in by_video:
        if video in test_videos:
            continue
        refs = sorted((c for c in clips if c.video == video), key=lambda c: c.index)
        labels = [assigned.get(c.key, "gap") for c in refs]
        if len(refs) <= 2:
            assert labels == ["train"] * len(refs)  # too short for a block and a gap
            continue
        # train block, one gap clip, val block at the end
        n_val = labels.count("val")
        assert n_val >= 1 and labels == ["train"] * (len(refs) - n_val - 1) + ["gap"] + [
            "val"] * n_val
    assert len(gaps) == sum(1 for v in by_video if "val" in by_video[v])
    assert not set(gaps) & set(assigned)
    # one long recording: train + val, and no test made from the video it trains on
    single, _ = assign_clip_splits(_refs({"me": {"only": 40}}), "clip", FRACTIONS)
    assert Counter(single.values()) == {"train": 35, "val": 4}


# ----------------------------------------------------------------------------- shards
def test_shards_interleave_speakers_and_videos():
    clips = _refs({"ann": {"a": 6, "b": 5}, "bob": {"c": 9}, "cy": {"d": 3}})
    shards = pack_shards(clips, clips_per_shard=64, min_shards=4, seed=0, split="train")
    assert len(shards) == 4 and sorted(len(s) for s in shards) == [5, 6, 6, 6]
    assert sorted(c.key for s in shards for c in s) == sorted(c.key for c in clips)
    for shard in shards:  # ann and bob have >= 4 clips: they are in every shard
        assert {"ann", "bob"} <= {c.speaker for c in shard}
        assert len({c.video for c in shard}) >= 2
    # within shards, clips are shuffled rather than left in blocks by speaker
    assert any([c.speaker for c in s] != sorted(c.speaker for c in s) for s in shards)
    assert pack_shards(list(reversed(clips)), 64, 4, seed=0, split="train") == shards
    assert pack_shards(clips, 64, 4, seed=1, split="train") != shards


def test_shard_count_covers_workers_on_small_corpora():
    assert shard_count(0, 64, 4) == 0
    assert shard_count(3, 64, 4) == 3      # one clip per shard at the least
    assert shard_count(40, 64, 4) == 4     # was one shard of 40
    assert shard_count(300, 64, 4) == 5    # large corpora: clips_per_shard decides


# ----------------------------------------------------------------------------- end to end
PREP = {"image_size": 48, "clip_seconds": 0.4, "min_clip_seconds": 0.4, "clips_per_shard": 64,
        "workers": 0}


def _videos(root: Path, layout: dict[str, int], seconds: float = 1.6) -> Path:
    seed = 0
    for speaker, count in layout.items():
        for i in range(count):
            seed += 1
            make_talking_video(root / speaker / f"v{i}.mp4", seconds=seconds, size=128,
                               seed=seed)
    return root


def _clip_meta(out: Path) -> dict[str, list[dict]]:
    """split -> metadata of each clip, in shard order."""
    manifest = load_manifest(out)
    verify_shards(manifest, out)
    metas: dict[str, list[dict]] = defaultdict(list)
    for shard in manifest["shards"]:
        for sample in wds.WebDataset(str(out / shard["name"]), shardshuffle=False):
            metas[shard["split"]].append({**json.loads(sample["json"]), "shard": shard["name"]})
    return metas


@pytest.fixture(scope="module")
def person(tmp_path_factory) -> Path:
    """One person, three 1.6 s videos (4 clips of 0.4 s each)."""
    return _videos(tmp_path_factory.mktemp("person") / "videos", {"me": 3})


def test_one_person_defaults_to_video_split(person, tmp_path):
    report = prepare(PrepConfig(str(person), str(tmp_path / "out"), **PREP), progress=False)
    assert report["split_by"] == "video"
    metas = _clip_meta(tmp_path / "out")
    sources = {s: {m["source"] for m in metas[s]} for s in metas}
    assert sorted(sources) == ["test", "train", "val"]
    assert all(len(v) == 1 for v in sources.values())  # one whole video each
    assert not (sources["train"] & sources["val"]) and not (sources["train"] & sources["test"])
    assert load_manifest(tmp_path / "out")["video_splits"]["val"] == sorted(sources["val"])
    assert report["splits"]["train"]["shards"] == 4  # 4 clips: one shard per worker slot


def test_changing_the_split_mode_repacks_without_redoing_videos(person, tmp_path):
    out = tmp_path / "out"
    prepare(PrepConfig(str(person), str(out), **PREP), progress=False)
    report = prepare(PrepConfig(str(person), str(out), **{**PREP, "split_by": "clip"}),
                     progress=False)
    assert report["processed_now"] == 0 and report["corpus_changed"] is True
    assert report["split_by"] == "clip" and report["gap_clips"] == 2
    metas = _clip_meta(out)
    test_sources = {m["source"] for m in metas["test"]}
    assert len(test_sources) == 1
    assert not test_sources & {m["source"] for s in ("train", "val") for m in metas[s]}
    for split in ("train", "val"):
        assert {m["source"] for m in metas[split]} == {m["source"] for m in metas["train"]}
    for source in {m["source"] for m in metas["val"]}:  # val = the end of each video
        val_starts = [m["start_frame"] for m in metas["val"] if m["source"] == source]
        train_starts = [m["start_frame"] for m in metas["train"] if m["source"] == source]
        assert min(val_starts) > max(train_starts) + 10  # a 10-frame clip left out between


def test_three_speakers_default_to_speaker_split(tmp_path):
    videos = _videos(tmp_path / "videos", {"ann": 1, "bob": 1, "cy": 1}, seconds=0.8)
    report = prepare(PrepConfig(str(videos), str(tmp_path / "out"), **PREP), progress=False)
    assert report["split_by"] == "speaker"
    metas = _clip_meta(tmp_path / "out")
    speakers = {s: {m["speaker"] for m in metas[s]} for s in metas}
    assert sorted(speakers) == ["test", "train", "val"]
    assert sum(len(v) for v in speakers.values()) == 3  # no speaker in two splits


@pytest.fixture(scope="module")
def train_only(tmp_path_factory) -> Path:
    """Two speakers x two 1.6 s videos, all train (--split 1 0 0): 16 clips, 4 shards."""
    base = tmp_path_factory.mktemp("train_only")
    videos = _videos(base / "videos", {"ann": 2, "bob": 2})
    out = base / "out"
    prepare(PrepConfig(str(videos), str(out), **{**PREP, "split": (1.0, 0.0, 0.0)}),
            progress=False)
    return out


def test_each_shard_interleaves_speakers_and_videos(train_only, tmp_path):
    metas = _clip_meta(train_only)
    assert list(metas) == ["train"] and len(metas["train"]) == 16
    shards: dict[str, list[dict]] = defaultdict(list)
    for meta in metas["train"]:
        shards[meta["shard"]].append(meta)
    assert len(shards) == 4
    for clips in shards.values():
        assert {m["speaker"] for m in clips} == {"ann", "bob"}
        assert len({m["source"] for m in clips}) >= 2
    # deterministic: the same inputs and seed give byte-identical shards
    again = tmp_path / "again"
    shutil.copytree(train_only, again)
    for shard in again.glob("*.tar"):
        shard.unlink()
    (again / "manifest.json").unlink()
    prepare(PrepConfig(str(train_only.parent / "videos"), str(again),
                       **{**PREP, "split": (1.0, 0.0, 0.0)}), progress=False)
    for shard in train_only.glob("*.tar"):
        assert (again / shard.name).read_bytes() == shard.read_bytes()


def test_fit_on_a_corpus_without_val_split(train_only, tmp_path, lipmem_cli):
    run_dir = tmp_path / "run"
    out = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={train_only}",
                      f"--trainer.default_root_dir={run_dir}"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert out.stderr.count("WITHOUT validation (no val metrics") == 1, out.stderr[-3000:]
    assert "could not find the monitored key" not in out.stderr
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert not [p for p in (run_dir / "checkpoints").glob("*.ckpt") if p.name != "last.ckpt"]
