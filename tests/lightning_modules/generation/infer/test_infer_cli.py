"""Real videos in, lip-synced video out: `lipmem data prep` -> shards -> a tiny `lipmem fit`
-> `lipmem infer`, on mp4 files made from a photographic face (scikit-image's astronaut)."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import av
import numpy as np
import pytest
import torch
from skimage import data as skdata

from tests.conftest import LIPMEM, REPO
from tests.media_fixtures import make_audio_file, make_talking_video


@pytest.fixture(scope="module")
def trained(tmp_path_factory, lipmem_cli):
    """Three speakers' videos -> prep (48 px) -> 4-batch smoke fit -> model-RUN:best."""
    tmp = tmp_path_factory.mktemp("infer")
    for i, speaker in enumerate(("ann", "ben", "cat")):
        make_talking_video(tmp / "videos" / speaker / "take1.mp4", seconds=3.0, size=160, seed=i)
    out = lipmem_cli(["data", "prep", "--videos", str(tmp / "videos"), "--out",
                      str(tmp / "corpus"), "--image-size", "48", "--clip-seconds", "1.5",
                      "--workers", "1", "--split", "0.34", "0.33", "0.33"], tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    out = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={tmp / 'corpus'}",
                      f"--trainer.default_root_dir={tmp / 'run'}",
                      "--media.video_seconds=0"], tmp)
    assert out.returncode == 0, out.stderr[-3000:]
    names = [p.name for p in (tmp / "registry").iterdir() if p.name.startswith("model-")]
    assert len(names) == 1
    return tmp, f"{names[0]}:best"


def infer(tmp: Path, model: str, face: Path, audio: str, out: Path, *extra: str,
          stdin: bytes | None = None) -> subprocess.CompletedProcess:
    env = {"LIPMEM_REGISTRY": str(tmp / "registry"), "PYTHONPATH": str(REPO),
           "HOME": str(tmp / "home"), "PATH": str(Path(sys.executable).parent)}
    return subprocess.run(LIPMEM + ["infer", "--model", model, "--face", str(face), "--audio",
                                    audio, "--out", str(out), *extra],
                          cwd=REPO, env=env, input=stdin, capture_output=True, timeout=600,
                          check=False)


def streams(path: Path) -> tuple[int, tuple[int, int], float]:
    """(video frames, (width, height), audio seconds)."""
    with av.open(str(path)) as container:
        video, audio = container.streams.video[0], container.streams.audio[0]
        frames = sum(1 for _ in container.decode(video))
        return frames, (video.width, video.height), float(audio.duration * audio.time_base)


def decoded(path: Path) -> np.ndarray:
    with av.open(str(path)) as container:
        return np.stack([f.to_ndarray(format="rgb24") for f in container.decode(video=0)])


def test_video_face_gives_one_frame_per_25th_of_the_audio(trained):
    tmp, model = trained
    audio = make_audio_file(tmp / "speech.wav", seconds=2.32, seed=5)
    out = infer(tmp, model, tmp / "videos" / "ann" / "take1.mp4", str(audio), tmp / "out.mp4")
    assert out.returncode == 0, out.stderr[-3000:]
    frames, size, audio_seconds = streams(tmp / "out.mp4")
    assert frames == round(2.32 * 25)  # the 3 s face video is cut to the audio's length
    assert size == (160, 160)  # the full frame, not the crop
    assert audio_seconds == pytest.approx(2.32, abs=0.03)


def test_still_image_face_and_compressed_audio(trained, tmp_path):
    tmp, model = trained
    face = tmp_path / "astronaut.png"
    from PIL import Image

    Image.fromarray(skdata.astronaut()[:300, 50:350]).save(face)
    audio = make_audio_file(tmp_path / "speech.m4a", seconds=1.2, seed=6)
    out = infer(tmp, model, face, str(audio), tmp_path / "still.mp4")
    assert out.returncode == 0, out.stderr[-3000:]
    frames, size, _ = streams(tmp_path / "still.mp4")
    assert size == (300, 300)
    assert abs(frames - round(1.2 * 25)) <= 1  # AAC priming may add a few ms


