"""End-to-end: `lipmem data synth` writes a deterministic, speaker-split, decodable corpus."""

from __future__ import annotations

import argparse
import hashlib
import json
import tarfile
from pathlib import Path

import numpy as np
import pytest

from datamodules import face_layout as L
from datamodules.sample_format import decode_sample
from datamodules.shards import MANIFEST_NAME
from datamodules.synth.cli import add_synth_arguments, run_synth
from datamodules.synth.corpus import SynthConfig, synthesize
from datamodules.synth.phones import CLOSED


def _cfg(out: Path, **kw) -> SynthConfig:
    base = {"out_dir": str(out), "seed": 0, "speakers": 3, "clips_per_speaker": 2,
            "clip_seconds": 2.0, "image_size": 48, "clips_per_shard": 1, "workers": 1}
    return SynthConfig(**{**base, **kw})


def _hashes(folder: Path) -> dict[str, str]:
    return {p.name: hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.glob("*.tar"))}


def _samples(shard: Path) -> list[dict]:
    samples: dict[str, dict] = {}
    with tarfile.open(shard) as tar:
        for member in tar.getmembers():
            key, ext = member.name.split(".", 1)
            samples.setdefault(key, {"__key__": key})[ext] = tar.extractfile(member).read()
    return list(samples.values())


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> tuple[Path, dict]:
    out = tmp_path_factory.mktemp("synth") / "corpus"
    return out, synthesize(_cfg(out), progress=False)


@pytest.fixture(scope="module")
def clips(corpus):
    out, manifest = corpus
    return {s: [decode_sample(raw) for raw in _samples(out / s)]
            for s in (i["name"] for i in manifest["shards"])}


def test_manifest_matches_files(corpus):
    out, manifest = corpus
    assert json.loads((out / MANIFEST_NAME).read_text()) == manifest
    assert manifest["name"] == "synth" and manifest["has_mouth_track"] is True
    assert "out_dir" not in manifest["config"] and manifest["config"]["speakers"] == 3
    on_disk = _hashes(out)
    assert on_disk == {s["name"]: s["sha256"] for s in manifest["shards"]}
    assert set(on_disk) == {"train-000000.tar", "train-000001.tar", "val-000000.tar",
                            "val-000001.tar", "test-000000.tar", "test-000001.tar"}
    for s in manifest["shards"]:
        assert (out / s["name"]).stat().st_size == s["bytes"]
        assert len(_samples(out / s["name"])) == s["clips"] == 1
    assert sum(sp["clips"] for sp in manifest["splits"].values()) == 6
    assert manifest["splits"]["train"]["seconds"] == pytest.approx(4.0)


def test_split_by_speaker(corpus, clips):
    _, manifest = corpus
    seen: dict[str, str] = {}
    for shard, decoded in clips.items():
        split = shard.split("-")[0]
        for clip in decoded:
            assert seen.setdefault(clip.meta["speaker"], split) == split
    assert seen == {"spk000": "train", "spk001": "val", "spk002": "test"}
    assert {s: v["speakers"] for s, v in manifest["splits"].items()} == {
        "train": ["spk000"], "val": ["spk001"], "test": ["spk002"]}


