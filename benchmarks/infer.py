"""`lipmem infer` speed: batch frames/s at 96 and 256 px, and per-frame latency in stream mode.

The generator is the default configuration (configs/default.yaml) with random weights and
random memory codes: speed does not depend on what the weights learned. The face is a
still photograph (scikit-image's astronaut, 512 x 512, detected once); the audio is 10 s of a
harmonic buzz with a syllable-rate envelope. Batch figures cover everything after the model
and the face are loaded: audio decode, mels, generation, feathered paste-back into the full
frame and H.264 + AAC encoding. Stream mode feeds 40 ms chunks paced at real time and
measures, per frame, the time from the arrival of the chunk that completed the frame's audio
window to the frame being written; the algorithmic lookahead (0.145 s) comes on top.

    python -m benchmarks.infer [--seconds 10] [--sizes 96 256] [--device cpu]
"""

from __future__ import annotations

import argparse
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import torch
import yaml
from PIL import Image

from benchmarks.common import write_result
from datamodules.sample_format import encode_wav
from lightning_modules.generation.clip_generation import (
    MODEL_RECORD_KEY,
    load_generator,
    model_record,
)
from lightning_modules.generation.infer.face_input import load_face
from lightning_modules.generation.infer.pipeline import infer_batch, infer_stream, rechunk
from lightning_modules.lipsync_gan import LipSyncGAN
from lightning_modules.losses import LipSyncLoss
from lightning_modules.nets import LipSyncGenerator
from memory_bank.memory_config import MemoryConfig

REPO = Path(__file__).resolve().parent.parent


def default_generator(image_size: int, overlay: str | None = None) -> LipSyncGenerator:
    """configs/default.yaml's generator, with an overlay config's generator arguments."""
    args: dict = {}
    for name in ["default.yaml"] + ([overlay] if overlay else []):
        config = yaml.safe_load((REPO / "configs" / name).read_text())
        args.update(config["model"]["generator"]["init_args"])
    generator = LipSyncGenerator(image_size=image_size, **args)
    generator.memory.load_codes(torch.randn(generator.num_codes, generator.memory.code_dim))
    return generator


def write_checkpoint(generator: LipSyncGenerator, path: Path) -> Path:
    module = LipSyncGAN(generator, LipSyncLoss(lpips_backbone="random"),
                        memory=MemoryConfig(source="bootstrap"))
    geometry = model_record(generator)
    torch.save({"state_dict": module.state_dict(), "global_step": 0, "epoch": 0,
                MODEL_RECORD_KEY: geometry}, path)
    return path


def speech_like(seconds: float, sample_rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * sample_rate)) / sample_rate
    buzz = sum(np.sin(2 * np.pi * 120 * h * t) / h for h in range(1, 12))
    envelope = np.clip(np.sin(2 * np.pi * 4.0 * t), 0, None) * (np.sin(2 * np.pi * 0.3 * t) > -0.6)
    return (0.2 * buzz * envelope).astype(np.float32)


def paced(audio: np.ndarray, sample_rate: int, chunk: int) -> Iterator[np.ndarray]:
    """Chunks released no faster than real time, as from a microphone."""
    start = time.perf_counter()
    for i, part in enumerate(rechunk(iter([audio]), chunk)):
        due = start + (i + 1) * chunk / sample_rate
        wait = due - time.perf_counter()
        if wait > 0:
            time.sleep(wait)
        yield part


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument("--sizes", type=int, nargs="+", default=[96, 256])
    parser.add_argument("--slim", type=int, nargs="*", default=[96],
                        help="sizes also measured with configs/quickstart.yaml's slim generator")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="default: lipmem infer's (8 on CPU, 32 on GPUs)")
    parser.add_argument("--repeats", type=int, default=3,
                        help="batch runs per size after the warm-up; the median is reported")
    parser.add_argument("--stream-seconds", type=float, default=6.0)
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--name", default=None, help="result file name (default infer_<device>)")
    args = parser.parse_args()
    device = torch.device(args.device)
    args.batch_size = args.batch_size or (32 if device.type == "cuda" else 8)
    results: dict[str, object] = {
        "what": "lipmem infer after model + face are loaded: audio decode, mels, generation, "
                "paste-back, H.264+AAC encode; default generator config, random weights; "
                "batch figure = median of the repeats after one warm-up",
        "face": "skimage astronaut still, 512x512", "audio_seconds": args.seconds,
        "batch_size": args.batch_size, "device": str(device), "sizes": {}}
    from skimage import data as skdata

    with tempfile.TemporaryDirectory() as tmp_name:
        tmp = Path(tmp_name)
        face_path = tmp / "face.png"
        Image.fromarray(skdata.astronaut()).save(face_path)
        audio = speech_like(args.seconds)
        audio_path = tmp / "audio.wav"
        audio_path.write_bytes(encode_wav(audio, 16000))
        jobs = [(str(size), size, None) for size in args.sizes]
        jobs += [(f"{size}_slim", size, "quickstart.yaml") for size in args.slim]
        for key, size, overlay in jobs:
            model = load_generator(write_checkpoint(default_generator(size, overlay),
                                                    tmp / f"{key}.ckpt"), device=device)
            face = load_face(face_path, 25)
            infer_batch(model, face, audio_path, tmp / "warmup.mp4", device=device,
                        batch_size=args.batch_size, show_progress=False)  # warm-up
            runs = [infer_batch(model, face, audio_path, tmp / "out.mp4", device=device,
                                batch_size=args.batch_size, show_progress=False)
                    for _ in range(max(1, args.repeats))]
            batch = sorted(runs, key=lambda r: r.fps)[len(runs) // 2]  # the median run
            stream_audio = audio[:int(args.stream_seconds * 16000)]
            stream = infer_stream(model, face, paced(stream_audio, 16000, 640), tmp / "s.mp4",
                                  device=device, batch_size=4)
            entry = {"batch": batch.summary(),
                     "batch_fps_all_runs": [round(r.fps, 2) for r in runs],
                     "stream": stream.summary(),
                     "real_time_factor_batch": round(batch.fps / 25.0, 2),
                     "stream_lookahead_seconds": 0.145}
            entry["generator"] = "configs/default.yaml" + (f" + {overlay}" if overlay else "")
            results["sizes"][key] = entry
            print(key, entry)
    results["target"] = {"96px_batch_fps_at_least": 25.0,
                         "met": results["sizes"].get("96", {}).get("batch", {}).get(
                             "frames_per_second", 0) >= 25.0}
    write_result(args.name or f"infer_{device.type}", results)


if __name__ == "__main__":
    main()
