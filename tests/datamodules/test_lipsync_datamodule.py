"""LipSyncDataModule: batches, validation, setup errors, bad samples, ranks, workers, epochs."""

from __future__ import annotations

import json
import sys
import warnings
from pathlib import Path
from types import SimpleNamespace

import lightning as L
import pytest
import torch

from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.loader_stages import SkippedSampleWarning, assign_shards, rank_and_world_size
from datamodules.shards import MANIFEST_NAME

try:  # module names relative to the rootdir (pytest >= 8 with the rootdir on sys.path) ...
    from tests.datamodules.test_fixture_corpus import (
        SIZE,
        frame_value,
        make_sample,
        truncate_tar_inside_member,
        write_corpus,
        write_raw_shard,
    )
except ModuleNotFoundError:  # ... else load the sibling module from this folder
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_fixture_corpus import (
        SIZE,
        frame_value,
        make_sample,
        truncate_tar_inside_member,
        write_corpus,
        write_raw_shard,
    )

DIST_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK", "NODE_RANK", "LOCAL_WORLD_SIZE", "GROUP_RANK")


@pytest.fixture(autouse=True)
def single_process(monkeypatch):
    for name in DIST_ENV:
        monkeypatch.delenv(name, raising=False)


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    """3 train shards of unequal size (odd count), 2 val shards, 1 test shard; 16 frames."""
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, {"train": [4, 2, 1], "val": [2, 1], "test": [1]}, num_frames=16,
                 has_mouth_track=True)
    return root


def dm_for(root, **kw) -> LipSyncDataModule:
    args = dict(root=None if root is None else str(root), image_size=SIZE, batch_size=4, windows_per_clip=4,
                val_windows_per_clip=3, num_workers=0, shuffle_buffer=16)
    args.update(kw)
    return LipSyncDataModule(**args)


def as_list(loader):
    return [b for b in loader]


# ----------------------------------------------------------------------------- batches
def test_batch_contents(corpus):
    dm = dm_for(corpus, frames_per_window=2, use_reference=True, ref_min_gap=4)
    assert (dm.mel_bins, dm.mel_frames, dm.has_mouth_track) == (80, 16, True)
    dm.setup("fit")
    assert dm.train_batches_per_epoch == 7 * 4 // 4
    batches = as_list(dm.train_dataloader())
    assert len(batches) == 7
    b = batches[0]
    assert set(b) == {"face", "mel", "mask", "ref", "mouth", "key", "speaker", "frame", "skipped",
                      "issues"}
    assert b["face"].shape == (4, 2, 3, SIZE, SIZE) and b["face"].dtype == torch.uint8
    assert b["ref"].shape == (4, 2, 3, SIZE, SIZE) and b["ref"].dtype == torch.uint8
    assert b["mel"].shape == (4, 2, 1, 80, 16) and b["mel"].dtype == torch.float32
    assert b["mask"].shape == (4, 1, SIZE, SIZE) and torch.equal(b["mask"][2], dm.mask.tensor())
    assert b["mouth"].shape == (4, 2, 3) and b["mouth"].dtype == torch.float32
    assert b["frame"].dtype == torch.int64 and b["frame"].shape == (4,)
    assert b["skipped"].dtype == torch.int64 and b["skipped"].dim() == 0
    assert len(b["key"]) == 4 and all(k.startswith("train") for k in b["key"])
    assert b["mel"].min() >= -4 and b["mel"].max() <= 4
    for i in range(4):  # the face really is frames frame..frame+1 of the clip
        f = int(b["frame"][i])
        assert abs(int(b["face"][i, 0].float().mean()) - frame_value(f)) <= 3
        assert abs(int(b["face"][i, 1].float().mean()) - frame_value(f + 1)) <= 3
        ref_first = (float(b["ref"][i, 0].float().mean()) - 20) / 9
        assert abs(round(ref_first) - f) >= 4
    assert sum(int(x["skipped"]) for x in batches) == 0


