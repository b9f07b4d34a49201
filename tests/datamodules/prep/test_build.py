"""`lipmem data prep` end to end on real mp4s: shards + manifest the datamodule trains on,
skip reasons reported, reruns that add nothing, no half-written shard ever listed."""

from __future__ import annotations

import json
import shutil
import tarfile
from pathlib import Path

import numpy as np
import pytest
import webdataset as wds

from datamodules.atomic_files import sha256_file
from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.manifest import load_manifest, verify_shards
from datamodules.prep.build import REPORT_NAME, prepare
from datamodules.prep.job import PrepConfig
from datamodules.sample_format import decode_sample, read_video
from tests.media_fixtures import make_talking_video, write_corrupt_video

# by speaker: these tests follow speakers into splits (the modes are tested in test_splits.py)
SETTINGS = {"image_size": 48, "clip_seconds": 1.0, "min_clip_seconds": 0.8, "clips_per_shard": 2,
            "split_by": "speaker"}
CLI_ARGS = ["--image-size", "48", "--clip-seconds", "1", "--min-clip-seconds", "0.8",
            "--clips-per-shard", "2", "--workers", "1", "--split-by", "speaker"]


def _make_videos(root: Path) -> Path:
    make_talking_video(root / "spk1" / "a.mp4", seconds=2.4, size=128, seed=1)
    make_talking_video(root / "spk1" / "b.mov", seconds=2.4, size=128, fps=30,
                       sample_rate=48000, channels=2, seed=2)
    make_talking_video(root / "spk2" / "a.mp4", seconds=2.4, size=128, vfr=True, seed=3)
    make_talking_video(root / "spk2" / "silent.mp4", seconds=1.5, size=64, audio=False)
    make_talking_video(root / "spk3" / "texture.mp4", seconds=1.5, size=64, face=False)
    write_corrupt_video(root / "spk3" / "broken.mp4")
    return root


@pytest.fixture(scope="module")
def prepped(tmp_path_factory) -> tuple[Path, Path, dict]:
    """(videos, out, report) of one prep run with 2 worker processes."""
    base = tmp_path_factory.mktemp("prep")
    videos = _make_videos(base / "videos")
    out = base / "out"
    report = prepare(PrepConfig(str(videos), str(out), workers=2, **SETTINGS), progress=False)
    return videos, out, report


def _copy(out: Path, tmp_path: Path) -> Path:
    dst = tmp_path / "out"
    shutil.copytree(out, dst)
    return dst


def _shard_digests(out: Path) -> dict[str, str]:
    return {p.name: sha256_file(p) for p in sorted(out.glob("*.tar"))}


def _members(shard: Path) -> dict[str, bytes]:
    with tarfile.open(shard) as tar:
        return {m.name: tar.extractfile(m).read() for m in tar.getmembers() if m.isfile()}


def _assert_same_shards(expected: Path, actual: Path) -> None:
    """Same shards with the same members; every member byte-equal except re-encoded H.264,
    whose bytes may differ between encoder runs and whose decoded frames must then agree to
    within a fraction of a grey level on average (lossy: no exact comparison after it)."""
    assert sorted(p.name for p in actual.glob("*.tar")) == sorted(
        p.name for p in expected.glob("*.tar"))
    for shard in sorted(expected.glob("*.tar")):
        want, got = _members(shard), _members(actual / shard.name)
        assert list(got) == list(want), shard.name
        for name, data in want.items():
            if got[name] == data:
                continue
            assert name.endswith(".mp4"), f"{shard.name}/{name} changed"
            a, b = read_video(data)[0].astype(np.float32), read_video(got[name])[0]
            assert a.shape == b.shape, name
            assert np.abs(a - b).mean() < 2.0, f"{shard.name}/{name}: frames differ"


