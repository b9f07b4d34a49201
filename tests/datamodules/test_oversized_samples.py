"""Small shard members that would decode into huge arrays are skipped as `oversized` before
they are decoded in full or resampled, so no loader worker can be made to exhaust memory.

Memory is measured with tracemalloc, which sees numpy's (and so PyAV's to_ndarray and
scipy's resampling) allocations.
"""

from __future__ import annotations

import io
import tracemalloc
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest
import torch

from datamodules.atomic_files import write_json_atomic
from datamodules.data_issues import ISSUES, SKIP_REASONS, issue_counts
from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.sample_format import SampleError, decode_sample, encode_sample, encode_wav
from datamodules.sample_limits import SampleLimits
from datamodules.shards import MANIFEST_NAME, build_manifest, write_shard
from datamodules.windows import WindowCutter

FPS, SR, S, N = 25, 16000, 48, 25  # 1 s clips at 48 px
MB = 1 << 20
pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def frames_for(seed: int, n: int = N) -> np.ndarray:
    rng = np.random.default_rng(seed)
    return np.clip(rng.integers(40, 200, size=(1, S, S, 3)) + np.arange(n)[:, None, None, None],
                   0, 255).astype(np.uint8)


def audio_for(seed: int, samples: int = N * SR // FPS) -> np.ndarray:
    return (0.2 * np.random.default_rng(seed).standard_normal(samples)).astype(np.float32)


def sample(key: str, seed: int = 0, **kw) -> dict:
    frames = kw.pop("frames", None)
    return encode_sample(key, frames_for(seed) if frames is None else frames,
                         kw.pop("audio", audio_for(seed)), fps=FPS, sample_rate=kw.pop("sr", SR),
                         speaker=key, clip="c0", source="test", **kw)


def big_mp4(side: int, frames: int) -> bytes:
    """A flat grey H.264 stream: kilobytes in the tar, side * side * 3 bytes per frame decoded."""
    buf = io.BytesIO()
    with av.open(buf, mode="w", format="mp4") as container:
        stream = container.add_stream("libx264", rate=Fraction(FPS))
        stream.width = stream.height = side
        stream.pix_fmt = "yuv420p"
        stream.options = {"preset": "ultrafast"}
        image = av.VideoFrame.from_ndarray(np.full((side, side, 3), 128, np.uint8), format="rgb24")
        for _ in range(frames):
            for packet in stream.encode(image):
                container.mux(packet)
        for packet in stream.encode():
            container.mux(packet)
    return buf.getvalue()


def npy_declaring(shape: tuple[int, ...]) -> bytes:
    """A valid .npy header declaring ``shape`` float32, followed by only a few bytes."""
    buf = io.BytesIO()
    np.lib.format.write_array_header_1_0(buf, {"descr": "<f4", "fortran_order": False,
                                               "shape": shape})
    return buf.getvalue() + b"\0" * 64


@pytest.fixture(scope="module")
def hostile() -> dict[str, dict]:
    huge_frames = sample("huge_frames", 1)
    huge_frames["mp4"] = big_mp4(2048, 50)
    low_rate = sample("low_rate", 2)
    low_rate["wav"] = encode_wav(audio_for(2, 20_000), 8)  # 40 KB declared at 8 Hz
    high_rate = sample("high_rate", 3)
    high_rate["wav"] = encode_wav(audio_for(3, 8_000), 1_000_000)
    long_clip = sample("long_clip", 4, frames=frames_for(4, 4 * N), audio=audio_for(4, 4 * SR))
    huge_mouth = sample("huge_mouth", 5)
    huge_mouth["mouth.npy"] = npy_declaring((10**9, 3))
    return {s["__key__"]: s for s in (huge_frames, low_rate, high_rate, long_clip, huge_mouth)}


LIMITS = SampleLimits.for_clips(S, FPS, max_clip_seconds=2.0)


def peak_bytes(fn) -> int:
    tracemalloc.start()
    try:
        fn()
    finally:
        peak = tracemalloc.get_traced_memory()[1]
        tracemalloc.stop()
    return peak


def test_the_hostile_members_are_small(hostile):
    assert len(hostile["huge_frames"]["mp4"]) < 100_000
    assert len(hostile["low_rate"]["wav"]) < 50_000


@pytest.mark.parametrize("key", ["huge_frames", "low_rate", "high_rate", "long_clip",
                                 "huge_mouth"])
def test_each_is_refused_as_oversized_without_allocating_it(hostile, key):
    cutter = WindowCutter(image_size=S, fps=FPS, sample_rate=SR, max_clip_seconds=2.0)
    errors: list[SampleError] = []

    def decode() -> None:
        try:
            cutter.prepare(decode_sample(hostile[key], cutter.limits))
        except SampleError as exc:
            errors.append(exc)

    peak = peak_bytes(decode)
    assert [e.category for e in errors] == ["oversized"], errors
    assert key in str(errors[0])
    assert peak < 40 * MB, f"{key}: {peak / MB:.0f} MB allocated before refusing it"


def test_prepare_refuses_before_resampling_even_without_decode_limits(hostile):
    """A clip decoded elsewhere (no limits) is still checked before the resampler runs."""
    cutter = WindowCutter(image_size=S, fps=FPS, sample_rate=SR)
    clip = decode_sample(hostile["low_rate"])
    with pytest.raises(SampleError, match="8 Hz") as info:
        peak = peak_bytes(lambda: cutter.prepare(clip))
        assert peak < 40 * MB
    assert info.value.category == "oversized"


def test_clips_within_the_limits_still_load(hostile):
    clip = decode_sample(sample("fine", 7), LIMITS)
    assert clip.frames.shape == (N, S, S, 3)


def test_the_loader_skips_and_counts_them_and_keeps_the_good_clips(hostile, tmp_path: Path):
    samples = [sample("good_a", 10), *hostile.values(), sample("good_b", 11)]
    info = write_shard(tmp_path / "val-000000.tar", "val", samples)
    write_json_atomic(tmp_path / MANIFEST_NAME,
                      build_manifest([info], fps=FPS, sample_rate=SR, image_size=S))
    dm = LipSyncDataModule(root=str(tmp_path), image_size=S, batch_size=4, num_workers=0,
                           val_windows_per_clip=2, batches_per_epoch=1, max_clip_seconds=2.0)
    dm.setup("validate")
    totals = torch.zeros(len(ISSUES), dtype=torch.int64)
    keys: set[str] = set()
    for batch in dm.val_dataloader():
        totals += batch["issues"]
        keys.update(batch["key"])
    counts = issue_counts(totals)
    assert keys == {"good_a", "good_b"}
    assert counts["oversized"] == len(hostile)
    assert sum(counts[r] for r in SKIP_REASONS) == len(hostile)
    assert counts["resized_frames"] == counts["resampled_audio"] == 0


def test_a_bad_limit_is_a_config_error():
    with pytest.raises(ValueError, match="max_clip_seconds"):
        LipSyncDataModule(root=None, val_shards="x.tar", max_clip_seconds=0)
