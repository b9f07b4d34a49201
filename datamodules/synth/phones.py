"""The phone inventory of the synthetic corpus and random phone sequences.

Audio and video are both rendered from one timed phone sequence, so every phone carries
what each renderer needs: a mouth target (what the face shows) and an acoustic recipe
(what the speech synthesiser plays). Keeping both in one table is what makes the mouth
predictable from the audio, which is the property a lip-sync model has to learn.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np

PhoneKind = Literal["vowel", "closure", "nasal", "fricative", "pause"]


@dataclass(frozen=True)
class Phone:
    """One phone: its mouth target (openness, width, roundness in [0, 1]) and acoustics."""

    name: str
    kind: PhoneKind
    openness: float
    width: float
    roundness: float
    formants: tuple[float, float, float] = (500.0, 1500.0, 2500.0)  # F1-F3 in Hz (vowels)
    band: tuple[float, float] = (0.0, 0.0)  # noise band in Hz (fricatives, bursts)
    duration: tuple[float, float] = (0.08, 0.16)  # seconds, sampled uniformly

    @property
    def mouth(self) -> tuple[float, float, float]:
        return (self.openness, self.width, self.roundness)


# Mouth targets follow visemes: closures are shut, 'a' wide open, 'i' spread, 'o'/'u' round.
# Formants are adult averages; speakers scale them (vocal-tract length) in speech.py.
PHONES: dict[str, Phone] = {
    p.name: p
    for p in (
        Phone("sil", "pause", 0.00, 0.45, 0.25, duration=(0.06, 0.50)),
        Phone("a", "vowel", 0.92, 0.62, 0.15, (800.0, 1250.0, 2600.0), duration=(0.10, 0.22)),
        Phone("e", "vowel", 0.50, 0.68, 0.12, (500.0, 1850.0, 2550.0), duration=(0.09, 0.18)),
        Phone("i", "vowel", 0.22, 0.95, 0.03, (300.0, 2250.0, 3000.0), duration=(0.09, 0.18)),
        Phone("o", "vowel", 0.55, 0.30, 0.80, (500.0, 900.0, 2450.0), duration=(0.10, 0.20)),
        Phone("u", "vowel", 0.28, 0.12, 0.98, (320.0, 800.0, 2300.0), duration=(0.09, 0.18)),
        Phone("b", "closure", 0.00, 0.50, 0.30, band=(400.0, 4000.0), duration=(0.06, 0.10)),
        Phone("p", "closure", 0.00, 0.50, 0.30, band=(800.0, 6000.0), duration=(0.07, 0.12)),
        Phone("m", "nasal", 0.00, 0.50, 0.30, (260.0, 1100.0, 2400.0), duration=(0.06, 0.11)),
        Phone("s", "fricative", 0.15, 0.78, 0.08, band=(4200.0, 7500.0), duration=(0.09, 0.16)),
        Phone("f", "fricative", 0.05, 0.55, 0.15, band=(1200.0, 7000.0), duration=(0.08, 0.14)),
        Phone("sh", "fricative", 0.20, 0.35, 0.72, band=(1800.0, 4800.0), duration=(0.09, 0.16)),
    )
}
VOWELS = tuple(n for n, p in PHONES.items() if p.kind == "vowel")
CONSONANTS = tuple(n for n, p in PHONES.items() if p.kind not in ("vowel", "pause"))
CODAS = ("m", "s", "f", "sh")  # consonants that may close a syllable
CLOSED = tuple(n for n, p in PHONES.items() if p.openness == 0.0)  # sil, b, p, m


@dataclass(frozen=True)
class TimedPhone:
    """A phone occupying [start, end) seconds of a clip."""

    name: str
    start: float
    end: float

    @property
    def phone(self) -> Phone:
        return PHONES[self.name]

    def as_list(self) -> list:
        return [self.name, round(self.start, 5), round(self.end, 5)]


def _duration(rng: np.random.Generator, name: str, rate: float) -> float:
    low, high = PHONES[name].duration
    return float(rng.uniform(low, high)) / rate


def _word(rng: np.random.Generator) -> list[str]:
    """1-3 syllables of (C)V(C): mostly consonant+vowel, sometimes a closing consonant."""
    names: list[str] = []
    for _ in range(int(rng.integers(1, 4))):
        if rng.random() < 0.8:
            names.append(str(rng.choice(CONSONANTS)))
        names.append(str(rng.choice(VOWELS)))
        if rng.random() < 0.15:
            names.append(str(rng.choice(CODAS)))
    return names


def sample_phones(rng: np.random.Generator, duration: float, rate: float = 1.0) -> list[TimedPhone]:
    """A contiguous timed phone sequence covering exactly [0, duration) seconds.

    Words are separated by pauses of varying length (short gaps to breath pauses); the clip
    starts and ends in silence-or-speech as the draw falls. ``rate`` > 1 speaks faster.
    """
    if duration <= 0:
        raise ValueError(f"duration must be positive, got {duration}")
    out: list[TimedPhone] = []
    t = 0.0

    def add(name: str, length: float) -> None:
        nonlocal t
        out.append(TimedPhone(name, t, t + length))
        t += length

    add("sil", float(rng.uniform(0.05, 0.40)))
    while t < duration:
        for name in _word(rng):
            add(name, _duration(rng, name, rate))
        gap = rng.random()
        if gap < 0.25:
            continue  # words run together
        pause = rng.uniform(0.05, 0.15) if gap < 0.8 else rng.uniform(0.25, 0.7)
        add("sil", float(pause))
    # Trim to the clip: drop phones past the end, cut the last one at `duration`.
    kept = [p for p in out if p.start < duration]
    last = kept[-1]
    kept[-1] = TimedPhone(last.name, last.start, float(duration))
    return kept


def phone_index_at(phones: list[TimedPhone], times: np.ndarray) -> np.ndarray:
    """Index into ``phones`` of the phone active at each time (clamped to the sequence)."""
    starts = np.array([p.start for p in phones])
    return np.clip(np.searchsorted(starts, times, side="right") - 1, 0, len(phones) - 1)
