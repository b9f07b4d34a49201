"""Per-frame mouth track (openness, width, roundness) from a timed phone sequence.

Lips do not jump between visemes: neighbouring phones blend (coarticulation). We hold each
phone's target as a step signal at a fine control rate, smooth it with a Gaussian
(~28 ms), and sample at video frame centres. Bilabials and silence are different: the lips
really do shut there, so openness is additionally gated to zero inside those phones. The
result is a pure function of the phones (hence of the audio), never of wall time.
"""

from __future__ import annotations

import numpy as np
from scipy.ndimage import gaussian_filter1d

from datamodules.synth.phones import CLOSED, PHONES, TimedPhone, phone_index_at

CONTROL_RATE = 1000  # Hz; 1 ms resolution is far finer than any phone
SMOOTH_MS = 28.0  # coarticulation blur of the articulatory targets
CLOSURE_SMOOTH_MS = 9.0  # how quickly lips seal into / release out of a closure


def control_times(duration: float, rate: int = CONTROL_RATE) -> np.ndarray:
    """Centres of the control-rate cells covering [0, duration)."""
    return (np.arange(int(np.ceil(duration * rate))) + 0.5) / rate


def articulation(phones: list[TimedPhone], duration: float, rate: int = CONTROL_RATE) -> np.ndarray:
    """Smoothed (C, 3) mouth track at ``rate`` Hz, C = ceil(duration * rate)."""
    times = control_times(duration, rate)
    idx = phone_index_at(phones, times)
    targets = np.array([PHONES[p.name].mouth for p in phones], dtype=np.float64)[idx]
    track = gaussian_filter1d(targets, sigma=SMOOTH_MS * rate / 1000.0, axis=0, mode="nearest")
    closed = np.array([p.name in CLOSED for p in phones])[idx]
    gate = gaussian_filter1d((~closed).astype(np.float64), CLOSURE_SMOOTH_MS * rate / 1000.0,
                             mode="nearest")
    track[:, 0] *= gate
    return np.clip(track, 0.0, 1.0)


def sample_at(track: np.ndarray, times: np.ndarray, rate: int = CONTROL_RATE) -> np.ndarray:
    """Linearly interpolate a control-rate track (C, D) at arbitrary times (seconds)."""
    grid = control_times(track.shape[0] / rate, rate)
    return np.stack([np.interp(times, grid, track[:, d]) for d in range(track.shape[1])], axis=1)


def frame_track(control: np.ndarray, num_frames: int, fps: int,
                rate: int = CONTROL_RATE) -> np.ndarray:
    """float32 (num_frames, 3): the control track sampled at frame centres (i + 0.5) / fps."""
    times = (np.arange(num_frames) + 0.5) / fps
    return sample_at(control, times, rate).astype(np.float32)


def mouth_track(phones: list[TimedPhone], num_frames: int, fps: int) -> np.ndarray:
    """Convenience: the per-frame track of a clip of ``num_frames`` frames."""
    return frame_track(articulation(phones, num_frames / fps), num_frames, fps)
