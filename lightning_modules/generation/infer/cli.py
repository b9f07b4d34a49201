"""`lipmem infer --model REF --face FACE --audio AUDIO --out OUT.mp4`."""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

import torch

from datamodules.sample_limits import MAX_SOURCE_PIXELS


def add_infer_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="model reference (model-RUN:best, wandb:ENTITY/PROJECT/model-RUN:"
                             "latest) or a .ckpt file")
    parser.add_argument("--face", required=True,
                        help="video (looped/ping-ponged to the audio's length) or still image")
    parser.add_argument("--audio", required=True,
                        help="any FFmpeg-readable audio file, or - to read a stream from stdin")
    parser.add_argument("--out", required=True, help="output video (mp4: H.264 + AAC)")
    parser.add_argument("--device", default="auto", help="auto (cuda when available), cpu, cuda")
    parser.add_argument("--batch-size", type=int, default=None,
                        help="frames generated together (default 8 on CPU, where small "
                             "batches run fastest, 32 on GPUs; 4 with --stream)")
    parser.add_argument("--precision", default=None, choices=[None, "32-true", "bf16-mixed"],
                        help="bf16-mixed on GPUs")
    parser.add_argument("--stream", action="store_true",
                        help="consume the audio in chunks and write frames as soon as their "
                             "audio window is complete (bounded latency, see README)")
    parser.add_argument("--chunk-seconds", type=float, default=0.04,
                        help="--stream: audio chunk size in seconds (default one frame, 0.04)")
    parser.add_argument("--audio-format", default=None,
                        help="FFmpeg demuxer for the audio when it cannot be probed (e.g. wav, "
                             "s16le for raw PCM on stdin)")
    parser.add_argument("--face-mode", default="pingpong", choices=["pingpong", "loop"],
                        help="how a face video shorter than the audio is extended")
    parser.add_argument("--face-max-seconds", type=float, default=30.0,
                        help="decode at most this much of a face video; it is ping-ponged or "
                             "looped after that (frames are held in memory: 30 s of 720p is "
                             "about 2 GB); batch mode decodes no more than the audio needs")
    parser.add_argument("--max-pixels", type=int, default=MAX_SOURCE_PIXELS,
                        help="refuse a face image or video whose frames have more pixels, from "
                             f"its header before decoding (default {MAX_SOURCE_PIXELS}: 4096x4096)")
    parser.add_argument("--detector", default=None,
                        help="face detector class path (default: OpenCV's bundled Haar cascade)")
    parser.add_argument("--face-crop", default="detect", choices=["detect", "full"],
                        help="detect: find and track the face (default); full: the face input "
                             "already is a face crop, e.g. a clip of the synthetic corpus, and "
                             "its centred square is used as is")
    parser.add_argument("--registry", default=None,
                        help="local artifact registry (default: $LIPMEM_REGISTRY or ./artifacts)")
    parser.add_argument("--report", default=None, help="write timing/latency JSON here")


def pick_device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(name)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"--device {name}: CUDA is not available on this machine")
    return device


def same_file(a: str | os.PathLike, b: str | os.PathLike) -> bool:
    """Whether two paths name one file (through symlinks, hard links, relative paths)."""
    try:
        return os.path.samefile(a, b)
    except OSError:  # one does not exist (yet): compare where they would be
        return Path(a).resolve() == Path(b).resolve()


def check_out_is_not_an_input(args: argparse.Namespace) -> None:
    """ValueError when --out is --face or --audio: the finished video is renamed over
    --out, and the input would be gone."""
    for flag, value in (("--face", args.face), ("--audio", args.audio)):
        if value != "-" and same_file(args.out, value):
            raise ValueError(f"--out {args.out} is the same file as {flag} {value}: refusing to "
                             "overwrite an input; choose another output path")


def run_infer(args: argparse.Namespace) -> int:
    from datamodules.atomic_files import write_json_atomic
    from lightning_modules.generation.clip_generation import load_generator
    from lightning_modules.generation.infer.face_input import load_face
    from lightning_modules.generation.infer.pipeline import infer_batch, infer_stream, stream_chunks

    try:
        check_out_is_not_an_input(args)
        if args.max_pixels < 1:
            raise ValueError(f"--max-pixels={args.max_pixels}: must be >= 1")
        device = pick_device(args.device)
        model = load_generator(args.model, registry=args.registry, device=device)
        audio = None
        if not args.stream:  # batch: the audio's length bounds how much face video to decode
            from lightning_modules.generation.infer.audio_input import load_audio

            audio = load_audio(args.audio, model.geometry.sample_rate,
                               audio_format=args.audio_format)
        # a second more than the audio needs, so the track's temporal smoothing near the
        # last used frame sees the same neighbours as in stream mode
        seconds = args.face_max_seconds if audio is None else \
            min(audio.size / model.geometry.sample_rate + 1.0, args.face_max_seconds)
        face = load_face(args.face, model.geometry.fps, mode=args.face_mode,
                         detector=args.detector, crop=model.geometry.crop, max_seconds=seconds,
                         full_frame=args.face_crop == "full",
                         max_pixels=args.max_pixels)
        if args.stream:
            chunks = stream_chunks(args.audio, model.geometry.sample_rate, args.chunk_seconds,
                                   args.audio_format)
            result = infer_stream(model, face, chunks, args.out, device=device,
                                  batch_size=args.batch_size or 4, precision=args.precision)
        else:
            batch_size = args.batch_size or (32 if device.type == "cuda" else 8)
            result = infer_batch(model, face, audio, args.out, device=device,
                                 batch_size=batch_size, precision=args.precision,
                                 show_progress=sys.stderr.isatty())
    except (ValueError, FileNotFoundError) as exc:
        print(f"lipmem infer: error: {exc}", file=sys.stderr)
        return 2
    summary = {"model": args.model, "resolved": model.checkpoint, "face": args.face,
               "audio": args.audio, "device": str(device), "stream": bool(args.stream),
               **result.summary()}
    if args.report:
        write_json_atomic(args.report, summary)
    print(json.dumps(summary))
    return 0
