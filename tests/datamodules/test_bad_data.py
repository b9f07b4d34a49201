"""Bad data never stops a run: every broken sample is skipped or repaired, and counted.

Real tar shards hold each bad case beside good clips (one shard is cut off mid-member);
the real LipSyncDataModule loaders read them through worker processes, and the counts by
category that come back in the batches are checked against the cases that were written.
"""

from __future__ import annotations

import io
import json
import os
import tarfile
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import scipy.io.wavfile
import torch

from datamodules.atomic_files import sha256_file, write_json_atomic
from datamodules.data_issues import ISSUES, REPAIR_REASONS, SKIP_REASONS, issue_counts
from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.sample_format import encode_sample
from datamodules.shards import MANIFEST_NAME, ShardInfo, build_manifest, write_shard

FPS, SR, S, N = 25, 16000, 48, 25  # 1 s clips at 48 px
SPF = SR // FPS

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def frames_for(seed: int, n: int = N, h: int = S, w: int = S) -> np.ndarray:
    rng = np.random.default_rng(seed)
    base = rng.integers(40, 200, size=(1, h, w, 3))
    drift = np.arange(n)[:, None, None, None] * 2
    return np.clip(base + drift, 0, 255).astype(np.uint8)


def audio_for(seed: int, samples: int = N * SPF) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


def sample(key: str, seed: int, *, frames: np.ndarray | None = None,
           audio: np.ndarray | None = None, sr: int = SR) -> dict:
    frames = frames_for(seed) if frames is None else frames
    audio = audio_for(seed) if audio is None else audio
    return encode_sample(key, frames, audio, fps=FPS, sample_rate=sr, speaker=key, clip="c0",
                         source="test")


def float_wav(audio: np.ndarray, sr: int = SR) -> bytes:
    buf = io.BytesIO()
    scipy.io.wavfile.write(buf, sr, audio.astype(np.float32))
    return buf.getvalue()


def gray_mp4(n: int = N, size: int = S) -> bytes:
    """A single-channel (gray) FFV1 stream in mp4: decodes to gray frames."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("ffv1", rate=Fraction(FPS))
        stream.width = stream.height = size
        stream.pix_fmt = "gray"
        for image in frames_for(7, n)[..., 0]:
            for packet in stream.encode(av.VideoFrame.from_ndarray(image, format="gray")):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def empty_mp4() -> bytes:
    """What the mp4 muxer writes for a video stream that never got a frame: zero bytes."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width = stream.height = S
        stream.pix_fmt = "yuv420p"
    return buf.getvalue()


GOOD = ["good_a", "good_b", "good_c", "good_d"]
REPAIRED = {"resampled": "resampled_audio", "gray": "grayscale_frames",
            "small": "resized_frames", "longer": "trimmed_length"}
SKIPPED = {"nowav": "missing_member", "garbage": "undecodable", "nan": "nonfinite_audio",
           "silent": "silent_audio", "empty": "empty_clip", "noaudio": "empty_clip",
           "wide": "wrong_frame_size",
           "double": "length_mismatch"}


def bad_shards() -> list[list[dict]]:
    nowav = sample("nowav", 2)
    del nowav["wav"]
    garbage = sample("garbage", 3)
    garbage["mp4"] = b"\x00\x00\x00\x18ftypisom" + b"\x13" * 500
    nan = sample("nan", 4)
    nan_audio = audio_for(4)
    nan_audio[100:110] = np.nan
    nan["wav"] = float_wav(nan_audio)
    empty = sample("empty", 5)
    empty["mp4"] = empty_mp4()
    noaudio = sample("noaudio", 17)
    noaudio["wav"] = float_wav(np.zeros(0, np.float32))  # a WAV header, no samples
    gray = sample("gray", 6)
    gray["mp4"] = gray_mp4()
    return [
        [sample("good_a", 0), nowav, garbage,
         sample("resampled", 8, audio=audio_for(8, N * 882), sr=22050),
         nan, sample("silent", 9, audio=np.zeros(N * SPF, np.float32)), empty,
         sample("good_b", 1)],
        [gray, sample("small", 10, frames=frames_for(10, h=32, w=32)),
         sample("wide", 11, frames=frames_for(11, h=S, w=64)),
         sample("longer", 12, audio=audio_for(12, N * SPF + 300)),
         sample("double", 13, audio=audio_for(13, 2 * N * SPF)), noaudio, sample("good_c", 14)],
        [sample("good_d", 15), sample("lost", 16)],
    ]


