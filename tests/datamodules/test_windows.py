"""Window cutting: audio ratio, mel centring, edges, shift, reference, clip checks."""

from __future__ import annotations

import numpy as np
import pytest

from datamodules.audio_features import SILENCE, LogMel
from datamodules.sample_format import Clip, SampleError
from datamodules.windows import WindowCutter, check_audio_ratio, mel_frames_for

FPS, SR, S = 25, 16000, 16
SPF = SR // FPS


def make_clip(num_frames: int = 30, burst_frame: int | None = 10, *, noise: float = 1e-3,
              sr: int = SR, size: int = S, audio_frames: float | None = None,
              mouth: bool = True) -> Clip:
    frames = np.zeros((num_frames, size, size, 3), dtype=np.uint8)
    frames[:] = (np.arange(num_frames, dtype=np.uint8) * 7 + 3)[:, None, None, None]
    n_audio = int((num_frames if audio_frames is None else audio_frames) * sr / FPS)
    rng = np.random.default_rng(0)
    audio = (noise * rng.standard_normal(n_audio)).astype(np.float32)
    if burst_frame is not None:
        t = np.arange(n_audio) / sr
        centre = (burst_frame + 0.5) / FPS
        inside = np.abs(t - centre) <= 0.005
        audio[inside] += 0.5 * np.sin(2 * np.pi * 1500 * t[inside])
    track = np.tile(np.arange(num_frames, dtype=np.float32)[:, None], (1, 3)) if mouth else None
    return Clip(key="spk_c0", frames=frames, audio=audio, fps=FPS, sample_rate=sr, mouth=track)


def burst_column(mel: np.ndarray) -> float:
    """Energy-weighted column of the loudest part of a (80, M) window."""
    energy = mel.mean(axis=0)
    return float(np.argmax(energy))


def test_audio_ratio():
    assert check_audio_ratio(0.2, 25) == pytest.approx(5.0)
    check_audio_ratio(0.1, 50)
    with pytest.raises(ValueError, match=r"audio_seconds=0.1\b.*5"):
        check_audio_ratio(0.1, 25)
    with pytest.raises(ValueError, match="audio_seconds"):
        WindowCutter(audio_seconds=0.15, fps=25)
    assert mel_frames_for(0.2) == 16 and mel_frames_for(0.4) == 32


def test_mel_window_is_centred_on_the_frame():
    clip = make_clip(30, burst_frame=10)
    cutter = WindowCutter(image_size=S)
    mel = cutter.clip_mel(clip)
    w = cutter.window(clip, mel, 10)
    assert w["mel"].shape == (1, 1, 80, 16) and w["mel"].dtype == np.float32
    assert burst_column(w["mel"][0, 0]) in (7, 8)  # the middle of 16 columns
    # one frame earlier the burst is 40 ms = 3.2 columns later in the window, and vice versa
    assert abs(burst_column(cutter.window(clip, mel, 9)["mel"][0, 0]) - (7.5 + 3.2)) <= 1
    assert abs(burst_column(cutter.window(clip, mel, 11)["mel"][0, 0]) - (7.5 - 3.2)) <= 1
    # the face is the target frame itself (brightness encodes the index), CHW
    assert w["face"].shape == (1, 3, S, S) and w["face"].dtype == np.uint8
    assert int(w["face"][0, 0, 0, 0]) == 10 * 7 + 3 and w["frame"] == 10


def test_multi_frame_window_centres_each_frame():
    clip = make_clip(30, burst_frame=12)
    cutter = WindowCutter(image_size=S, frames_per_window=3)
    w = cutter.window(clip, cutter.clip_mel(clip), 11)
    assert w["face"].shape == (3, 3, S, S) and w["mel"].shape == (3, 1, 80, 16)
    assert [int(f[0, 0, 0]) for f in w["face"]] == [11 * 7 + 3, 12 * 7 + 3, 13 * 7 + 3]
    assert burst_column(w["mel"][1, 0]) in (7, 8)  # frame 12 is the middle one
    assert np.allclose(w["mouth"], np.tile([[11.0], [12.0], [13.0]], (1, 3)))


def test_edges_are_padded_with_silence():
    clip = make_clip(30, burst_frame=None, noise=1e-2)
    cutter = WindowCutter(image_size=S)
    mel = cutter.clip_mel(clip)
    assert np.all(mel.mean(axis=0) > SILENCE + 0.5)  # noise: every real column is above the floor
    first = cutter.window(clip, mel, 0)["mel"][0, 0]
    # frame 0 centre = 20 ms = mel column 1.6 -> window starts at column -6
    assert np.all(first[:, :6] == SILENCE) and np.all(first[:, 6:].mean(axis=0) > SILENCE + 0.5)
    assert np.array_equal(first[:, 6:], mel[:, :10])
    last = cutter.window(clip, mel, 29)["mel"][0, 0]
    # frame 29 centre = 1.18 s = column 94.4 -> columns 87..102 of 97
    assert np.array_equal(last[:, :10], mel[:, 87:97]) and np.all(last[:, 10:] == SILENCE)


