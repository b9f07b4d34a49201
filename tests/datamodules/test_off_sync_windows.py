"""Off-sync mel windows (the sync expert's negatives): cut only when asked, shifted as stated."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.sample_format import Clip
from datamodules.windows import WindowCutter


def _clip(n: int = 40, size: int = 16) -> Clip:
    rng = np.random.default_rng(0)
    frames = rng.integers(0, 255, (n, size, size, 3), dtype=np.uint8)
    audio = rng.standard_normal(n * 640).astype(np.float32) * 0.1
    return Clip("spk000_clip0000", frames, audio, 25, 16000)


def test_default_cutter_has_no_off_sync_mel():
    cutter = WindowCutter(image_size=16, frames_per_window=5)
    assert all("mel_off" not in w for w in cutter.cut(_clip(), 4))


def test_off_sync_mel_is_the_windows_audio_shifted_by_the_recorded_frames():
    cutter = WindowCutter(image_size=16, frames_per_window=5, off_sync_min_shift=3,
                          off_sync_max_shift=6)
    clip = _clip()
    mel = cutter.clip_mel(clip)
    windows = cutter.cut(clip, 6, np.random.default_rng(1))
    for w in windows:
        s = w["off_shift"]
        assert 3 <= abs(s) <= 6
        assert 0 <= w["frame"] + s <= clip.num_frames - 5  # stays inside the clip
        expected = np.stack([cutter.mel_window(mel, (k + s + 0.5) / 25)
                             for k in range(w["frame"], w["frame"] + 5)])[:, None]
        np.testing.assert_array_equal(w["mel_off"], expected)
        assert not np.array_equal(w["mel_off"], w["mel"])
    again = cutter.cut(clip, 6)  # evaluation windows: deterministic shifts
    assert [w["off_shift"] for w in again] == [w["off_shift"] for w in cutter.cut(clip, 6)]


@pytest.mark.parametrize(("kwargs", "key"), [({"off_sync_min_shift": -1}, "off_sync_min_shift"),
                                             ({"off_sync_min_shift": 5, "off_sync_max_shift": 2},
                                              "off_sync_max_shift")])
def test_bad_off_sync_settings_name_the_key(kwargs, key):
    with pytest.raises(ValueError, match=key):
        WindowCutter(image_size=16, **kwargs)


def test_datamodule_batches_carry_mel_off_only_when_asked(tiny_corpus):
    common = {"root": str(tiny_corpus), "image_size": 48, "frames_per_window": 5,
              "num_workers": 0, "batch_size": 4, "val_windows_per_clip": 2}
    plain = next(iter(LipSyncDataModule(**common).val_dataloader()))
    assert "mel_off" not in plain
    batch = next(iter(LipSyncDataModule(**common, off_sync_min_shift=3).val_dataloader()))
    assert batch["mel_off"].shape == batch["mel"].shape
    assert not np.array_equal(batch["mel_off"].numpy(), batch["mel"].numpy())