def test_stream_mode_generates_the_same_frames_as_batch_mode(trained, tmp_path, monkeypatch):
    """Compared before H.264: two lossy encodes of nearly equal frames can differ by tens of
    levels. Batch (8 frames) and stream (<= 4) batches may round a pixel differently, so the
    frames may differ by one level, no more."""
    from lightning_modules.generation.clip_generation import load_generator
    from lightning_modules.generation.infer import pipeline
    from lightning_modules.generation.infer.face_input import load_face

    written: dict[str, list[np.ndarray]] = {}

    class RecordingWriter(pipeline.VideoWriter):
        def add_frames(self, frames: np.ndarray) -> None:
            written.setdefault(self.path.stem, []).append(np.array(frames))
            super().add_frames(frames)

    monkeypatch.setattr(pipeline, "VideoWriter", RecordingWriter)
    tmp, model_ref = trained
    model = load_generator(model_ref, registry=str(tmp / "registry"), device=torch.device("cpu"))
    face = load_face(tmp / "videos" / "ben" / "take1.mp4", model.geometry.fps,
                     crop=model.geometry.crop, max_seconds=2.0)
    audio = make_audio_file(tmp_path / "speech.wav", seconds=1.0, seed=7)
    pipeline.infer_batch(model, face, audio, tmp_path / "batch.mp4", device=torch.device("cpu"),
                         batch_size=8, show_progress=False)
    chunks = pipeline.stream_chunks(audio, model.geometry.sample_rate, 0.04)
    result = pipeline.infer_stream(model, face, chunks, tmp_path / "stream.mp4",
                                   device=torch.device("cpu"), batch_size=4)
    a, b = (np.concatenate(written[name]) for name in ("batch", "stream"))
    assert a.shape == b.shape == (25, 160, 160, 3)
    assert np.abs(a.astype(int) - b.astype(int)).max() <= 1
    assert decoded(tmp_path / "stream.mp4").shape == (25, 160, 160, 3)
    assert result.frames == 25 and len(result.latencies) == 25


def test_stream_mode_reads_stdin_and_reports_latency(trained, tmp_path):
    tmp, model = trained
    face = tmp / "videos" / "ben" / "take1.mp4"
    audio = make_audio_file(tmp_path / "speech.wav", seconds=1.0, seed=7)
    # the stream arrives on stdin, in 40 ms chunks
    stream = infer(tmp, model, face, "-", tmp_path / "stream.mp4", "--stream",
                   "--report", str(tmp_path / "report.json"), stdin=audio.read_bytes())
    assert stream.returncode == 0, stream.stderr[-3000:]
    frames, size, audio_seconds = streams(tmp_path / "stream.mp4")
    assert (frames, size) == (25, (160, 160))
    assert audio_seconds == pytest.approx(1.0, abs=0.03)
    import json

    report = json.loads((tmp_path / "report.json").read_text())
    assert report["frames"] == 25 and report["latency_ms"]["median"] > 0


@pytest.mark.parametrize("case", ["faceless", "bad_audio", "bad_model"])
def test_bad_input_is_a_clear_error_naming_it(trained, tmp_path, case):
    tmp, model = trained
    face = tmp / "videos" / "ann" / "take1.mp4"
    audio = str(make_audio_file(tmp_path / "speech.wav", seconds=0.5))
    if case == "faceless":
        face = make_talking_video(tmp_path / "wall.mp4", seconds=1.0, face=False)
        named = "wall.mp4"
    elif case == "bad_audio":
        audio = str(tmp_path / "noise.mp3")
        Path(audio).write_bytes(b"not audio at all" * 100)
        named = "noise.mp3"
    else:
        model = "model-doesnotexist:best"
        named = model
    out = infer(tmp, model, face, audio, tmp_path / "out.mp4")
    assert out.returncode == 2
    assert named in out.stderr.decode() and "Traceback" not in out.stderr.decode()
    assert not (tmp_path / "out.mp4").exists()


def test_a_face_crop_input_is_used_whole_with_face_crop_full(trained, tmp_path, tiny_corpus):
    """A clip of the synthetic corpus is already a face crop (a cartoon no detector knows)."""
    from datamodules.export_clip import export_clip

    tmp, model = trained
    clip = export_clip(tiny_corpus, "test", 0, tmp_path / "synth_clip.mp4")  # 48 px, 3 s
    out = infer(tmp, model, clip, str(clip), tmp_path / "synced.mp4", "--face-crop", "full")
    assert out.returncode == 0, out.stderr[-3000:]
    frames, size, audio_seconds = streams(tmp_path / "synced.mp4")
    assert size == (48, 48) and frames == 75 and audio_seconds == pytest.approx(3.0, abs=0.06)
