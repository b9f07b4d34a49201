"""eval.json and eval.md: the one stable record of an evaluation.

``eval.json`` (read by the ablation runner; keep this shape)::

    {
      "model": "model-abc:best",            # the reference evaluated, as given
      "data": {"root", "split", "manifest_sha256", "clips", "frames",
               "settings": {...eval options...}, "model_info": {...},
               "perceptual": {"metric", "net", "backbone"}, "sync_expert": ...},
      "metrics": {flat name -> float},      # generated frames
      "ground_truth": {flat name -> float}, # the same measures on the ground-truth video
      "notes": [str, ...]                   # what was skipped or needs care, and why
    }

Metric names: psnr_face, ssim_face, lpips_face, psnr_mouth, ssim_mouth, lpips_mouth
(generated vs ground truth, so no ground-truth column; stlpips_face/stlpips_mouth instead of
the lpips ones when ST-LPIPS measured them, a different metric on a different scale), lse_d, lse_c, lse_d_offset0,
lse_abs_offset (with a sync expert), openness_mae, silent_closed_share (with a mouth track; ground_truth adds
silent_closed_share_track and silent_frame_share), fid (with Inception weights). A metric
that could not be computed is absent, with a note. Both files are written atomically.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

from datamodules.atomic_files import atomic_path, write_json_atomic

JSON_NAME = "eval.json"
MARKDOWN_NAME = "eval.md"
TOP_LEVEL_KEYS = ("model", "data", "metrics", "ground_truth", "notes")
# how to read each metric: (description, better)
DESCRIPTIONS = {
    "psnr_face": ("PSNR, full face (dB, per frame, capped at 100)", "higher"),
    "ssim_face": ("SSIM, full face", "higher"),
    "lpips_face": ("LPIPS, full face", "lower"),
    "psnr_mouth": ("PSNR, mouth box (dB)", "higher"),
    "ssim_mouth": ("SSIM, mouth box", "higher"),
    "lpips_mouth": ("LPIPS, mouth box", "lower"),
    "stlpips_face": ("ST-LPIPS (shift-tolerant LPIPS), full face", "lower"),
    "stlpips_mouth": ("ST-LPIPS (shift-tolerant LPIPS), mouth box", "lower"),
    "lse_d": ("LSE-D, sync distance at the best offset", "lower"),
    "lse_c": ("LSE-C, sync confidence (median - min)", "higher"),
    "lse_d_offset0": ("sync distance at offset 0 (audio as given)", "lower"),
    "lse_abs_offset": ("mean |best audio offset| (frames)", "lower"),
    "openness_mae": ("mouth openness error vs track (estimator)", "lower"),
    "silent_closed_share": ("share of silent frames with a closed mouth", "higher"),
    "silent_closed_share_track": ("same, from the ground-truth track itself", "higher"),
    "silent_frame_share": ("share of frames that are silent", "-"),
    "fid": ("FID vs ground-truth frames", "lower"),
}


def _finite(values: dict[str, float], notes: list[str], where: str) -> dict[str, float]:
    out = {}
    for name, value in values.items():
        value = float(value)
        if math.isfinite(value):
            out[name] = value
        else:
            notes.append(f"{where}.{name} is {value} and was left out")
    return out


def build_report(model: str, data: dict[str, Any], metrics: dict[str, float],
                 ground_truth: dict[str, float], notes: list[str]) -> dict[str, Any]:
    notes = list(notes)
    return {"model": str(model), "data": data,
            "metrics": _finite(metrics, notes, "metrics"),
            "ground_truth": _finite(ground_truth, notes, "ground_truth"), "notes": notes}


def _fmt(value: float | None) -> str:
    return "" if value is None else f"{value:.4f}"


def markdown_table(report: dict[str, Any]) -> str:
    metrics, truth = report["metrics"], report["ground_truth"]
    names = [n for n in DESCRIPTIONS if n in metrics or n in truth]
    names += sorted((set(metrics) | set(truth)) - set(names))
    data = report["data"]
    summary = (f"Data: `{data.get('root')}` split `{data.get('split')}`, {data.get('clips')} "
               f"clips, {data.get('frames')} frames (manifest sha256 "
               f"`{str(data.get('manifest_sha256'))[:12]}`).")
    lines = [f"# lipmem eval: {report['model']}", "", summary, "",
             "| metric | generated | ground truth | better | what |",
             "|---|---|---|---|---|"]
    for name in names:
        what, better = DESCRIPTIONS.get(name, ("", ""))
        lines.append(f"| {name} | {_fmt(metrics.get(name))} | {_fmt(truth.get(name))} | "
                     f"{better} | {what} |")
    if report["notes"]:
        lines += ["", "Notes:", ""] + [f"- {note}" for note in report["notes"]]
    return "\n".join(lines) + "\n"


def write_report(report: dict[str, Any], out_dir: str | Path) -> tuple[Path, Path]:
    """Write ``eval.json`` and ``eval.md`` into ``out_dir`` (atomically); return both paths."""
    if tuple(report) != TOP_LEVEL_KEYS:
        raise ValueError(f"report keys {tuple(report)} != {TOP_LEVEL_KEYS}")
    out = Path(out_dir)
    json_path, md_path = out / JSON_NAME, out / MARKDOWN_NAME
    write_json_atomic(json_path, report, allow_nan=False)
    with atomic_path(md_path) as tmp:
        tmp.write_text(markdown_table(report))
    return json_path, md_path
