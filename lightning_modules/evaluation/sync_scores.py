"""LSE-D and LSE-C (Wav2Lip's "lip-sync error" scores) with lipmem's sync expert.

As in Wav2Lip's syncnet_python evaluation, per clip: embed every full window of ``window``
frames (centre frame c) and the audio centred on every frame; for each offset o in
``-vshift..vshift`` the mean over windows of the distance between the window at c and the
audio at c + o (silence beyond the clip's audio, as their zero padding); then

* LSE-D = the minimum over offsets of that mean distance (lower = better sync),
* LSE-C = median over offsets minus that minimum (higher = a clearer sync peak),

and both are averaged over clips. Both are, by definition, blind to a constant audio delay
inside the searched range (a 10-frame shift moves the minimum to offset -10 and leaves it
almost unchanged), so two more numbers are reported: the distance at offset 0
(``lse_d_offset0``, "in sync as presented") and the mean |best offset| (``lse_abs_offset``).
Distances are Euclidean between L2-normalised embeddings
(so in [0, 2]; SyncNet's unnormalised ones are not comparable in scale, only in direction).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from lightning_modules.generation.clip_generation import frame_mels
from lightning_modules.nets.sync_net import SyncNet

VSHIFT = 15


@dataclass
class SyncScore:
    distance: float     # LSE-D of the clip
    confidence: float   # LSE-C of the clip
    offset: int         # the offset (frames) with the minimum mean distance
    distance_at_0: float  # the mean distance at offset 0 (audio as given)
    curve: np.ndarray   # mean distance per offset, (2 * vshift + 1,)


def _embed(fn, x: np.ndarray, batch_size: int, device: torch.device) -> torch.Tensor:
    out = [fn(torch.from_numpy(np.ascontiguousarray(x[i:i + batch_size])).to(device).float())
           for i in range(0, x.shape[0], batch_size)]
    return torch.cat(out)


@torch.no_grad()
def clip_sync_score(net: SyncNet, frames: np.ndarray, audio: np.ndarray, cutter, *,
                    shift: int = 0, vshift: int = VSHIFT, batch_size: int = 64,
                    device: str | torch.device = "cpu") -> SyncScore:
    """LSE-D / LSE-C of one clip: ``frames`` uint8 (T, S, S, 3), ``audio`` the clip's
    samples, ``cutter`` a WindowCutter with the expert's geometry; ``shift`` takes the audio
    from ``shift`` frames later (to score deliberately off-sync audio)."""
    device = torch.device(device)
    w, n = net.window, frames.shape[0]
    if n < w:
        raise ValueError(f"a clip of {n} frames is shorter than the sync expert's window {w}")
    if frames.shape[1:] != (net.image_size, net.image_size, 3):
        raise ValueError(f"frames are {frames.shape[1:]}, the sync expert expects "
                         f"({net.image_size}, {net.image_size}, 3)")
    if cutter.mel_frames != net.mel_frames:
        raise ValueError(f"the cutter gives {cutter.mel_frames} mel frames per window, the sync "
                         f"expert expects {net.mel_frames} (audio_seconds differs)")
    net = net.eval().to(device)
    faces = np.ascontiguousarray(frames.transpose(0, 3, 1, 2)).astype(np.float32) / 255.0
    centres = np.arange(w // 2, n - w + w // 2 + 1)  # centre frame of every full window
    windows = np.stack([faces[c - w // 2:c - w // 2 + w] for c in centres])
    video = _embed(net.embed_faces, windows, batch_size, device)
    # audio for frames -vshift .. n - 1 + vshift (index j <-> frame j - vshift)
    mels = frame_mels(audio, n + 2 * vshift, cutter, shift=shift - vshift)
    sound = _embed(net.embed_audio, mels, batch_size, device)
    offsets = np.arange(-vshift, vshift + 1)
    idx = torch.as_tensor(centres[None, :] + offsets[:, None] + vshift, device=device)
    dists = (video[None] - sound[idx]).norm(dim=-1).mean(dim=1).cpu().numpy()
    best = int(np.argmin(dists))
    return SyncScore(float(dists[best]), float(np.median(dists) - dists[best]),
                     int(offsets[best]), float(dists[vshift]), dists)


class SyncScores:
    """Averages LSE-D / LSE-C over clips."""

    def __init__(self) -> None:
        self.scores: list[SyncScore] = []

    def update(self, score: SyncScore) -> None:
        self.scores.append(score)

    def compute(self) -> dict[str, float]:
        if not self.scores:
            raise ValueError("SyncScores.compute() before any clip was scored")
        return {"lse_d": float(np.mean([s.distance for s in self.scores])),
                "lse_c": float(np.mean([s.confidence for s in self.scores])),
                "lse_d_offset0": float(np.mean([s.distance_at_0 for s in self.scores])),
                "lse_abs_offset": float(np.mean([abs(s.offset) for s in self.scores]))}
