"""SyncNet-style audio-visual embedding pair: is this mouth saying this sound right now?

Two towers map a short window of lower-face crops and the mel span around the window's
centre frame into one unit-sphere embedding space; in-sync pairs end up close, off-sync
pairs far apart (Chung & Zisserman's SyncNet, Wav2Lip's expert). It is a judge for
generated video (LSE-D / LSE-C in ``lipmem eval``) and optionally a generator loss, so it
only sees what a lip reader needs: the lower half of the face, ``window`` frames stacked
on channels, and the mel window of the window's centre frame (``audio_seconds`` wide,
0.2 s = the 5 frames at 25 fps).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


def _block(cin: int, cout: int, stride: int | tuple[int, int]) -> nn.Sequential:
    return nn.Sequential(nn.Conv2d(cin, cout, 3, stride, 1, bias=False), nn.BatchNorm2d(cout),
                         nn.ReLU(inplace=True))


def _tower(cin: int, channels: list[int], strides: list[int | tuple[int, int]],
           embed_dim: int) -> nn.Sequential:
    layers: list[nn.Module] = []
    for cout, stride in zip(channels, strides, strict=True):
        layers.append(_block(cin, cout, stride))
        cin = cout
    return nn.Sequential(*layers, nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                         nn.Linear(cin, embed_dim))


class SyncNet(nn.Module):
    """faces (B, W, 3, S, S) in [0, 1] -> (B, D); mels (B, n_mels, mel_frames) -> (B, D);
    both L2-normalised, so cosine similarity is a dot product and distances lie in [0, 2]."""

    def __init__(self, image_size: int = 96, window: int = 5, n_mels: int = 80,
                 mel_frames: int = 16, embed_dim: int = 256, base_channels: int = 32,
                 max_channels: int = 256, face_layers: int = 5, audio_layers: int = 4) -> None:
        config = {k: v for k, v in locals().items() if k not in ("self", "__class__")}
        super().__init__()
        for name, value, low in (("image_size", image_size, 8), ("window", window, 1),
                                 ("n_mels", n_mels, 1), ("mel_frames", mel_frames, 1),
                                 ("embed_dim", embed_dim, 1), ("base_channels", base_channels, 1),
                                 ("face_layers", face_layers, 1),
                                 ("audio_layers", audio_layers, 1)):
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"SyncNet {name}={value!r}: must be an integer >= {low}")
        self.config = config  # saved in checkpoints so the expert is rebuilt without code
        self.image_size, self.window = image_size, window
        self.n_mels, self.mel_frames, self.embed_dim = n_mels, mel_frames, embed_dim
        widths = [min(base_channels * 2 ** i, max_channels) for i in range(max(face_layers,
                                                                              audio_layers))]
        # the lower half is S/2 x S: the first stride halves the width only
        self.face = _tower(3 * window, widths[:face_layers],
                           [(1, 2)] + [2] * (face_layers - 1), embed_dim)
        # mel (80 x 16): halve frequency first, time later (only 16 columns)
        self.audio = _tower(1, widths[:audio_layers],
                            [(2, 1)] + [2] * (audio_layers - 1), embed_dim)

    def lower_half(self, faces: torch.Tensor) -> torch.Tensor:
        """(B, W, 3, S, S) -> (B, 3W, S - S//2, S): the rows from the middle down."""
        if faces.dim() != 5 or faces.shape[1] != self.window or faces.shape[2] != 3 \
                or faces.shape[-1] != self.image_size or faces.shape[-2] != self.image_size:
            raise ValueError(f"SyncNet faces must be (B, {self.window}, 3, {self.image_size}, "
                             f"{self.image_size}), got {tuple(faces.shape)}")
        return faces[..., self.image_size // 2:, :].flatten(1, 2)

    def embed_faces(self, faces: torch.Tensor) -> torch.Tensor:
        return F.normalize(self.face(self.lower_half(faces) - 0.5), dim=-1)

    def embed_audio(self, mels: torch.Tensor) -> torch.Tensor:
        if mels.dim() == 4 and mels.shape[1] == 1:
            mels = mels[:, 0]
        if mels.dim() != 3 or mels.shape[1:] != (self.n_mels, self.mel_frames):
            raise ValueError(f"SyncNet mels must be (B, {self.n_mels}, {self.mel_frames}), got "
                             f"{tuple(mels.shape)}")
        return F.normalize(self.audio(mels[:, None] / 4.0), dim=-1)  # log-mel lies in [-4, 4]

    def forward(self, faces: torch.Tensor, mels: torch.Tensor) -> torch.Tensor:
        """Cosine similarity per pair, (B,)."""
        return (self.embed_faces(faces) * self.embed_audio(mels)).sum(-1)


def centre_window(x: torch.Tensor, window: int) -> torch.Tensor:
    """(B, T, ...) -> (B, window, ...): the ``window`` frames around the centre frame T // 2."""
    t = x.shape[1]
    if t < window:
        raise ValueError(f"the batch has frames_per_window={t}, the sync expert needs at least "
                         f"its window={window} (set data.frames_per_window)")
    first = t // 2 - window // 2
    return x[:, first:first + window]
