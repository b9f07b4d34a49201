"""Mel windows for frames while the audio is still arriving (``lipmem infer --stream``).

Frame ``k``'s mel window is exactly the one batch inference and training use
(``WindowCutter.mel_window`` over the whole clip's log-mel); it can be computed as soon as
the audio under its last mel column has arrived: the STFT column ``j`` covers samples
``[j*hop - n_fft/2, j*hop + n_fft/2)``. So the lookahead a frame waits for is

    audio_seconds / 2 (the window is centred on the frame) + 0.5 / fps (the frame's centre)
    + n_fft / 2 / sample_rate (the last column's half-window)

= 0.1 + 0.02 + 0.025 = 0.145 s at the defaults, plus compute. Only the audio still needed is
kept, so memory stays bounded on an endless stream.
"""

from __future__ import annotations

import math

import numpy as np
import torch

from datamodules.audio_features import SILENCE
from datamodules.windows import WindowCutter


class StreamingFrameMels:
    """``push(chunk)`` -> [(frame, mel)] for every frame whose window became exact;
    ``finish()`` -> the rest, once the stream's length is known."""

    def __init__(self, cutter: WindowCutter) -> None:
        self.cutter = cutter
        self.logmel = cutter.logmel
        self.hop = self.logmel.hop_length
        self.half = self.logmel.n_fft // 2
        self.buffer = np.zeros(0, dtype=np.float32)
        self.offset = 0            # absolute index of buffer[0]
        self.received = 0          # samples pushed so far
        self.next_frame = 0
        self.finished = False

    @property
    def lookahead_seconds(self) -> float:
        c = self.cutter
        return c.audio_seconds / 2 + 0.5 / c.fps + self.half / c.sample_rate

    def _first_column(self, frame: int) -> int:
        c = self.cutter
        centre = (frame + 0.5) / c.fps
        return math.floor(centre * c.mel_fps - (c.mel_frames - 1) / 2.0 + 0.5)

    def frames_available(self, total_frames: int | None = None) -> int:
        """Frames whose windows are exact with the audio received so far."""
        if self.finished:
            return total_frames if total_frames is not None else self._frames_for_length()
        k = self.next_frame
        while True:
            last = self._first_column(k) + self.cutter.mel_frames - 1
            if last * self.hop + self.half > self.received:
                return k
            k += 1

    def _frames_for_length(self) -> int:
        return round(self.received * self.cutter.fps / self.cutter.sample_rate)

    def push(self, chunk: np.ndarray) -> list[tuple[int, np.ndarray]]:
        if self.finished:
            raise RuntimeError("push after finish")
        chunk = np.asarray(chunk, dtype=np.float32).reshape(-1)
        self.buffer = np.concatenate([self.buffer, chunk])
        self.received += chunk.size
        return self._emit(self.frames_available())

    def finish(self, total_frames: int | None = None) -> list[tuple[int, np.ndarray]]:
        """The remaining frames, up to ``total_frames`` (default: the audio's duration at the
        cutter's fps, rounded)."""
        self.finished = True
        return self._emit(self.frames_available(total_frames))

    def _emit(self, stop: int) -> list[tuple[int, np.ndarray]]:
        start = self.next_frame
        if stop <= start:
            return []
        c = self.cutter
        first = self._first_column(start)
        last = self._first_column(stop - 1) + c.mel_frames - 1
        # the segment starts on a column boundary early enough that the first needed column's
        # window, and the sample before it (pre-emphasis), lie inside it (or at the stream's
        # true start, where both computations zero-pad alike)
        col0 = max(0, first - math.ceil(self.half / self.hop) - 1)
        seg_start = col0 * self.hop
        if seg_start < self.offset:
            raise AssertionError("needed audio was dropped")  # guarded by _trim below
        seg_end = self.received if self.finished else min(self.received,
                                                            last * self.hop + self.half)
        segment = self.buffer[seg_start - self.offset:seg_end - self.offset]
        with torch.no_grad():
            mel = self.logmel(torch.from_numpy(np.ascontiguousarray(segment))).numpy()
        total_columns = (1 + self.received // self.hop) if self.finished else None
        out = []
        for k in range(start, stop):
            out.append((k, self._window(mel, col0, total_columns, self._first_column(k))))
        self.next_frame = stop
        self._trim()
        return out

    def _window(self, mel: np.ndarray, col0: int, total_columns: int | None,
                first: int) -> np.ndarray:
        m = self.cutter.mel_frames
        window = np.full((mel.shape[0], m), SILENCE, dtype=np.float32)
        for i in range(m):
            j = first + i
            if j < 0 or (total_columns is not None and j >= total_columns):
                continue  # outside the signal: silence, as mel_window pads
            window[:, i] = mel[:, j - col0]
        return window

    def _trim(self) -> None:
        """Drop audio no future frame's window can reach."""
        keep_from = max(0, self._first_column(self.next_frame)
                        - math.ceil(self.half / self.hop) - 1) * self.hop
        if keep_from > self.offset:
            self.buffer = self.buffer[keep_from - self.offset:]
            self.offset = keep_from