def test_every_sample_decodes_in_format(clips):
    keys = []
    for decoded in clips.values():
        for clip in decoded:
            keys.append(clip.key)
            T = clip.num_frames
            assert T == 50 and clip.frames.shape == (T, 48, 48, 3)
            assert clip.audio.shape == (T * 16000 // 25,) and clip.sample_rate == 16000
            assert clip.mouth.shape == (T, 3) and clip.mouth.dtype == np.float32
            assert 0.0 <= clip.mouth.min() and clip.mouth.max() <= 1.0
            assert clip.meta["source"] == "synth" and clip.meta["num_audio_samples"] == T * 640
            phones = clip.meta["phones"]
            assert phones[0][1] == 0.0 and phones[-1][2] == pytest.approx(2.0)
    assert sorted(keys) == [f"spk{s:03d}_clip{c:04d}" for s in range(3) for c in range(2)]


def test_same_seed_same_bytes_other_seed_other_bytes(corpus, tmp_path):
    out, _ = corpus
    again = tmp_path / "again"
    synthesize(_cfg(again, workers=2), progress=False)  # also: worker count must not matter
    assert _hashes(again) == _hashes(out)
    other = tmp_path / "other"
    synthesize(_cfg(other, seed=1), progress=False)
    a, b = _hashes(out), _hashes(other)
    assert a.keys() == b.keys() and all(a[k] != b[k] for k in a)


def test_refuses_existing_corpus_unless_overwrite(tmp_path):
    out = tmp_path / "c"
    synthesize(_cfg(out, speakers=3, clips_per_speaker=1, clip_seconds=0.5), progress=False)
    with pytest.raises(FileExistsError, match="overwrite"):
        synthesize(_cfg(out, clips_per_speaker=1, clip_seconds=0.5), progress=False)
    stale = out / "train-000099.tar"
    stale.write_bytes(b"old")
    manifest = synthesize(_cfg(out, clips_per_speaker=1, clip_seconds=0.5), overwrite=True,
                          progress=False)
    assert not stale.exists()
    assert set(_hashes(out)) == {s["name"] for s in manifest["shards"]}


def test_mouth_pixels_and_audio_follow_the_track(clips):
    mouth_rows = slice(int((L.MOUTH_Y - 0.08) * 48), int((L.MOUTH_Y + 0.1) * 48))
    upper_rows = slice(int((L.BROW_Y - 0.06) * 48), int((L.EYE_Y + 0.06) * 48))
    cols = slice(12, 36)
    ratios, loud, quiet = [], [], []
    for decoded in clips.values():
        for clip in decoded:
            o = clip.mouth[:, 0]
            # The most open vs the most closed frame within 3 frames of it: the head barely
            # moves over 120 ms, so only the mouth should change.
            i_open = max(range(len(o)), key=lambda i: o[i] - o[max(0, i - 3):i + 4].min())
            near = np.arange(max(0, i_open - 3), min(len(o), i_open + 4))
            i_closed = int(near[np.argmin(o[near])])
            assert o[i_open] - o[i_closed] > 0.4
            a = clip.frames[i_open].astype(float)
            b = clip.frames[i_closed].astype(float)
            mouth = np.abs(a[mouth_rows, cols] - b[mouth_rows, cols]).mean()
            upper = np.abs(a[upper_rows, cols] - b[upper_rows, cols]).mean()
            ratios.append(mouth / (upper + 1.0))
            centres = ((np.arange(clip.num_frames) + 0.5) * 640).astype(int)
            rms = np.array([np.sqrt(np.mean(clip.audio[max(0, c - 320):c + 320] ** 2))
                            for c in centres])
            loud += list(rms[o > 0.5])
            quiet += list(rms[o < 0.1])
    assert np.median(ratios) > 3.0
    assert len(loud) > 10 and len(quiet) > 10
    assert np.mean(loud) > 4 * np.mean(quiet)


def test_closed_phones_give_closed_mouth_in_shards(clips):
    for decoded in clips.values():
        for clip in decoded:
            t = (np.arange(clip.num_frames) + 0.5) / 25
            for name, start, end in clip.meta["phones"]:
                inside = (t >= start + 0.025) & (t <= end - 0.025)
                if name in CLOSED:
                    assert np.all(clip.mouth[inside, 0] < 0.06)
                if name == "a":
                    assert np.all(clip.mouth[(t >= start + 0.045) & (t <= end - 0.045), 0] > 0.5)


def test_speakers_differ_in_upper_face(clips):
    means = {}
    for decoded in clips.values():
        for clip in decoded:
            upper = clip.frames[:, int(0.25 * 48):int(0.5 * 48), 12:36].astype(float)
            means.setdefault(clip.meta["speaker"], []).append(upper.mean(axis=(0, 1, 2)))
    m = {k: np.mean(v, axis=0) for k, v in means.items()}
    speakers = sorted(m)
    for i, a in enumerate(speakers):
        for b in speakers[i + 1:]:
            assert np.linalg.norm(m[a] - m[b]) > 5.0, (a, b)


def _cli(argv: list[str]) -> int:
    parser = argparse.ArgumentParser()
    add_synth_arguments(parser)
    return run_synth(parser.parse_args(argv))


def test_cli_validates_and_summarises(tmp_path, capsys):
    out = tmp_path / "cli"
    assert _cli(["--out", str(out), "--speakers", "2"]) == 2
    assert "--speakers=2" in capsys.readouterr().err
    assert _cli(["--out", str(out), "--image-size", "47"]) == 2
    assert "--image-size=47" in capsys.readouterr().err
    assert not out.exists()
    argv = ["--out", str(out), "--speakers", "3", "--clips-per-speaker", "1", "--clip-seconds",
            "0.5", "--image-size", "32", "--workers", "1"]
    assert _cli(argv) == 0
    summary = capsys.readouterr().out
    assert "train" in summary and str(out / MANIFEST_NAME) in summary
    assert _cli(argv) == 2
    assert "--overwrite" in capsys.readouterr().err
    assert _cli(argv + ["--overwrite"]) == 0