def test_report_counts_kept_clips_and_each_skip_reason(prepped):
    _, out, report = prepped
    assert report == json.loads((out / REPORT_NAME).read_text())
    assert report["videos"] == 6 and report["processed_now"] == 6
    assert report["kept_videos"] == 3 and report["kept_clips"] == 6  # 2 x 1 s per 2.4 s video
    assert report["skipped"] == {"undecodable": 1, "no_audio": 1, "no_face": 1,
                                 "too_short": 0, "too_large": 0, "error": 0}
    reasons = {s["video"]: s["reason"] for s in report["skips"]}
    assert reasons == {"spk3/broken.mp4": "undecodable", "spk2/silent.mp4": "no_audio",
                       "spk3/texture.mp4": "no_face"}
    assert all(s["detail"] for s in report["skips"])
    for note in ("vfr_resampled", "fps_converted", "audio_resampled", "audio_downmixed"):
        assert report["notes"][note] == 1, note
    assert "libswresample" in report["handling"]["audio"]


def test_shards_and_manifest_hold_the_clips(prepped):
    _, out, _ = prepped
    manifest = load_manifest(out)
    verify_shards(manifest, out)
    assert (manifest["fps"], manifest["sample_rate"], manifest["image_size"]) == (25, 16000, 48)
    assert manifest["has_mouth_track"] is False
    # 2 speakers with clips: one trains, one validates; spk3 had none
    assert sorted(manifest["splits"]) == ["train", "val"]
    assert {len(s["speakers"]) for s in manifest["splits"].values()} == {1}
    assert sum(s["clips"] for s in manifest["splits"].values()) == 6
    keys = []
    for shard in manifest["shards"]:
        for sample in wds.WebDataset(str(out / shard["name"]), shardshuffle=False):
            clip = decode_sample(sample)
            keys.append(clip.key)
            assert clip.frames.shape == (25, 48, 48, 3) and clip.audio.shape == (16000,)
            assert clip.audio.std() > 0.01 and clip.frames.std() > 10
            assert clip.meta["speaker"] in ("spk1", "spk2") and clip.meta["source"] in (
                "spk1/a.mp4", "spk1/b.mov", "spk2/a.mp4")
    assert sorted(keys) == ["spk1_a-000", "spk1_a-001", "spk1_b-000", "spk1_b-001",
                            "spk2_a-000", "spk2_a-001"]


def _lag_correlation(dark: np.ndarray, loud: np.ndarray, lag: int) -> float:
    a, b = (dark[lag:], loud[:len(loud) - lag]) if lag >= 0 else (dark[:lag], loud[-lag:])
    return float(np.corrcoef(a, b)[0, 1])


def test_audio_stays_in_sync_with_the_mouth(prepped):
    """The fixture's mouth opens with the audio's loudness: in every prepared clip (25 fps
    mono source, 30 fps + 48 kHz stereo, variable rate) the mouth's darkness follows the
    per-frame audio level at lag 0, not a few frames off."""
    _, out, _ = prepped
    manifest = load_manifest(out)
    for shard in manifest["shards"]:
        for sample in wds.WebDataset(str(out / shard["name"]), shardshuffle=False):
            clip = decode_sample(sample)
            side = clip.frames.shape[1]
            mouth = clip.frames[:, int(0.64 * side):int(0.82 * side),
                                int(0.38 * side):int(0.62 * side)]
            dark = -mouth.astype(np.float64).mean(axis=(1, 2, 3))
            loud = np.sqrt((clip.audio.reshape(clip.num_frames, -1) ** 2).mean(1))
            at = {lag: _lag_correlation(dark, loud, lag) for lag in (-3, 0, 3)}
            assert at[0] > 0.5 and at[0] > max(at[-3], at[3]) + 0.2, (clip.key, at)


def test_datamodule_trains_on_the_prep_output(prepped):
    _, out, _ = prepped
    dm = LipSyncDataModule(root=str(out), image_size=48, batch_size=2, windows_per_clip=2,
                           val_windows_per_clip=2, num_workers=0, shuffle_buffer=0)
    dm.setup("fit")
    batch = next(iter(dm.train_dataloader()))
    assert tuple(batch["face"].shape) == (2, 1, 3, 48, 48)
    assert batch["mel"].shape[:3] == (2, 1, 1) and int(batch["skipped"]) == 0
    assert next(iter(dm.val_dataloader()))["face"].shape[0] >= 1
    # two speakers leave no test speaker: the datamodule says so when asked for it
    with pytest.raises(ValueError, match="no split 'test'"):
        dm.setup("test")


