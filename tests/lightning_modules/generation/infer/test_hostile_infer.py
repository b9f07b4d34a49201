"""`lipmem infer` (and `lipmem data prep`) against hostile or careless inputs: a checkpoint
that names code to import, an output path that is an input, a face too small or too large.
Every case is a clear error with exit 2 and no traceback; nothing is imported, decoded in
full or overwritten."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from datamodules.prep.media import MediaError, decode_video
from lightning_modules.generation.infer.face_input import FaceInputError, load_face
from tests.conftest import LIPMEM, REPO
from tests.media_fixtures import make_audio_file, make_talking_video
from tests.model_fixtures import generator_checkpoint

EVIL_MODULE = "import pathlib, os\npathlib.Path(os.environ['EVIL_MARKER']).touch()\n" \
              "class Detector:\n    def detect(self, frame):\n        return []\n"


@pytest.fixture(scope="module")
def media(tmp_path_factory) -> dict[str, Path]:
    tmp = tmp_path_factory.mktemp("hostile_infer")
    return {"tmp": tmp,
            "face": make_talking_video(tmp / "face.mp4", seconds=1.0, size=128, seed=3),
            "audio": make_audio_file(tmp / "speech.wav", seconds=0.4, seed=4),
            "model": generator_checkpoint(tmp / "model.ckpt")}


def infer(tmp: Path, model: Path, face: Path | str, audio: Path | str, out: Path | str,
          *extra: str, cwd: Path = REPO) -> subprocess.CompletedProcess:
    (tmp / "evil").mkdir(exist_ok=True)
    (tmp / "evil" / "evilmod.py").write_text(EVIL_MODULE)
    env = {"LIPMEM_REGISTRY": str(tmp / "registry"), "HOME": str(tmp / "home"),
           "PYTHONPATH": f"{REPO}:{tmp / 'evil'}", "PATH": str(Path(sys.executable).parent),
           "EVIL_MARKER": str(tmp / "evil_ran")}
    return subprocess.run(LIPMEM + ["infer", "--model", str(model), "--face", str(face),
                                    "--audio", str(audio), "--out", str(out), *extra],
                          cwd=cwd, env=env, capture_output=True, text=True, timeout=600,
                          check=False)


def assert_clear_error(out: subprocess.CompletedProcess, *named: str) -> None:
    assert out.returncode == 2, (out.returncode, out.stderr[-3000:])
    assert "Traceback" not in out.stderr, out.stderr[-3000:]
    for text in named:
        assert text in out.stderr, out.stderr[-3000:]


@pytest.mark.parametrize("detector", ["os:abort", "evilmod.Detector"])
def test_a_checkpoint_cannot_choose_the_detector_code(media, tmp_path, detector):
    """The reported case: `lipmem_model.geometry.crop.detector` was imported and called
    (`os:abort` aborted with 134). A file may name only a built-in detector."""
    tmp = media["tmp"]
    model = generator_checkpoint(tmp_path / "evil.ckpt",
                                 crop={"margin": 0.3, "shift_y": 0.1, "detector": detector})
    out = infer(tmp, model, media["face"], media["audio"], tmp_path / "out.mp4")
    assert_clear_error(out, repr(detector), "geometry.crop.detector", "--detector")
    assert not (tmp / "evil_ran").exists()
    assert not (tmp_path / "out.mp4").exists()


@pytest.mark.parametrize("detector", ["tempfile:mkdtemp", "this:s", "builtins.print"])
def test_load_face_imports_nothing_a_record_names(media, tmp_path, monkeypatch, detector):
    monkeypatch.setenv("TMPDIR", str(tmp_path))
    import tempfile

    monkeypatch.setattr(tempfile, "tempdir", None)  # re-read TMPDIR
    sys.modules.pop("this", None)
    with pytest.raises(ValueError, match="built-in"):
        load_face(media["face"], 25, crop={"detector": detector}, max_seconds=0.2)
    assert list(tmp_path.iterdir()) == [] and "this" not in sys.modules


def test_the_built_in_detector_may_be_named_by_alias_or_class_path(media):
    for name in ("haar", "datamodules.prep.face_detect.HaarFaceDetector", None):
        face = load_face(media["face"], 25, crop={"detector": name}, max_seconds=0.2)
        assert face.track.boxes.shape[0] == len(face.frames)


@pytest.mark.parametrize("which", ["face", "audio"])
def test_out_may_not_be_an_input(media, tmp_path, which):
    """The reported case: `--face x.mp4 --out x.mp4` silently replaced the input. Here the
    same file is reached through a symlink (face) or a relative path (audio-only mp4)."""
    tmp = media["tmp"]
    face = tmp_path / "face.mp4"
    face.write_bytes(media["face"].read_bytes())
    audio = make_audio_file(tmp_path / "speech.mp4", seconds=0.4, seed=4)
    before = {p.name: p.read_bytes() for p in (face, audio)}
    if which == "face":
        (tmp_path / "link.mp4").symlink_to(face)
        out = infer(tmp, media["model"], face, audio, tmp_path / "link.mp4")
    else:
        out = infer(tmp, media["model"], face, audio, "speech.mp4", cwd=tmp_path)
    assert_clear_error(out, "--out", f"--{which}", "same file")
    assert {p.name: p.read_bytes() for p in (face, audio)} == before


def test_a_one_pixel_face_is_a_clear_error(media, tmp_path):
    """The reported case: a 1x1 px image raised ZeroDivisionError (exit 1)."""
    face = tmp_path / "dot.png"
    Image.fromarray(np.zeros((1, 1, 3), np.uint8)).save(face)
    out = infer(media["tmp"], media["model"], face, media["audio"], tmp_path / "out.mp4")
    assert_clear_error(out, "dot.png", "1x1", "too small")


def test_an_image_above_the_pixel_limit_is_refused_before_decoding(media, tmp_path):
    face = tmp_path / "huge.png"
    Image.new("RGB", (4200, 4200), (120, 110, 100)).save(face)  # 17.6 Mpx, a few KB as PNG
    assert face.stat().st_size < 1_000_000
    out = infer(media["tmp"], media["model"], face, media["audio"], tmp_path / "out.mp4")
    assert_clear_error(out, "huge.png", "4200x4200", "Mpx")
    monkey = tmp_path / "small.png"
    Image.new("RGB", (200, 200), (120, 110, 100)).save(monkey)
    with pytest.raises(FaceInputError, match="200x200"):
        load_face(monkey, 25, max_pixels=100 * 100)


def test_a_video_above_the_pixel_limit_is_refused_from_its_header(media):
    with pytest.raises(MediaError, match="128x128") as info:
        decode_video(media["face"], max_pixels=100 * 100)
    assert info.value.reason == "too_large"
    with pytest.raises(FaceInputError, match="128x128"):
        load_face(media["face"], 25, max_pixels=100 * 100)


def test_prep_skips_a_video_above_the_limit_and_retries_it_later(tmp_path):
    from datamodules.prep.build import prepare
    from datamodules.prep.job import PrepConfig

    make_talking_video(tmp_path / "videos" / "spk1" / "a.mp4", seconds=1.5, size=128, seed=1)
    make_talking_video(tmp_path / "videos" / "spk2" / "a.mp4", seconds=1.5, size=128, seed=2)
    settings = {"image_size": 48, "clip_seconds": 1.0, "min_clip_seconds": 0.8, "workers": 0}
    out = str(tmp_path / "out")
    report = prepare(PrepConfig(str(tmp_path / "videos"), out, max_pixels=100 * 100,
                                **settings), progress=False)
    assert report["skipped"]["too_large"] == 2 and report["kept_videos"] == 0
    report = prepare(PrepConfig(str(tmp_path / "videos"), out, **settings), progress=False)
    assert report["skipped"]["too_large"] == 0 and report["kept_videos"] == 2
