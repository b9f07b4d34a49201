"""LogMel: shapes, frame timing, filterbank, fixed normalisation."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from datamodules.audio_features import (
    FMAX,
    FMIN,
    SILENCE,
    LogMel,
    hz_to_mel,
    mel_filterbank,
    mel_to_hz,
)

SR = 16000


def tone(freq: float, seconds: float, amp: float = 0.5) -> torch.Tensor:
    t = torch.arange(int(seconds * SR)) / SR
    return amp * torch.sin(2 * torch.pi * freq * t)


def test_shapes_and_frame_rate():
    lm = LogMel()
    out = lm(torch.zeros(SR))
    assert out.shape == (80, 81)  # 1 + 16000 // 200 frames: 80 per second, centred
    batch = lm(torch.zeros(3, 8000))
    assert batch.shape == (3, 80, 41)
    assert lm.frames_per_second == 80
    with pytest.raises(ValueError, match="audio must be"):
        lm(torch.zeros(1, 2, 3))


def test_silence_is_the_minimum_and_range_is_fixed():
    lm = LogMel()
    assert torch.all(lm(torch.zeros(4000)) == SILENCE)
    loud = lm(tone(1000, 0.5, amp=0.9))
    assert loud.min() >= -4 and loud.max() <= 4
    assert loud.max() > 0


def test_normalisation_is_not_per_clip():
    lm = LogMel()
    quiet, loud = lm(tone(1000, 0.5, amp=0.05)), lm(tone(1000, 0.5, amp=0.5))
    # 20 dB louder is 1.6 units higher (8 units per 100 dB) wherever neither is clipped
    peak_q, peak_l = quiet[:, 10:30].max(), loud[:, 10:30].max()
    assert peak_l - peak_q == pytest.approx(1.6, abs=0.05)


def test_tone_lands_in_the_right_band():
    basis = mel_filterbank()
    centres = mel_to_hz(np.linspace(hz_to_mel(FMIN), hz_to_mel(FMAX), 82))[1:-1]
    lm = LogMel()
    for freq in (300.0, 1000.0, 4000.0):
        band = int(lm(tone(freq, 0.5))[:, 10:30].mean(dim=1).argmax())
        assert abs(centres[band] - freq) / freq < 0.08, (freq, centres[band])
    assert basis.shape == (80, 401)
    assert (basis >= 0).all()
    # every filter is a single triangle peaking at its centre frequency
    freqs = np.linspace(0, SR / 2, 401)
    peaks = freqs[basis.argmax(axis=1)]
    assert np.all(np.abs(peaks - centres) <= 20.0 + 1e-6)
    # slaney normalisation: every triangle has unit area in Hz (20 Hz FFT bins)
    assert np.allclose(basis.sum(axis=1) * 20.0, 1.0, atol=0.05)


def test_slaney_mel_scale_reference_points():
    # librosa.hz_to_mel(htk=False): 1000 Hz -> 15, linear below, 6.4x per 27 mels above
    assert float(hz_to_mel(1000.0)) == pytest.approx(15.0)
    assert float(hz_to_mel(200.0)) == pytest.approx(3.0)
    assert float(hz_to_mel(6400.0)) == pytest.approx(42.0)
    assert float(mel_to_hz(hz_to_mel(3456.0))) == pytest.approx(3456.0)


def test_frame_j_is_centred_at_j_hop():
    lm = LogMel()
    audio = torch.zeros(SR)
    click = int(0.5 * SR)  # 0.5 s -> mel frame 40
    audio[click - 40:click + 40] = tone(2000, 80 / SR)
    energy = lm(audio).mean(dim=0)
    peak = int(energy.argmax())
    assert peak == 40
    assert energy[38] == pytest.approx(float(energy[42]), abs=0.05)  # symmetric about it