def test_cli_rerun_adds_nothing_and_ignores_leftover_temp_files(prepped, tmp_path, lipmem_cli):
    videos, out0, _ = prepped
    out = _copy(out0, tmp_path)
    before, manifest_before = _shard_digests(out), (out / "manifest.json").read_text()
    leftovers = [out / ".train-000000.tar.k2j3.tmp", out / ".prep" / "clips" / ".x.tar.q1.tmp"]
    for path in leftovers:
        path.write_bytes(b"half a shard")
    result = lipmem_cli(["data", "prep", "--videos", str(videos), "--out", str(out), *CLI_ARGS],
                        tmp_path)
    assert result.returncode == 0, result.stderr
    assert "0 processed now, 6 already done" in result.stdout
    assert "no_face 1" in result.stdout and "manifest (unchanged)" in result.stdout
    report = json.loads((out / REPORT_NAME).read_text())
    assert report["processed_now"] == 0 and report["already_done"] == 6
    assert report["corpus_changed"] is False and report["kept_clips"] == 6
    assert report["skipped"]["undecodable"] == 1  # earlier skips stay reported
    assert _shard_digests(out) == before
    assert (out / "manifest.json").read_text() == manifest_before
    assert not any(p.exists() for p in leftovers)


def test_interrupted_run_redoes_only_unfinished_work(prepped, tmp_path):
    videos, out0, _ = prepped
    out = _copy(out0, tmp_path)
    # a crash while repacking: manifest gone, a shard gone, its temp file half-written, and
    # one video's record never written
    (out / "manifest.json").unlink()
    (out / "train-000001.tar").unlink()
    (out / ".train-000001.tar.a8f.tmp").write_bytes(b"\0" * 1000)
    (out / ".prep" / "done" / "spk1_b.json").unlink()
    report = prepare(PrepConfig(str(videos), str(out), workers=0, **SETTINGS), progress=False)
    assert report["processed_now"] == 1 and report["already_done"] == 5
    assert report["corpus_changed"] is True
    manifest = load_manifest(out)
    verify_shards(manifest, out)
    assert all(not s["name"].startswith(".") for s in manifest["shards"])
    _assert_same_shards(out0, out)  # the redone video gives the same clips
    assert not list(out.glob(".*.tmp"))


def test_a_new_speaker_is_added_and_settings_changes_are_refused(prepped, tmp_path):
    videos0, out0, _ = prepped
    out = _copy(out0, tmp_path)
    videos = tmp_path / "videos"
    shutil.copytree(videos0, videos)  # copy2 keeps mtimes: finished videos stay finished
    make_talking_video(videos / "spk4" / "new.mp4", seconds=1.2, size=128, seed=4)
    report = prepare(PrepConfig(str(videos), str(out), workers=0, **SETTINGS), progress=False)
    assert report["processed_now"] == 1 and report["kept_clips"] == 7
    assert set(report["splits"]) == {"train", "val", "test"}  # 3 speakers: one each
    with pytest.raises(FileExistsError, match="image_size"):
        prepare(PrepConfig(str(videos), str(out), **{**SETTINGS, "image_size": 64}))


def test_nothing_usable_writes_no_manifest(tmp_path, capsys):
    from lightning_modules.cli.main import main  # in-process: the subprocess path is tested above

    write_corrupt_video(tmp_path / "videos" / "spk" / "x.mp4")
    code = main(["data", "prep", "--videos", str(tmp_path / "videos"),
                 "--out", str(tmp_path / "out"), "--workers", "0"])
    captured = capsys.readouterr()
    assert code == 1 and "no clip was kept" in captured.err
    assert "undecodable" in captured.out
    assert not (tmp_path / "out" / "manifest.json").exists()
    code = main(["data", "prep", "--videos", str(tmp_path / "videos"), "--out",
                 str(tmp_path / "o2"), "--split", "0.5", "0.5", "0.5"])
    assert code == 2 and "--split" in capsys.readouterr().err
