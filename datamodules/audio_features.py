"""Log-mel features of the driving audio, Wav2Lip-style.

16 kHz audio, 800-sample (50 ms) Hann windows every 200 samples (80 frames/s), 80 slaney
mel bands between 55 and 7600 Hz, magnitude (not power) spectrum. ``torch.stft`` runs
with ``center=True`` (zero padding), so mel frame ``j`` is centred at ``j * hop / sr``
seconds. Values are normalised with FIXED constants, not per clip: decibels relative to
``ref_level_db`` are mapped linearly from ``[min_level_db, 0]`` to ``[-4, 4]`` and clipped,
so digital silence is exactly ``-4`` (:data:`SILENCE`) in every clip and loudness
differences between clips survive.
"""

from __future__ import annotations

import math

import numpy as np
import torch

SAMPLE_RATE = 16000
N_FFT = 800
WIN_LENGTH = 800
HOP_LENGTH = 200
N_MELS = 80
FMIN = 55.0
FMAX = 7600.0
PREEMPHASIS = 0.97
MIN_LEVEL_DB = -100.0
REF_LEVEL_DB = 20.0
MAX_ABS_VALUE = 4.0
SILENCE = -MAX_ABS_VALUE  # the normalised value of silence (and of padding outside a clip)
MEL_FRAMES_PER_SECOND = SAMPLE_RATE / HOP_LENGTH  # 80


def hz_to_mel(hz: np.ndarray | float) -> np.ndarray:
    """Slaney mel scale: linear below 1 kHz (3 mels per 200 Hz), logarithmic above."""
    hz = np.asarray(hz, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(hz >= min_log_hz, min_log_mel + np.log(np.maximum(hz, 1e-10) / min_log_hz)
                    / logstep, hz / f_sp)


def mel_to_hz(mel: np.ndarray | float) -> np.ndarray:
    mel = np.asarray(mel, dtype=np.float64)
    f_sp, min_log_hz = 200.0 / 3.0, 1000.0
    min_log_mel, logstep = min_log_hz / f_sp, math.log(6.4) / 27.0
    return np.where(mel >= min_log_mel, min_log_hz * np.exp(logstep * (mel - min_log_mel)),
                    mel * f_sp)


def mel_filterbank(sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT, n_mels: int = N_MELS,
                   fmin: float = FMIN, fmax: float = FMAX) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters, slaney area normalisation (as librosa's
    default ``librosa.filters.mel``)."""
    if not 0 <= fmin < fmax <= sample_rate / 2:
        raise ValueError(f"need 0 <= fmin < fmax <= sample_rate / 2, got fmin={fmin}, "
                         f"fmax={fmax}, sample_rate={sample_rate}")
    fft_freqs = np.linspace(0.0, sample_rate / 2.0, n_fft // 2 + 1)
    edges = mel_to_hz(np.linspace(hz_to_mel(fmin), hz_to_mel(fmax), n_mels + 2))
    widths = np.diff(edges)
    ramps = edges[:, None] - fft_freqs[None, :]
    lower = -ramps[:-2] / widths[:-1, None]
    upper = ramps[2:] / widths[1:, None]
    weights = np.maximum(0.0, np.minimum(lower, upper))
    weights *= (2.0 / (edges[2:] - edges[:-2]))[:, None]
    return weights.astype(np.float32)


class LogMel(torch.nn.Module):
    """(L,) or (B, L) float audio in [-1, 1] -> (n_mels, F) or (B, n_mels, F) in [-4, 4],
    F = 1 + L // hop_length, frame j centred at ``j * hop_length / sample_rate`` s."""

    def __init__(self, sample_rate: int = SAMPLE_RATE, n_fft: int = N_FFT,
                 win_length: int = WIN_LENGTH, hop_length: int = HOP_LENGTH, n_mels: int = N_MELS,
                 fmin: float = FMIN, fmax: float = FMAX, preemphasis: float = PREEMPHASIS) -> None:
        super().__init__()
        self.sample_rate, self.n_fft, self.win_length = sample_rate, n_fft, win_length
        self.hop_length, self.n_mels, self.preemphasis = hop_length, n_mels, preemphasis
        self.register_buffer("window", torch.hann_window(win_length), persistent=False)
        basis = mel_filterbank(sample_rate, n_fft, n_mels, fmin, fmax)
        self.register_buffer("mel_basis", torch.from_numpy(basis), persistent=False)

    @property
    def frames_per_second(self) -> float:
        return self.sample_rate / self.hop_length

    def num_frames(self, num_samples: int) -> int:
        return 1 + num_samples // self.hop_length

    @staticmethod
    def normalize(db: torch.Tensor) -> torch.Tensor:
        """Fixed map of dB (relative to ``REF_LEVEL_DB``) into [-4, 4]; silence -> -4."""
        scaled = 2 * MAX_ABS_VALUE * (db - MIN_LEVEL_DB) / (-MIN_LEVEL_DB) - MAX_ABS_VALUE
        return scaled.clamp(-MAX_ABS_VALUE, MAX_ABS_VALUE)

    def forward(self, audio: torch.Tensor) -> torch.Tensor:
        if audio.dim() not in (1, 2):
            raise ValueError(f"audio must be (L,) or (B, L), got shape {tuple(audio.shape)}")
        squeeze = audio.dim() == 1
        x = audio.float()[None] if squeeze else audio.float()
        if self.preemphasis:
            x = torch.cat([x[:, :1], x[:, 1:] - self.preemphasis * x[:, :-1]], dim=1)
        spec = torch.stft(x, n_fft=self.n_fft, hop_length=self.hop_length,
                          win_length=self.win_length, window=self.window, center=True,
                          pad_mode="constant", return_complex=True).abs()
        mel = torch.matmul(self.mel_basis, spec)
        db = 20.0 * torch.log10(mel.clamp_min(1e-5)) - REF_LEVEL_DB
        out = self.normalize(db)
        return out[0] if squeeze else out
