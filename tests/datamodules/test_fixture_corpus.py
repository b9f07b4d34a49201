"""Tiny synthetic shards for the datamodule tests (helpers) and a write/read round trip.

Frame k of every clip is a flat grey of brightness ``frame_value(k)`` so a window's frame
index can be read back from its pixels; the audio is near-silent with a 1 kHz tone burst
centred on a known frame, so mel centring can be checked.
"""

from __future__ import annotations

import io
import json
import tarfile
from pathlib import Path
from typing import Any

import numpy as np
import webdataset as wds

from datamodules.atomic_files import write_json_atomic
from datamodules.sample_format import decode_sample, encode_sample
from datamodules.shards import MANIFEST_NAME, build_manifest, write_shard

FPS = 25
SR = 16000
SIZE = 32
SPF = SR // FPS  # audio samples per frame


def frame_value(k: int) -> int:
    return 20 + 9 * k


def make_frames(num_frames: int, size: int = SIZE) -> np.ndarray:
    frames = np.zeros((num_frames, size, size, 3), dtype=np.uint8)
    for k in range(num_frames):
        frames[k] = frame_value(k)
    return frames


def make_audio(num_frames: int, burst_frame: int | None = None, sr: int = SR,
               burst_seconds: float = 0.02) -> np.ndarray:
    """Silence with a 1 kHz burst centred on the centre of ``burst_frame``."""
    audio = np.zeros(num_frames * sr // FPS, dtype=np.float32)
    if burst_frame is not None:
        centre = (burst_frame + 0.5) / FPS
        t = np.arange(audio.shape[0]) / sr
        inside = np.abs(t - centre) <= burst_seconds / 2
        audio[inside] = 0.5 * np.sin(2 * np.pi * 1000.0 * t[inside])
    return audio


def make_sample(key: str, num_frames: int = 20, *, mouth: bool = True, burst_frame: int | None = 5,
                sr: int = SR, size: int = SIZE) -> dict[str, Any]:
    frames = make_frames(num_frames, size)
    audio = make_audio(num_frames, burst_frame, sr)
    track = (np.arange(num_frames * 3, dtype=np.float32).reshape(num_frames, 3) / (3 * num_frames)
             if mouth else None)
    speaker, clip = key.split("_", 1)
    return encode_sample(key, frames, audio, fps=FPS, sample_rate=sr, speaker=speaker, clip=clip,
                         source="test", mouth=track)


def write_corpus(root: Path, layout: dict[str, list[int]], num_frames: int = 20,
                 mouth: bool = True, **manifest_fields: Any) -> dict[str, Any]:
    """``layout`` maps split -> clips per shard; returns the manifest (also written)."""
    infos = []
    for split, per_shard in layout.items():
        for s, count in enumerate(per_shard):
            samples = [make_sample(f"{split}{s}_c{c:03d}", num_frames, mouth=mouth,
                                   burst_frame=c % num_frames)
                       for c in range(count)]
            infos.append(write_shard(root / f"{split}-{s:04d}.tar", split, samples))
    manifest = build_manifest(infos, fps=FPS, sample_rate=SR, image_size=SIZE, **manifest_fields)
    write_json_atomic(root / MANIFEST_NAME, manifest)
    return manifest


def write_raw_shard(path: Path, samples: list[dict[str, Any]]) -> None:
    """Write samples as given (no validation), e.g. with a missing or garbage member."""
    with wds.TarWriter(str(path)) as sink:
        for sample in samples:
            sink.write(sample)


def truncate_tar_inside_member(path: Path, member_suffix: str, index: int = 0) -> None:
    """Cut the tar off in the middle of the ``index``-th member ending in ``member_suffix``."""
    with tarfile.open(path) as tar:
        members = [m for m in tar.getmembers() if m.name.endswith(member_suffix)]
    m = members[index]
    data = path.read_bytes()
    path.write_bytes(data[:m.offset_data + m.size // 2])


# --------------------------------------------------------------------------- tests
def test_shard_round_trip_keeps_every_member(tmp_path):
    manifest = write_corpus(tmp_path, {"train": [2]}, num_frames=12)
    samples = list(wds.DataPipeline(wds.SimpleShardList([str(tmp_path / "train-0000.tar")]),
                                    wds.tarfile_to_samples()))
    assert [s["__key__"] for s in samples] == ["train0_c000", "train0_c001"]
    assert {"mp4", "wav", "json", "mouth.npy"} <= set(samples[0])
    clip = decode_sample(samples[1])
    assert clip.key == "train0_c001" and clip.fps == FPS and clip.sample_rate == SR
    assert clip.frames.shape == (12, SIZE, SIZE, 3)
    # lossy H.264, but flat frames come back within a couple of levels
    means = clip.frames.reshape(12, -1).mean(axis=1)
    assert np.allclose(means, [frame_value(k) for k in range(12)], atol=3)
    assert np.allclose(clip.audio, make_audio(12, 1), atol=1 / 32768 + 1e-6)
    assert np.allclose(clip.mouth, np.arange(36, dtype=np.float32).reshape(12, 3) / 36)
    assert clip.meta["speaker"] == "train0" and clip.meta["clip"] == "c001"
    assert clip.meta["num_frames"] == 12 and clip.meta["source"] == "test"
    assert manifest["splits"]["train"]["clips"] == 2
    assert json.loads((tmp_path / MANIFEST_NAME).read_text())["shards"][0]["clips"] == 2


def test_truncate_helper_breaks_the_tar(tmp_path):
    write_corpus(tmp_path, {"train": [2]}, num_frames=8)
    path = tmp_path / "train-0000.tar"
    truncate_tar_inside_member(path, ".mp4", 1)
    with tarfile.open(path) as tar, io.BytesIO() as _:
        try:
            for m in tar:
                tar.extractfile(m).read() if m.isreg() else None
        except tarfile.ReadError:
            return
    raise AssertionError("truncated tar read without error")
