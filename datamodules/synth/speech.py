"""Speech-like audio rendered from the same timed phones as the face.

Not intelligible speech, but with the cues a lip-sync model uses: voiced vowels with a
moving pitch and vowel-specific formants, loudness that rises and falls with mouth
openness, silent bilabial closures released by a burst, a low nasal murmur for 'm',
band-limited hiss for fricatives and near-silent pauses. Vowels are additive harmonics
whose amplitudes come from a formant-resonance envelope evaluated at a 5 ms control rate
and linearly interpolated, all vectorised in numpy.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import lru_cache

import numpy as np
from scipy.ndimage import gaussian_filter1d
from scipy.signal import butter, sosfilt

from datamodules.synth.mouth_track import CONTROL_RATE, sample_at
from datamodules.synth.phones import PHONES, TimedPhone, phone_index_at

HOP_S = 0.005  # control period of the synthesiser
MAX_HARMONIC_HZ = 5000.0  # above this the formant cascade leaves almost no energy
BANDWIDTHS = np.array([80.0, 110.0, 160.0])  # formant bandwidths in Hz
NASAL_FORMANT, NASAL_BANDWIDTH = 260.0, 100.0
NEUTRAL_FORMANTS = (500.0, 1500.0, 2500.0)
PEAK = 0.89  # final peak level: headroom below full scale, no clipping after int16 rounding
LEVELS = {"s": 0.10, "sh": 0.09, "f": 0.025, "b": 0.07, "p": 0.14, "nasal": 0.20}
NOISE_FLOOR = 3e-4


@dataclass(frozen=True)
class Voice:
    """A speaker's voice: base pitch, vocal-tract scaling, speaking rate, breathiness."""

    f0: float
    formant_scale: float
    rate: float
    breathiness: float


def sample_voice(rng: np.random.Generator) -> Voice:
    """Low or high voices with matching vocal-tract length (shorter tract = higher formants)."""
    high = rng.random() < 0.5
    f0 = float(rng.uniform(165, 245) if high else rng.uniform(85, 140))
    scale = float(rng.uniform(1.06, 1.18) if high else rng.uniform(0.90, 1.02))
    return Voice(f0=f0, formant_scale=scale, rate=float(rng.uniform(0.85, 1.15)),
                 breathiness=float(rng.uniform(0.003, 0.015)))


def _smooth(x: np.ndarray, ms: float, rate: float) -> np.ndarray:
    return gaussian_filter1d(x, sigma=ms * rate / 1000.0, axis=0, mode="nearest")


def _resonance(freq: np.ndarray, centre: np.ndarray, bandwidth: np.ndarray | float) -> np.ndarray:
    """Magnitude of a second-order resonance, unity at DC (one formant of a cascade)."""
    r = freq / centre
    return 1.0 / np.sqrt((1.0 - r * r) ** 2 + (freq * bandwidth / (centre * centre)) ** 2)


def pitch_contour(rng: np.random.Generator, phones: list[TimedPhone], times: np.ndarray,
                  voice: Voice) -> np.ndarray:
    """f0 in Hz at ``times``: phrase declination, per-syllable accents and jitter."""
    base = voice.f0 * rng.uniform(0.94, 1.06)
    idx = phone_index_at(phones, times)
    # Phrases are runs between pauses of >= 150 ms; pitch falls across each.
    phrase_start = np.array([p.start for p in phones])
    phrase_end = np.array([p.end for p in phones])
    begin = 0
    for i, p in enumerate(phones):
        is_break = p.name == "sil" and p.end - p.start >= 0.15
        if is_break or i == len(phones) - 1:
            stop = i if is_break else i + 1
            if stop > begin:
                phrase_start[begin:stop] = phones[begin].start
                phrase_end[begin:stop] = phones[stop - 1].end
            begin = i + 1
    span = np.maximum(phrase_end[idx] - phrase_start[idx], 1e-3)
    progress = np.clip((times - phrase_start[idx]) / span, 0.0, 1.0)
    declination = rng.uniform(0.06, 0.14) * (0.5 - progress)
    accents = rng.normal(0.0, 0.05, size=len(phones))[idx]
    rate = 1.0 / (times[1] - times[0]) if len(times) > 1 else 200.0
    intonation = _smooth(declination + accents, 40.0, rate)
    jitter = _smooth(rng.normal(0.0, 0.02, size=len(times)), 8.0, rate)
    return base * (1.0 + intonation + jitter)


def _voiced(phase: np.ndarray, amps: np.ndarray, hop: int) -> np.ndarray:
    """Sum of harmonics k=1..K of ``phase`` with control-rate amplitudes (C, K), lerped."""
    n = phase.shape[0]
    out = np.zeros(n, dtype=np.float32)
    k = np.arange(1, amps.shape[1] + 1, dtype=np.float32)
    active = amps.max(axis=1) > 1e-6
    block = hop * 50
    for lo in range(0, n, block):
        hi = min(n, lo + block)
        c_lo, c_hi = lo // hop, (hi - 1) // hop + 2
        if not active[c_lo:c_hi].any():
            continue
        pos = np.arange(lo, hi) / hop
        c = np.floor(pos).astype(np.int64)
        frac = (pos - c).astype(np.float32)[:, None]
        a = amps[c] * (1.0 - frac) + amps[c + 1] * frac
        out[lo:hi] = np.einsum("nk,nk->n", a, np.sin(phase[lo:hi, None] * k[None, :]))
    return out