def test_no_ref_and_no_mouth(tmp_path):
    write_corpus(tmp_path, {"train": [2], "val": [1]}, num_frames=10, mouth=False)
    dm = dm_for(tmp_path)
    assert dm.has_mouth_track is False  # no manifest field: detected from the first shard
    b = next(iter(dm.train_dataloader()))
    assert "ref" not in b and "mouth" not in b


def test_mouth_detected_from_shard(tmp_path):
    write_corpus(tmp_path, {"train": [1]}, num_frames=10)
    assert dm_for(tmp_path).has_mouth_track is True


# ----------------------------------------------------------------------------- validation
@pytest.mark.parametrize("kw,match", [
    ({"audio_seconds": 0.1}, r"audio_seconds=0.1\b"),
    ({"batch_size": 0}, "batch_size=0"),
    ({"val_batch_size": -1}, "val_batch_size=-1"),
    ({"num_workers": -1}, "num_workers=-1"),
    ({"frames_per_window": 0}, "frames_per_window=0"),
    ({"batches_per_epoch": 0}, "batches_per_epoch=0"),
    ({"image_size": 0}, "image_size=0"),
    ({"mask_top": 1.2}, r"top=1.2"),
    ({"mask_shape": "oval"}, "'oval'"),
    ({"mask_region": "ears"}, "'ears'"),
    ({"sample_rate": 22050}, "sample_rate=22050"),
    ({"train_shards": ""}, "train_shards=''"),
    ({"root": None}, "root=None"),
])
def test_constructor_rejects(kw, match, tmp_path):
    with pytest.raises(ValueError, match=match):
        dm_for(kw.pop("root", tmp_path), **kw)


# ----------------------------------------------------------------------------- setup errors
def test_missing_manifest_names_path(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / MANIFEST_NAME)):
        dm_for(tmp_path).setup("fit")


def test_sha256_mismatch_and_missing_shard(tmp_path):
    write_corpus(tmp_path, {"train": [2], "val": [1]}, num_frames=8)
    shard = tmp_path / "train-0000.tar"
    data = bytearray(shard.read_bytes())
    data[700] ^= 0xFF
    shard.write_bytes(bytes(data))
    with pytest.raises(ValueError, match=r"train-0000.tar.*sha256: expected"):
        dm_for(tmp_path).setup("fit")
    dm_for(tmp_path, verify_manifest=False).setup("fit")  # sizes still match: no check
    (tmp_path / "val-0000.tar").unlink()
    with pytest.raises(ValueError, match=r"val-0000.tar.*missing"):
        dm_for(tmp_path).setup("validate")
    with pytest.raises(FileNotFoundError, match=r"val-0000.tar"):
        dm_for(tmp_path, verify_manifest=False).setup("validate")


def test_manifest_setting_mismatch(corpus):
    with pytest.raises(ValueError, match=r"manifest.json.*image_size=32.*image_size=64"):
        dm_for(corpus, image_size=64).setup("fit")


def test_missing_val_split_fits_without_validation(tmp_path):
    """No val split: fit switches the trainer's validation off and says so once; asking to
    validate is still an error naming the split."""
    write_corpus(tmp_path, {"train": [1]}, num_frames=8)
    dm = dm_for(tmp_path)
    dm.trainer = SimpleNamespace(limit_val_batches=1.0, world_size=1, global_rank=0,
                                 current_epoch=0)
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        dm.setup("fit")
        dm.setup("fit")  # Lightning may set up again: still one warning
    said = [w for w in caught if "no 'val' split: fitting WITHOUT validation" in str(w.message)]
    assert len(said) == 1
    assert dm.trainer.limit_val_batches == 0
    assert next(iter(dm.train_dataloader()))["face"].shape[0] >= 1
    with pytest.raises(ValueError, match=r"no split 'val'"):
        dm_for(tmp_path).setup("validate")


