"""`lipmem infer`: a face (video or image) + driving audio -> a lip-synced mp4 with that audio.

For every frame of the audio's duration at the model's fps: take the face frame, crop the
tracked face as in training, hide the lower half, generate with the mel window centred on
the frame, paste the generated lower face back with a feathered edge, write the frame.
Batch mode reads the whole audio first; stream mode consumes audio chunks as they arrive
and writes each frame once the audio its window needs is there (lookahead in
lightning_modules.generation.infer.streaming_mels).
"""

from __future__ import annotations

import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.media_writer import VideoWriter
from lightning_modules.generation.clip_generation import (
    LoadedGenerator,
    frame_mels,
    generate_frames,
)
from lightning_modules.generation.infer.audio_input import iter_audio, load_audio
from lightning_modules.generation.infer.face_input import FaceSource
from lightning_modules.generation.infer.paste import feather_mask, paste_face
from lightning_modules.generation.infer.streaming_mels import StreamingFrameMels


@dataclass
class InferResult:
    out: Path
    frames: int
    audio_seconds: float
    seconds: float
    latencies: list[float] = field(default_factory=list)  # stream mode: per-frame seconds

    @property
    def fps(self) -> float:
        return self.frames / self.seconds if self.seconds > 0 else float("nan")

    def summary(self) -> dict[str, Any]:
        out = {"out": str(self.out), "frames": self.frames,
               "audio_seconds": round(self.audio_seconds, 4),
               "wall_seconds": round(self.seconds, 3), "frames_per_second": round(self.fps, 2)}
        if self.latencies:
            lat = np.asarray(self.latencies) * 1000.0
            out["latency_ms"] = {"median": round(float(np.median(lat)), 2),
                                 "p95": round(float(np.percentile(lat, 95)), 2),
                                 "max": round(float(lat.max()), 2)}
        return out


class FrameRenderer:
    """Generates and pastes batches of output frames."""

    def __init__(self, model: LoadedGenerator, face: FaceSource, *, device: torch.device,
                 batch_size: int, precision: str | None = None, feather: float = 0.06) -> None:
        self.model = model
        self.face = face
        self.device = device
        self.batch_size = batch_size
        self.precision = precision
        self.size = model.geometry.image_size
        self.mask = model.geometry.lower_face_mask().numpy()
        self.feather = feather
        self._alphas: dict[int, np.ndarray] = {}

    def _alpha(self, side: int) -> np.ndarray:
        if side not in self._alphas:
            self._alphas[side] = feather_mask(self.mask, side, self.feather)
        return self._alphas[side]

    def render(self, indices: list[int], mels: np.ndarray) -> np.ndarray:
        """Full output frames (N, H, W, 3) for output frame ``indices``."""
        faces = np.stack([self.face.crop(k, self.size) for k in indices])
        # reference-frame models get the unmasked input frame itself (as Wav2Lip does at
        # inference): its mouth is not the target's, only the pose and identity matter
        refs = faces if self.model.generator.use_reference else None
        generated = generate_frames(self.model.generator, faces, mels, self.mask,
                                    references=refs, batch_size=self.batch_size,
                                    device=self.device, precision=self.precision).images
        out = []
        for k, image in zip(indices, generated, strict=True):
            box = self.face.box(k)
            out.append(paste_face(self.face.frame(k), image, box, self._alpha(box[2] - box[0])))
        return np.stack(out)


def _progress(description: str) -> Any:
    from rich.progress import (
        BarColumn,
        MofNCompleteColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
    )

    return Progress(TextColumn(description), BarColumn(), MofNCompleteColumn(),
                    TimeRemainingColumn(), transient=False)


def infer_batch(model: LoadedGenerator, face: FaceSource, audio: str | Path | np.ndarray,
                out: str | Path, *, device: torch.device, batch_size: int = 32,
                precision: str | None = None, show_progress: bool = True) -> InferResult:
    """Whole audio first (a file, or samples at the model's rate), then every frame in
    batches."""
    geometry = model.geometry
    started = time.perf_counter()
    if not isinstance(audio, np.ndarray):
        audio = load_audio(audio, geometry.sample_rate)
    frames = max(1, round(audio.size * geometry.fps / geometry.sample_rate))
    mels = frame_mels(audio, frames, geometry.cutter())
    renderer = FrameRenderer(model, face, device=device, batch_size=batch_size,
                             precision=precision)
    progress = _progress("lipmem infer") if show_progress else None
    with VideoWriter(out, fps=geometry.fps, sample_rate=geometry.sample_rate) as writer:
        task = progress.add_task("frames", total=frames) if progress else None
        if progress:
            progress.start()
        try:
            for start in range(0, frames, batch_size):
                indices = list(range(start, min(start + batch_size, frames)))
                writer.add_frames(renderer.render(indices, mels[indices[0]:indices[-1] + 1]))
                if progress:
                    progress.update(task, advance=len(indices))
        finally:
            if progress:
                progress.stop()
        writer.add_audio(audio)
    return InferResult(Path(out), frames, audio.size / geometry.sample_rate,
                       time.perf_counter() - started)


def infer_stream(model: LoadedGenerator, face: FaceSource, chunks: Iterator[np.ndarray],
                 out: str | Path, *, device: torch.device, batch_size: int = 8,
                 precision: str | None = None) -> InferResult:
    """Frames as soon as their audio window is complete; ``batch_size`` caps how many ready
    frames are generated together (smaller = lower latency, larger = higher throughput).
    Per-frame latency = time from the arrival of the audio that completed the frame's
    window to the frame being written."""
    geometry = model.geometry
    started = time.perf_counter()
    mels_stream = StreamingFrameMels(geometry.cutter())
    renderer = FrameRenderer(model, face, device=device, batch_size=batch_size,
                             precision=precision)
    latencies: list[float] = []
    written = 0
    samples = 0

    def flush(ready: list[tuple[int, np.ndarray]], arrived: float, writer: VideoWriter) -> None:
        nonlocal written
        for i in range(0, len(ready), batch_size):
            part = ready[i:i + batch_size]
            frames = renderer.render([k for k, _ in part], np.stack([m for _, m in part]))
            writer.add_frames(frames)
            done = time.perf_counter()
            latencies.extend([done - arrived] * len(part))
            written += len(part)

    with VideoWriter(out, fps=geometry.fps, sample_rate=geometry.sample_rate) as writer:
        for chunk in chunks:
            arrived = time.perf_counter()
            samples += chunk.size
            writer.add_audio(chunk)
            flush(mels_stream.push(chunk), arrived, writer)
        if samples == 0:
            raise ValueError("the audio stream ended before any sample arrived")
        flush(mels_stream.finish(), time.perf_counter(), writer)
    return InferResult(Path(out), written, samples / geometry.sample_rate,
                       time.perf_counter() - started, latencies)


def rechunk(chunks: Iterator[np.ndarray], size: int) -> Iterator[np.ndarray]:
    """Fixed-size chunks (the last one shorter): a live source delivers audio this way."""
    pending = np.zeros(0, np.float32)
    for chunk in chunks:
        pending = np.concatenate([pending, chunk])
        while pending.size >= size:
            yield pending[:size]
            pending = pending[size:]
    if pending.size:
        yield pending


def stream_chunks(audio_path: str | Path, sample_rate: int, chunk_seconds: float,
                  audio_format: str | None = None) -> Iterator[np.ndarray]:
    return rechunk(iter_audio(audio_path, sample_rate, audio_format=audio_format),
                   max(1, round(chunk_seconds * sample_rate)))
