"""Mean +- sd over seeds, per arm (variant, n) and metric: ablation.json and ablation.md."""

from __future__ import annotations

import math
import statistics
from typing import Any


def summarise(values: list[float]) -> dict[str, Any]:
    """Sample sd (n-1); sd is None for a single seed rather than a misleading 0."""
    finite = [v for v in values if math.isfinite(v)]
    return {"mean": statistics.fmean(finite) if finite else None,
            "sd": statistics.stdev(finite) if len(finite) > 1 else None,
            "count": len(finite), "values": values}


# the fit's input-data tallies (val/data/skipped/...): kept in result.json, not compared
NOT_COMPARED = ("val/data/",)


def aggregate(results: list[dict[str, Any]]) -> dict[str, dict[str, dict[str, Any]]]:
    """arm -> metric -> {mean, sd, count, values}; metrics are `eval/NAME` (lipmem eval) and
    `fit/NAME` (the fit's last validation, from its W&B run summary)."""
    arms: dict[str, dict[str, list[float]]] = {}
    for result in results:
        metrics = arms.setdefault(result["arm"], {})
        for source in ("eval", "fit"):
            for name, value in (result.get(f"{source}_metrics") or {}).items():
                if name.startswith(NOT_COMPARED):
                    continue
                if isinstance(value, (int, float)) and not isinstance(value, bool):
                    metrics.setdefault(f"{source}/{name}", []).append(float(value))
    return {arm: {name: summarise(vals) for name, vals in sorted(metrics.items())}
            for arm, metrics in arms.items()}


def _cell(stats: dict[str, Any] | None, seeds: int) -> str:
    if not stats or stats["mean"] is None:
        return "-"
    text = f"{stats['mean']:.4g}"
    text += f" ± {stats['sd']:.2g}" if stats["sd"] is not None else ""
    return text + (f" ({stats['count']})" if stats["count"] != seeds else "")


BANK_COLUMNS = (("single_speaker_share", "single-speaker clusters"),
                ("openness_variance_explained", "openness variance explained"),
                ("largest_cluster_share", "largest cluster"))


def _bank_lines(banks: dict[str, dict[str, dict[str, Any]]]) -> list[str]:
    """What the banks' clusters hold (memory_bank.bank_metrics), one row per bank and n."""
    rows = [(kind, n, m) for kind, per_n in banks.items() for n, m in per_n.items()]
    if not rows:
        return []
    lines = ["| bank | n | " + " | ".join(title for _, title in BANK_COLUMNS) + " |",
             "|---|---|" + "---|" * len(BANK_COLUMNS)]
    for kind, n, m in rows:
        cells = [f"{m[key]:.0%}" if isinstance(m.get(key), (int, float)) else "-"
                 for key, _ in BANK_COLUMNS]
        lines.append(f"| {kind} | {n} | " + " | ".join(cells) + " |")
    return [*lines, ""]


def markdown(report: dict[str, Any]) -> str:
    """One row per metric, one column per arm (in grid order); `(k)` marks a cell over fewer
    seeds than planned."""
    arms = report["arms"]
    order = [a for a in report["arm_order"] if a in arms]
    seeds = len(report["spec"]["seeds"])
    metrics = sorted({m for arm in arms.values() for m in arm})
    failed = f" ({', '.join(report['failed'])})" if report["failed"] else ""
    lines = [f"# Ablation `{report['spec']['name']}`", "",
             (f"mean ± sd over {seeds} seed(s) {report['spec']['seeds']} (sample sd; a number "
             "in brackets = seeds that finished, if fewer)."), "",
             f"- command: `{report['command']}`",
             f"- hardware: {report['hardware']['summary']}",
             (f"- runs: {report['finished']} of {report.get('planned', '?')} finished, "
              f"{len(report['failed'])} failed{failed}; fit+eval time "
              f"{report['seconds']:.0f} s"), ""]
    lines += _bank_lines(report.get("banks") or {})
    if not metrics:
        return "\n".join([*lines, "No finished run has metrics yet.", ""])
    lines += ["| metric | " + " | ".join(order) + " |",
              "|---|" + "---|" * len(order)]
    for metric in metrics:
        lines.append(f"| {metric} | "
                     + " | ".join(_cell(arms[a].get(metric), seeds) for a in order) + " |")
    return "\n".join([*lines, ""])