def test_shard_patterns(corpus, tmp_path):
    pattern = f"{corpus}/train-{{0000..0002}}.tar"
    dm = dm_for(None, train_shards=pattern, val_shards=f"{corpus}/val-0000.tar", batches_per_epoch=3)
    dm.setup("fit")
    assert len(as_list(dm.train_dataloader())) == 3
    with pytest.raises(ValueError, match="batches_per_epoch"):
        dm_for(None, train_shards=pattern, val_shards=pattern).setup("fit")
    with pytest.raises(FileNotFoundError, match=r"train_shards: shard .*train-0003.tar.* does not exist"):
        dm_for(None, train_shards=f"{corpus}/train-{{0000..0009}}.tar", batches_per_epoch=1
               ).setup("fit")
    # pipe: commands (how http/s3 shards are read) work and are not checked for existence
    piped = dm_for(None, test_shards=f"pipe:cat {corpus}/test-0000.tar")
    piped.setup("test")
    assert sum(len(b["key"]) for b in piped.test_dataloader()) == 3
    with pytest.raises(ValueError, match="test_shards.*expands to no shard"):
        dm_for(None, test_shards="::").setup("test")


# ----------------------------------------------------------------------------- bad samples
def _skips_and_keys(loader):
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        batches = as_list(loader)
    messages = [str(w.message) for w in caught if issubclass(w.category, SkippedSampleWarning)]
    return (sum(int(b["skipped"]) for b in batches), [k for b in batches for k in b["key"]],
            messages)


def test_corrupt_samples_are_skipped_and_counted(tmp_path):
    good = [make_sample(f"s_g{i}", 10) for i in range(6)]
    garbage = make_sample("s_badmp4", 10)
    garbage["mp4"] = b"\x00garbage" * 50
    nowav = make_sample("s_nowav", 10)
    del nowav["wav"]
    write_raw_shard(tmp_path / "a.tar", [garbage, nowav, good[0], good[1]])
    write_raw_shard(tmp_path / "b.tar", [good[2], good[3]])
    truncate_tar_inside_member(tmp_path / "b.tar", ".mp4", 1)  # s_g3 is cut off
    write_raw_shard(tmp_path / "c.tar", [good[4], good[5]])
    dm = dm_for(None, val_shards=f"{tmp_path}/{{a,b,c}}.tar", val_batch_size=1,
                val_windows_per_clip=1)
    dm.setup("validate")
    skipped, keys, messages = _skips_and_keys(dm.val_dataloader())
    assert keys == ["s_g0", "s_g1", "s_g2", "s_g4", "s_g5"]  # the stream goes on after each
    # bad mp4, missing wav, the unreadable tail of b.tar (counted once), the partial s_g3
    assert skipped == 4
    assert any("s_badmp4" in m and "undecodable" in m for m in messages)
    assert any("s_nowav" in m and "missing member" in m for m in messages)
    assert any("b.tar" in m and "ReadError" in m for m in messages)
    assert any("s_g3" in m and "missing member" in m for m in messages)

    # the train stream counts them too and keeps producing full batches
    train = dm_for(None, train_shards=f"{tmp_path}/{{a,b,c}}.tar", batches_per_epoch=6,
                   windows_per_clip=2, batch_size=2)
    skipped, keys, _ = _skips_and_keys(train.train_dataloader())
    assert len(keys) == 12 and set(keys) <= {f"s_g{i}" for i in (0, 1, 2, 4, 5)}
    assert skipped >= 3


def test_wrong_sample_rate_and_size_are_repaired_and_counted(tmp_path):
    from datamodules.data_issues import issue_counts

    write_raw_shard(tmp_path / "a.tar", [make_sample("s_sr", 10, sr=8000),
                                         make_sample("s_big", 10, size=48),
                                         make_sample("s_ok", 10)])
    dm = dm_for(None, val_shards=str(tmp_path / "a.tar"))
    batches = as_list(dm.val_dataloader())
    assert {k for b in batches for k in b["key"]} == {"s_sr", "s_big", "s_ok"}
    assert all(b["face"].shape[-1] == SIZE for b in batches)
    counts = issue_counts(sum(b["issues"] for b in batches))
    assert counts["resampled_audio"] == 1 and counts["resized_frames"] == 1
    assert sum(int(b["skipped"]) for b in batches) == 0