def test_audio_shift_takes_audio_from_another_frame_and_wraps():
    clip = make_clip(30, burst_frame=10)
    plain = WindowCutter(image_size=S)
    shifted = WindowCutter(image_size=S, audio_shift_frames=4)
    mel = plain.clip_mel(clip)
    a = shifted.window(clip, mel, 6)
    assert np.array_equal(a["mel"], plain.window(clip, mel, 10)["mel"])
    assert int(a["face"][0, 0, 0, 0]) == 6 * 7 + 3  # the face is still frame 6
    wrapped = shifted.window(clip, mel, 28)  # 28 + 4 -> frame 2
    assert np.array_equal(wrapped["mel"], plain.window(clip, mel, 2)["mel"])


def test_reference_is_far_enough_and_deterministic_without_rng():
    clip = make_clip(30)
    cutter = WindowCutter(image_size=S, use_reference=True, ref_min_gap=5, frames_per_window=2)
    rng = np.random.default_rng(1)
    windows = cutter.cut(clip, 40, rng)
    for w in windows:
        assert abs(w["ref_frame"] - w["frame"]) >= 5
        assert int(w["ref"][0, 0, 0, 0]) == w["ref_frame"] * 7 + 3
        assert w["ref"].shape == (2, 3, S, S)
    again = cutter.cut(clip, 4)
    assert [w["ref_frame"] for w in again] == [w["ref_frame"] for w in cutter.cut(clip, 4)]


def test_start_selection():
    cutter = WindowCutter(image_size=S)
    assert cutter.even_starts(30, 4).tolist() == [0, 10, 19, 29]
    assert cutter.even_starts(3, 8).tolist() == [0, 1, 2]  # never duplicates
    starts = cutter.random_starts(30, 20, np.random.default_rng(0))
    assert len(set(starts.tolist())) == 20  # distinct while there are enough
    assert len(cutter.random_starts(5, 8, np.random.default_rng(0))) == 8
    ref = WindowCutter(image_size=S, use_reference=True, ref_min_gap=5)
    assert ref.valid_starts(8).tolist() == [0, 1, 2, 5, 6, 7]  # 3, 4 have no frame 5 away


def test_mel_computed_once_per_clip():
    calls = []

    class Counting(LogMel):
        def forward(self, audio):
            calls.append(audio.shape)
            return super().forward(audio)

    cutter = WindowCutter(image_size=S, logmel=Counting())
    assert len(cutter.cut(make_clip(30), 8, np.random.default_rng(0))) == 8
    assert len(calls) == 1 and calls[0] == (30 * SPF,)


@pytest.mark.parametrize("clip,reason,category", [
    (make_clip(30, audio_frames=28.9), "audio has", "length_mismatch"),
    (make_clip(30, audio_frames=31.5), "audio has", "length_mismatch"),
    (make_clip(2), "fewer than frames_per_window", "too_short"),
])
def test_bad_clips_raise_sample_error(clip, reason, category):
    cutter = WindowCutter(image_size=S, frames_per_window=3)
    with pytest.raises(SampleError, match=reason) as info:
        cutter.cut(clip, 2)
    assert info.value.key == "spk_c0"
    assert info.value.category == category


@pytest.mark.parametrize("clip,repair", [
    (make_clip(30, sr=22050), "resampled_audio"),
    (make_clip(30, size=24), "resized_frames"),
])
def test_repairable_clips_are_repaired_by_prepare_and_refused_by_check(clip, repair):
    cutter = WindowCutter(image_size=S, frames_per_window=3)
    fixed = cutter.prepare(clip)
    assert fixed.repairs == [repair]
    assert fixed.frames.shape == (30, S, S, 3) and fixed.sample_rate == SR
    assert fixed.audio.shape == (30 * SPF,)
    with pytest.raises(SampleError, match=repair):
        cutter.check(clip)
    assert len(cutter.cut(clip, 2)) == 2


def test_audio_short_by_less_than_a_frame_is_accepted():
    cutter = WindowCutter(image_size=S)
    assert len(cutter.cut(make_clip(30, audio_frames=29.2), 2)) == 2


def test_too_short_for_a_reference():
    cutter = WindowCutter(image_size=S, use_reference=True, ref_min_gap=5)
    with pytest.raises(SampleError, match="reference"):
        cutter.check(make_clip(5))


def test_grayscale_arrays_are_replicated_to_rgb_and_nonsquare_frames_skipped():
    import dataclasses

    cutter = WindowCutter(image_size=S)
    clip = make_clip(30)
    gray = cutter.prepare(dataclasses.replace(clip, frames=clip.frames[..., 0]))
    assert gray.repairs == ["grayscale_frames"] and gray.frames.shape == (30, S, S, 3)
    assert np.array_equal(gray.frames[..., 2], clip.frames[..., 0])
    wide = dataclasses.replace(clip, frames=np.zeros((30, S, S + 8, 3), np.uint8))
    with pytest.raises(SampleError, match="expected square") as info:
        cutter.prepare(wide)
    assert info.value.category == "wrong_frame_size"
