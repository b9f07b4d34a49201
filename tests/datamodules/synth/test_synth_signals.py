"""Phones, mouth track, speech and faces of the synthetic corpus, tested without I/O."""

from __future__ import annotations

import itertools

import numpy as np
import pytest

from datamodules import face_layout as L
from datamodules.synth.faces import FaceRenderer, head_motion, sample_appearance
from datamodules.synth.mouth_track import articulation, frame_track, mouth_track
from datamodules.synth.phones import CLOSED, PHONES, VOWELS, TimedPhone, sample_phones
from datamodules.synth.speech import sample_voice, synthesize_speech

FPS, SR = 25, 16000


def _clip(seed: int, seconds: float = 6.0):
    rng = np.random.default_rng(seed)
    voice = sample_voice(rng)
    phones = sample_phones(rng, seconds, voice.rate)
    control = articulation(phones, seconds)
    frames = int(seconds * FPS)
    track = frame_track(control, frames, FPS)
    audio = synthesize_speech(rng, phones, control, voice, frames * SR // FPS, SR)
    return phones, track, audio


def _frame_rms(audio: np.ndarray, num_frames: int, window_s: float = 0.04) -> np.ndarray:
    half = int(window_s * SR / 2)
    centres = ((np.arange(num_frames) + 0.5) * SR / FPS).astype(int)
    return np.array([np.sqrt(np.mean(audio[max(0, c - half):c + half] ** 2)) for c in centres])


def test_inventory_mouth_targets_follow_visemes():
    assert set(CLOSED) == {"sil", "b", "p", "m"}
    assert all(PHONES[n].openness == 0.0 for n in CLOSED)
    assert PHONES["a"].openness == max(p.openness for p in PHONES.values())
    assert PHONES["i"].width == max(p.width for p in PHONES.values())
    assert PHONES["i"].openness < PHONES["e"].openness < PHONES["a"].openness
    assert min(PHONES["u"].roundness, PHONES["o"].roundness) > 0.7 > PHONES["a"].roundness
    assert PHONES["u"].width < 0.3 and PHONES["f"].openness < 0.1 and PHONES["sh"].roundness > 0.5
    for p in PHONES.values():
        assert all(0.0 <= v <= 1.0 for v in p.mouth), p.name


def test_phone_sequence_is_contiguous_and_seeded():
    phones = sample_phones(np.random.default_rng(3), 6.0)
    assert phones[0].start == 0.0 and phones[-1].end == pytest.approx(6.0)
    assert all(a.end == pytest.approx(b.start) for a, b in itertools.pairwise(phones))
    assert all(p.end > p.start for p in phones)
    names = [p.name for p in phones]
    assert {"sil"} < set(names) and set(VOWELS) & set(names)
    assert phones == sample_phones(np.random.default_rng(3), 6.0)
    assert phones != sample_phones(np.random.default_rng(4), 6.0)


def test_closed_phones_shut_the_mouth_and_a_opens_it():
    closed, open_a = [], []
    for seed in range(6):
        phones = sample_phones(np.random.default_rng(seed), 6.0)
        track = mouth_track(phones, 150, FPS)
        assert track.shape == (150, 3) and track.dtype == np.float32
        assert track.min() >= 0.0 and track.max() <= 1.0
        for i, t in enumerate((np.arange(150) + 0.5) / FPS):
            p = next(p for p in phones if p.start <= t < p.end)
            margin = min(t - p.start, p.end - t)
            if p.name in CLOSED and margin >= 0.025:
                closed.append(track[i, 0])
            if p.name == "a" and margin >= 0.045:
                open_a.append(track[i, 0])
    assert len(closed) > 20 and len(open_a) > 5
    assert max(closed) < 0.06
    assert min(open_a) > 0.5


def test_track_depends_on_phones_only():
    phones = [TimedPhone("sil", 0.0, 0.3), TimedPhone("b", 0.3, 0.38), TimedPhone("a", 0.38, 0.6),
              TimedPhone("sil", 0.6, 1.0)]
    shifted = [TimedPhone(p.name, p.start + 0.4, p.end + 0.4) for p in phones]
    shifted = [TimedPhone("sil", 0.0, 0.4 + 0.3)] + shifted[1:]
    a = mouth_track(phones, 25, FPS)
    b = mouth_track(shifted, 35, FPS)
    np.testing.assert_allclose(a[5:20], b[15:30], atol=1e-6)  # same phones, 10 frames later
    assert np.array_equal(a, mouth_track(phones, 25, FPS))


def test_audio_format_and_loudness_follows_openness():
    _, track, audio = _clip(11)
    assert audio.dtype == np.float32 and audio.shape == (150 * SR // FPS,)
    assert 0.5 < np.abs(audio).max() <= 0.9
    rms = _frame_rms(audio, 150)
    openness = track[:, 0]
    loud, quiet = rms[openness > 0.5], rms[openness < 0.1]
    assert len(loud) > 5 and len(quiet) > 5
    assert loud.mean() > 4 * quiet.mean()
    assert np.corrcoef(openness, rms)[0, 1] > 0.6


def test_pauses_are_near_silent_and_fricatives_are_noisy():
    phones, _, audio = _clip(5)
    def seg_rms(p):
        a = audio[int((p.start + 0.03) * SR):int((p.end - 0.03) * SR)]
        return float(np.sqrt(np.mean(a ** 2))) if a.size else None
    pauses = [r for p in phones if p.name == "sil" and (r := seg_rms(p)) is not None]
    vowels = [r for p in phones if p.name in ("a", "e", "o") and (r := seg_rms(p)) is not None]
    assert pauses and vowels
    assert max(pauses) < 0.01 < min(vowels)
    # s is hiss: most of its energy sits above 3 kHz, unlike a vowel.
    def high_share(name: str) -> list[float]:
        shares = []
        for p in phones:
            if p.name == name and p.end - p.start > 0.08:
                seg = audio[int(p.start * SR) + 160:int(p.end * SR) - 160]
                power = np.abs(np.fft.rfft(seg)) ** 2
                shares.append(power[np.fft.rfftfreq(len(seg), 1 / SR) > 3000].sum() / power.sum())
        return shares
    s_share, a_share = high_share("s"), high_share("a")
    assert s_share and a_share
    assert min(s_share) > 0.8 and max(a_share) < 0.2


def _regions(size: int):
    mouth = (slice(int((L.MOUTH_Y - 0.08) * size), int((L.MOUTH_Y + 0.1) * size)),
             slice(int(0.35 * size), int(0.65 * size)))
    upper = (slice(int((L.BROW_Y - 0.06) * size), int((L.EYE_Y + 0.06) * size)),
             slice(int(0.25 * size), int(0.75 * size)))
    return mouth, upper


@pytest.mark.parametrize("size", [32, 48, 64, 96, 256])
def test_mouth_region_changes_with_openness_upper_face_does_not(size):
    rng = np.random.default_rng(size)
    renderer = FaceRenderer(sample_appearance(rng), size, rng)
    closed = renderer.render(np.array([0.0, 0.5, 0.3]))
    opened = renderer.render(np.array([0.9, 0.6, 0.15]))
    assert closed.shape == (size, size, 3) and closed.dtype == np.uint8
    mouth, upper = _regions(size)
    diff = np.abs(closed.astype(int) - opened.astype(int)).sum(axis=2)
    assert np.array_equal(closed[upper], opened[upper])
    changed = (diff[mouth] > 60).sum()
    assert changed >= 0.004 * size * size  # a visible blob, not a few anti-aliased pixels
    assert diff[mouth].mean() > 8


def test_head_motion_is_small_and_smooth():
    poses, gains = head_motion(np.random.default_rng(0), 150, FPS)
    assert poses.shape == (150, 3) and gains.shape == (150,)
    assert np.abs(poses[:, :2]).max() <= 0.02 + 1e-9 and np.abs(poses[:, 2]).max() <= 3 + 1e-9
    assert np.abs(gains - 1).max() <= 0.1 + 1e-9
    assert np.abs(np.diff(poses[:, 2])).max() < 0.5  # degrees per frame: no jumps
    assert np.ptp(poses[:, 2]) > 0.3  # but it does move


def test_speakers_look_different():
    means = []
    for spk in range(6):
        rng = np.random.default_rng([7, spk])
        r = FaceRenderer(sample_appearance(rng), 64, rng)
        img = r.render(np.array([0.0, 0.5, 0.3])).astype(float)
        means.append(img[_regions(64)[1]].mean(axis=(0, 1)))
    means = np.array(means)
    dists = np.linalg.norm(means[:, None] - means[None], axis=2)[np.triu_indices(6, 1)]
    assert dists.min() > 3.0 and np.median(dists) > 15.0