def test_all_bad_train_shards_fail_instead_of_hanging(tmp_path):
    bad = make_sample("s_bad", 10)
    bad["mp4"] = b"nope"
    write_raw_shard(tmp_path / "a.tar", [bad])
    dm = dm_for(None, train_shards=str(tmp_path / "a.tar"), batches_per_epoch=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", SkippedSampleWarning)
        with pytest.raises(RuntimeError, match="no usable clip"):
            as_list(dm.train_dataloader())


# ----------------------------------------------------------------------------- ranks
def test_assign_shards_covers_and_never_starves():
    urls = [f"u{i}" for i in range(7)]
    for world, workers in [(1, 1), (2, 1), (2, 3), (3, 2)]:
        got = [assign_shards(urls, r, world, w, workers, fill_ranks=True, fill_workers=True)
               for r in range(world) for w in range(workers)]
        assert sorted(u for g in got for u in g) == urls  # disjoint and covering
    got = [assign_shards(urls[:3], r, 4, w, 2, fill_ranks=True, fill_workers=True)
           for r in range(4) for w in range(2)]
    assert all(len(g) == 1 for g in got) and {u for g in got for u in g} == set(urls[:3])
    # val: every rank reads something; a spare worker just ends
    assert assign_shards(urls[:1], 2, 3, 0, 1, fill_ranks=True, fill_workers=False) == ["u0"]
    assert assign_shards(urls[:2], 0, 1, 2, 3, fill_ranks=True, fill_workers=False) == []


def test_rank_from_environment(monkeypatch):
    assert rank_and_world_size() == (0, 1)
    monkeypatch.setenv("WORLD_SIZE", "2")
    monkeypatch.setenv("LOCAL_RANK", "1")  # Lightning's launcher: no RANK
    assert rank_and_world_size() == (1, 2)
    monkeypatch.setenv("WORLD_SIZE", "4")
    monkeypatch.setenv("NODE_RANK", "1")
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    assert rank_and_world_size() == (3, 4)
    monkeypatch.setenv("RANK", "2")
    assert rank_and_world_size() == (2, 4)


@pytest.mark.parametrize("world", [2, 5])
def test_equal_batch_counts_across_ranks(corpus, monkeypatch, world):
    counts, first_pass_shards = [], []
    for rank in range(world):
        monkeypatch.setenv("WORLD_SIZE", str(world))
        monkeypatch.setenv("RANK", str(rank))
        dm = dm_for(corpus, batches_per_epoch=None)
        dm.setup("fit")
        assert dm.train_batches_per_epoch == max(1, 7 * 4 // (4 * world))
        with warnings.catch_warnings(record=True) as caught:
            warnings.simplefilter("always")
            batches = as_list(dm.train_dataloader())
        assert any("round-robin" in str(w.message) for w in caught) == (world > 3)
        counts.append(len(batches))
        first_pass_shards.append(dm.shards_for("train", rank, world))
        val = as_list(dm.val_dataloader())
        assert len(val) >= 1  # every rank gets validation data
    assert counts == [dm.train_batches_per_epoch] * world
    if world == 2:  # 3 shards of 4, 2, 1 clips: the ranks read disjoint shards
        assert not set(first_pass_shards[0]) & set(first_pass_shards[1])
        assert len(first_pass_shards[0]) + len(first_pass_shards[1]) == 3


# ----------------------------------------------------------------------------- determinism
def _fingerprint(batches):
    return [(tuple(b["key"]), tuple(b["frame"].tolist()), int(b["face"].sum()),
             float(b["mel"].sum())) for b in batches]


def test_val_is_deterministic_and_complete(corpus):
    dm = dm_for(corpus, val_batch_size=4)
    dm.setup("validate")
    loader = dm.val_dataloader()
    first, second = as_list(loader), as_list(loader)
    assert _fingerprint(first) == _fingerprint(second)
    assert _fingerprint(first) == _fingerprint(as_list(dm_for(corpus, val_batch_size=4,
                                                              seed=5).val_dataloader()))
    assert [len(b["key"]) for b in first] == [4, 4, 1]  # 3 clips x 3 windows, partial kept
    keys = sorted({(k, int(f)) for b in first for k, f in zip(b["key"], b["frame"])})
    assert keys == sorted((k, f) for k in ("val0_c000", "val0_c001", "val1_c000")
                          for f in (0, 8, 15))


def test_train_stream_continues_across_epochs_and_follows_seed(corpus):
    loader = dm_for(corpus, seed=3).train_dataloader()
    epoch0, epoch1 = _fingerprint(as_list(loader)), _fingerprint(as_list(loader))
    assert epoch0 != epoch1  # the next slice of one stream, not a restart
    again = dm_for(corpus, seed=3).train_dataloader()
    assert _fingerprint(as_list(again)) == epoch0 and _fingerprint(as_list(again)) == epoch1
    assert _fingerprint(as_list(dm_for(corpus, seed=4).train_dataloader())) != epoch0
    # with a trainer attached, a stream started at a later epoch (a resumed run) is seeded by
    # that epoch: a new order, reproducible
    resumed = [dm_for(corpus, seed=3) for _ in range(2)]
    for dm in resumed:
        dm.trainer = SimpleNamespace(current_epoch=1, global_rank=0, world_size=1)
    first = _fingerprint(as_list(resumed[0].train_dataloader()))
    assert first != epoch0 and first == _fingerprint(as_list(resumed[1].train_dataloader()))


def test_two_workers(corpus):
    dm = dm_for(corpus, num_workers=2, batches_per_epoch=6, shuffle_buffer=0)
    loader = dm.train_dataloader()
    batches = as_list(loader)
    assert len(batches) == 6
    # batches alternate between the workers; they read different shards, so differ
    even = {k for b in batches[0::2] for k in b["key"]}
    odd = {k for b in batches[1::2] for k in b["key"]}
    assert even and odd and even != odd
    val = as_list(dm.val_dataloader())
    assert sum(len(b["key"]) for b in val) == 3 * 3
    assert _fingerprint(val) == _fingerprint(as_list(dm.val_dataloader()))


# ----------------------------------------------------------------------------- Lightning
class _Probe(L.LightningModule):
    def __init__(self):
        super().__init__()
        self.w = torch.nn.Parameter(torch.zeros(1))
        self.seen: dict[int, list] = {}
        self.val_batches = 0

    def training_step(self, batch, _):
        self.seen.setdefault(self.current_epoch, []).append(tuple(batch["key"]))
        return (self.w * batch["face"].float().mean()).sum()

    def validation_step(self, batch, _):
        self.val_batches += 1

    def configure_optimizers(self):
        return torch.optim.SGD(self.parameters(), lr=0.0)


def test_lightning_fit_two_epochs(corpus, tmp_path):
    dm = dm_for(corpus, batches_per_epoch=3)
    model = _Probe()
    trainer = L.Trainer(max_epochs=2, accelerator="cpu", devices=1, logger=False,
                        enable_checkpointing=False, enable_progress_bar=False,
                        enable_model_summary=False, num_sanity_val_steps=0,
                        default_root_dir=tmp_path)
    trainer.fit(model, datamodule=dm)
    assert trainer.num_training_batches == 3
    assert [len(model.seen[e]) for e in (0, 1)] == [3, 3]
    assert model.seen[0] != model.seen[1]
    assert model.val_batches == 2 * 3
    hparams = json.loads(json.dumps(dict(dm.hparams)))  # plain types only
    assert hparams["batches_per_epoch"] == 3


# ----------------------------------------------------------------------------- memory codes
def test_memory_batches_cover_every_train_clip_identically_on_every_rank(corpus, monkeypatch):
    """Bootstrapped memory codes must sample all clips (not the first M frames) and be the
    same on every DDP rank, so each rank reads every shard, deterministically."""
    seen = []
    for rank in range(2):
        monkeypatch.setenv("WORLD_SIZE", "2")
        monkeypatch.setenv("RANK", str(rank))
        batches = as_list(dm_for(corpus).memory_batches(max_frames=14))
        seen.append(_fingerprint(batches))
    assert seen[0] == seen[1]
    keys = {k for batch in seen[0] for k in batch[0]}
    assert len(keys) == 7  # all 7 train clips (4 + 2 + 1), 2 windows each
    assert sum(len(batch[0]) for batch in seen[0]) == 14