@lru_cache(maxsize=32)
def _bandpass_sos(band: tuple[float, float], sample_rate: int) -> np.ndarray:
    nyq = sample_rate / 2.0
    return butter(4, [band[0] / nyq, min(band[1] / nyq, 0.98)], btype="bandpass", output="sos")


def _bandpass(noise: np.ndarray, band: tuple[float, float], sample_rate: int) -> np.ndarray:
    y = sosfilt(_bandpass_sos(band, sample_rate), noise).astype(np.float32)
    return y / (np.sqrt(np.mean(y * y)) + 1e-12)  # unit RMS


def synthesize_speech(rng: np.random.Generator, phones: list[TimedPhone], mouth: np.ndarray,
                      voice: Voice, num_samples: int, sample_rate: int,
                      mouth_rate: int = CONTROL_RATE) -> np.ndarray:
    """float32 mono audio of exactly ``num_samples`` samples, peak ``PEAK``.

    ``mouth`` is the control-rate articulation (C, 3) at ``mouth_rate`` Hz; vowel loudness
    follows its openness so the audio envelope and the drawn mouth move together.
    """
    hop = max(1, round(HOP_S * sample_rate))
    ctrl_rate = sample_rate / hop
    num_ctrl = num_samples // hop + 2
    t_ctrl = np.arange(num_ctrl) * hop / sample_rate
    idx = phone_index_at(phones, t_ctrl)
    kinds = np.array([PHONES[p.name].kind for p in phones])[idx]

    # Formant tracks: vowel targets (neutral elsewhere), smoothed, scaled per speaker.
    formants = np.array([PHONES[p.name].formants if PHONES[p.name].kind == "vowel"
                         else NEUTRAL_FORMANTS for p in phones])[idx]
    formants = _smooth(formants, 18.0, ctrl_rate) * voice.formant_scale
    openness = sample_at(mouth[:, :1], t_ctrl, mouth_rate)[:, 0]
    vowel_gain = _smooth((kinds == "vowel").astype(np.float64), 6.0, ctrl_rate)
    vowel_gain *= 0.15 + 0.85 * openness
    nasal_gain = _smooth((kinds == "nasal").astype(np.float64), 6.0, ctrl_rate) * LEVELS["nasal"]

    f0_ctrl = pitch_contour(rng, phones, t_ctrl, voice)
    f0 = np.interp(np.arange(num_samples) / sample_rate, t_ctrl, f0_ctrl)
    phase = (2.0 * np.pi * np.cumsum(f0) / sample_rate + rng.uniform(0, 2 * np.pi)) % (2 * np.pi)

    num_h = int(MAX_HARMONIC_HZ // f0_ctrl.min())
    k = np.arange(1, num_h + 1)
    freq = f0_ctrl[:, None] * k[None, :]  # (C, K)
    vowel_env = np.ones_like(freq)
    for j in range(3):
        vowel_env *= _resonance(freq, formants[:, j:j + 1], BANDWIDTHS[j] * voice.formant_scale)
    nasal_env = _resonance(freq, NASAL_FORMANT * voice.formant_scale, NASAL_BANDWIDTH)
    nasal_env /= nasal_env.max(axis=1, keepdims=True)  # murmur level independent of pitch
    vowel_env /= np.median(vowel_env.max(axis=1))  # keep levels comparable across speakers
    amps = (vowel_gain[:, None] * vowel_env + nasal_gain[:, None] * nasal_env) / k[None, :]
    amps[freq > MAX_HARMONIC_HZ] = 0.0
    voiced = _voiced(phase.astype(np.float32), amps.astype(np.float32), hop)
    voiced /= float(np.abs(voiced).max()) + 1e-9

    noise = rng.standard_normal(num_samples).astype(np.float32)
    audio = voiced.copy()
    t = np.arange(num_samples) / sample_rate
    # Breath noise riding on voicing.
    audio += voice.breathiness * _bandpass(noise, (600.0, 6000.0), sample_rate) * np.interp(
        t, t_ctrl, vowel_gain).astype(np.float32)
    # Fricatives: band-passed noise with a smooth on/off envelope.
    for name in ("s", "sh", "f"):
        present = np.array([p.name == name for p in phones])[idx]
        if not present.any():
            continue
        env = _smooth(present.astype(np.float64), 10.0, ctrl_rate) * LEVELS[name]
        band = _bandpass(np.roll(noise, 997 * len(name)), PHONES[name].band, sample_rate)
        audio += band * np.interp(t, t_ctrl, env).astype(np.float32)
    # Stops: silent closure, then a decaying burst (p aspirated, so longer) at the release.
    stops = {p.name for p in phones if PHONES[p.name].kind == "closure"}
    burst_noise = {n: _bandpass(np.roll(noise, 4001 + i), PHONES[n].band, sample_rate)
                   for i, n in enumerate(("b", "p")) if n in stops}
    for p in phones:
        if PHONES[p.name].kind != "closure":
            continue
        length = 0.012 if p.name == "b" else 0.025
        lo = round(max(p.start, p.end - length) * sample_rate)
        hi = min(num_samples, round(p.end * sample_rate))
        if hi <= lo:
            continue
        decay = np.exp(-np.arange(hi - lo) / (0.35 * length * sample_rate)).astype(np.float32)
        audio[lo:hi] += LEVELS[p.name] * decay * burst_noise[p.name][lo:hi]
    audio += NOISE_FLOOR * noise[::-1]
    peak = float(np.abs(audio).max())
    if peak > 0:
        audio *= PEAK / peak
    return np.clip(audio, -1.0, 1.0).astype(np.float32)
