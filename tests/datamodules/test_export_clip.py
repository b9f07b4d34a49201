"""`lipmem data export`: a corpus clip out as an mp4 a person (or `lipmem infer`) can use."""

from __future__ import annotations

import av
import numpy as np

from datamodules.export_clip import export_clip
from datamodules.lipsync_datamodule import LipSyncDataModule


def test_exported_clip_has_the_clip_frames_and_audio(tiny_corpus, tmp_path):
    out = export_clip(tiny_corpus, "test", 1, tmp_path / "clip.mp4")
    clip = list(LipSyncDataModule(root=str(tiny_corpus), image_size=48,
                                  num_workers=0).clips("test"))[1]
    with av.open(str(out)) as container:
        frames = np.stack([f.to_ndarray(format="rgb24")
                           for f in container.decode(container.streams.video[0])])
        audio = container.streams.audio[0]
        seconds = float(audio.duration * audio.time_base)
    assert frames.shape == clip.frames.shape
    assert np.abs(frames.astype(int) - clip.frames.astype(int)).mean() < 6  # H.264, lossy
    assert abs(seconds - clip.num_frames / clip.fps) < 0.05


def test_missing_clip_is_a_clear_error(tiny_corpus, tmp_path, lipmem_cli):
    out = lipmem_cli(["data", "export", "--data", str(tiny_corpus), "--split", "test",
                      "--index", "99", "--out", str(tmp_path / "x.mp4")], tmp_path)
    assert out.returncode == 2 and "no usable clip number 99" in out.stderr
    assert not (tmp_path / "x.mp4").exists()
