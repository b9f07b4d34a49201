"""`lipmem eval --model REF --data ROOT [--sync-expert REF] ...` (argparse)."""

from __future__ import annotations

import argparse
from pathlib import Path

from lightning_modules.evaluation.mouth_metrics import CLOSED_BELOW, SILENCE_DB
from lightning_modules.evaluation.sync_scores import VSHIFT
from lightning_modules.losses.perceptual import BACKBONES


def _positive_int(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not an integer") from None
    if value < 1:
        raise argparse.ArgumentTypeError(f"{text!r}: must be >= 1")
    return value


def add_eval_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--model", required=True,
                        help="generator: model-RUN:best, model-RUN:v3, wandb:E/P/model-RUN:latest "
                             "or a .ckpt file")
    parser.add_argument("--data", required=True, help="corpus folder holding manifest.json")
    parser.add_argument("--split", default="test", choices=("train", "val", "test"),
                        help="split to evaluate on (default: test)")
    parser.add_argument("--sync-expert", default=None,
                        help="sync expert for LSE-D/LSE-C: syncnet-RUN:best or a .ckpt file "
                             "(default: none, sync scores skipped)")
    parser.add_argument("--out", default="eval", help="folder for eval.json and eval.md "
                                                      "(default: ./eval)")
    parser.add_argument("--device", default="cpu", help="torch device (default: cpu)")
    parser.add_argument("--batch-size", type=_positive_int, default=32,
                        help="frames per forward pass (default: 32)")
    parser.add_argument("--lpips-backbone", default="auto", choices=BACKBONES,
                        help="perceptual distance: pretrained = LPIPS, needs $TORCH_HOME/hub/"
                             "checkpoints/alexnet-owt-7be5be79.pth; stlpips = ST-LPIPS "
                             "(shift-tolerant, weights ship with stlpips-pytorch, reported as "
                             "stlpips_*); auto = pretrained if present, else stlpips; random "
                             "is for tests only (default: auto)")
    parser.add_argument("--max-clips", type=_positive_int, default=None,
                        help="evaluate at most N clips of the split (default: all)")
    parser.add_argument("--registry", default=None,
                        help="local artifact registry (default: $LIPMEM_REGISTRY or ./artifacts)")
    parser.add_argument("--vshift", type=_positive_int, default=VSHIFT,
                        help=f"audio offsets searched for LSE, +-frames (default: {VSHIFT})")
    parser.add_argument("--silence-db", type=float, default=SILENCE_DB,
                        help=f"a frame is silent below this RMS in dBFS (default: {SILENCE_DB})")
    parser.add_argument("--closed-below", type=float, default=CLOSED_BELOW,
                        help=f"a mouth is closed below this openness (default: {CLOSED_BELOW})")


def run_eval(args: argparse.Namespace) -> int:
    from lightning_modules.evaluation.report import JSON_NAME, MARKDOWN_NAME, markdown_table
    from lightning_modules.evaluation.runner import EvalSettings, evaluate

    if not Path(args.data).is_dir():
        raise SystemExit(f"lipmem eval: --data {args.data!r} is not a folder (expected a corpus "
                         "folder holding manifest.json)")
    settings = EvalSettings(model=args.model, data=args.data, split=args.split,
                            sync_expert=args.sync_expert, out=args.out, device=args.device,
                            batch_size=args.batch_size, lpips_backbone=args.lpips_backbone,
                            max_clips=args.max_clips, registry=args.registry,
                            vshift=args.vshift, silence_db=args.silence_db,
                            closed_below=args.closed_below)
    try:
        report = evaluate(settings)
    except (ValueError, FileNotFoundError, KeyError) as exc:  # bad references or data
        raise SystemExit(f"lipmem eval: {exc}") from exc
    print(markdown_table(report))
    print(f"lipmem: wrote {Path(args.out) / JSON_NAME} and {Path(args.out) / MARKDOWN_NAME}")
    return 0