def truncate_inside_member(path: Path, key: str) -> None:
    """Cut the tar off in the middle of ``key``'s first member's data."""
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith(key + "."))
    with open(path, "r+b") as fh:
        fh.truncate(member.offset_data + min(64, member.size // 2))


def write_corpus(root: Path, splits: tuple[str, ...] = ("train", "val")) -> Path:
    """The bad shards under every split, a manifest matching the files as they are."""
    root.mkdir(parents=True, exist_ok=True)
    infos = []
    for split in splits:
        for i, samples in enumerate(bad_shards()):
            path = root / f"{split}-{i:06d}.tar"
            info = write_shard(path, split, samples)
            if i == 2:
                truncate_inside_member(path, "lost")
                info = ShardInfo(info.name, split, sha256_file(path), os.path.getsize(path),
                                 info.clips, info.frames, info.speakers)
            infos.append(info)
    write_json_atomic(root / MANIFEST_NAME, build_manifest(infos, fps=FPS, sample_rate=SR,
                                                           image_size=S))
    return root


@pytest.fixture(scope="module")
def bad_corpus(tmp_path_factory) -> Path:
    return write_corpus(tmp_path_factory.mktemp("bad_corpus"))


def datamodule(root: Path, **kw) -> LipSyncDataModule:
    args = {"root": str(root), "image_size": S, "batch_size": 4, "val_batch_size": 4,
            "num_workers": 1, "windows_per_clip": 2, "val_windows_per_clip": 2,
            "batches_per_epoch": 12, "shuffle_buffer": 8}
    args.update(kw)
    return LipSyncDataModule(**args)


def read_all(loader) -> tuple[dict[str, int], set[str], int]:
    totals = torch.zeros(len(ISSUES), dtype=torch.int64)
    keys: set[str] = set()
    skipped = batches = 0
    for batch in loader:
        totals += batch["issues"]
        skipped += int(batch["skipped"])
        keys.update(batch["key"])
        assert batch["face"].shape[-3:] == (3, S, S) and batch["face"].dtype == torch.uint8
        assert torch.isfinite(batch["mel"]).all()
        batches += 1
    counts = issue_counts(totals)
    assert skipped == sum(counts[r] for r in SKIP_REASONS)
    return counts, keys, batches


@pytest.mark.timeout(300)
def test_each_bad_case_is_skipped_or_repaired_and_counted_in_one_val_pass(bad_corpus):
    dm = datamodule(bad_corpus)
    dm.setup("validate")
    counts, keys, _ = read_all(dm.val_dataloader())  # one pass, a worker process
    expected = {reason: 0 for reason in ISSUES}
    for reason in [*SKIPPED.values(), *REPAIRED.values(), "truncated_tar"]:
        expected[reason] += 1
    assert counts == expected
    assert keys == set(GOOD) | set(REPAIRED)  # good and repaired clips come through, no other


@pytest.mark.timeout(300)
def test_train_stream_survives_the_bad_shards_and_reports_every_reason(bad_corpus):
    dm = datamodule(bad_corpus)
    dm.setup("fit")
    loader = dm.train_dataloader()
    counts, keys, batches = read_all(loader)  # finishes: fixed epoch length, never hangs
    assert batches == 12
    assert keys <= set(GOOD) | set(REPAIRED) and set(GOOD) <= keys
    for reason in [*SKIPPED.values(), *REPAIRED.values(), "truncated_tar"]:
        assert counts[reason] >= 1, (reason, counts)
    assert counts["other"] == 0 and counts["too_short"] == 0


def test_silent_clips_are_kept_when_configured(bad_corpus):
    dm = datamodule(bad_corpus, skip_silent_audio=False, num_workers=0)
    dm.setup("validate")
    counts, keys, _ = read_all(dm.val_dataloader())
    assert counts["silent_audio"] == 0 and "silent" in keys


def test_tighter_length_tolerance_skips_what_was_trimmed(bad_corpus):
    dm = datamodule(bad_corpus, length_tolerance_frames=0.25, num_workers=0)
    dm.setup("validate")
    counts, keys, _ = read_all(dm.val_dataloader())
    assert counts["trimmed_length"] == 0 and counts["length_mismatch"] == 2
    assert "longer" not in keys


def test_reasons_are_a_closed_vocabulary():
    from datamodules.loader_stages import StreamState

    state = StreamState("x")
    with pytest.raises(ValueError, match="unknown data issue 'typo'"):
        state.skip("k", "why", "typo")
    assert set(SKIP_REASONS).isdisjoint(REPAIR_REASONS)
    assert json.dumps(list(ISSUES))  # plain names: they become metric keys


@pytest.mark.timeout(600)
def test_fit_on_bad_data_finishes_and_logs_the_counts(bad_corpus, tmp_path):
    import csv

    import lightning as L
    from lightning.pytorch.loggers import CSVLogger

    from lightning_modules.lipsync_gan import LipSyncGAN
    from lightning_modules.losses import LipSyncLoss
    from lightning_modules.nets import LipSyncGenerator
    from memory_bank.memory_config import MemoryConfig

    model = LipSyncGAN(
        LipSyncGenerator(image_size=S, num_codes=8, embed_dim=32, audio_dim=32, base_channels=8,
                         max_channels=32, attention_heads=2, mapping_hidden=32, cond_channels=8),
        LipSyncLoss(lpips_backbone="random", disc_channels=8),
        memory=MemoryConfig(source="bootstrap", bootstrap_frames=16))
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1,
                        max_epochs=1, logger=CSVLogger(str(tmp_path), name="csv"),
                        log_every_n_steps=1, enable_progress_bar=False,
                        enable_model_summary=False, enable_checkpointing=False,
                        num_sanity_val_steps=0)
    trainer.fit(model, datamodule(bad_corpus, batches_per_epoch=4))
    assert trainer.global_step == 2 * 4
    with open(next(tmp_path.glob("csv/*/metrics.csv"))) as fh:
        rows = list(csv.DictReader(fh))

    def last(name: str) -> float:
        values = [float(r[name]) for r in rows if r.get(name)]
        assert values, f"{name} never logged; columns: {sorted(rows[0])}"
        return values[-1]

    assert last("data/skipped_samples") >= 1  # train: cumulative, summed over ranks
    logged = [r for r in SKIP_REASONS if any(row.get(f"data/skipped/{r}") for row in rows)]
    assert sum(last(f"data/skipped/{r}") for r in logged) == last("data/skipped_samples")
    # one full val pass over the same shards: exact counts
    for key, reason in [*SKIPPED.items(), ("lost", "truncated_tar")]:
        expected = sum(1 for r in [*SKIPPED.values(), "truncated_tar"] if r == reason)
        assert last(f"val/data/skipped/{reason}") == expected, reason
    for reason in REPAIRED.values():
        assert last(f"val/data/repaired/{reason}") == 1
    assert last("train/nonfinite_steps") == 0
