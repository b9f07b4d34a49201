"""`lipmem bank inspect REF`: what is in a memory bank, in words and pictures.

Prints the metadata and the bank's metrics (cluster sizes; on corpora with speakers and a
mouth track, the share of single-speaker clusters and the mouth-openness variance the
clusters explain: memory_bank.bank_metrics), decodes every code with the bank's own
autoencoder (a context autoencoder draws each code's mouth into one example face; ordered
by cluster size, largest first) and draws the cluster-size histogram, so a user can see
whether the bank covers distinct mouth shapes or collapsed onto a few.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np
import torch

from datamodules.atomic_files import atomic_path
from memory_bank.artifacts.registry import LocalRegistry
from memory_bank.bank import LoadedBank, load_bank, load_bank_encoder


def _figure_path(out_dir: Path, bank: LoadedBank, what: str) -> Path:
    stem = bank.resolved.replace(":", "_").replace("/", "_").strip("_")
    return out_dir / f"{Path(stem).name}_{what}.png"


def decode_codes(bank: LoadedBank, registry: LocalRegistry | None) -> torch.Tensor | None:
    """(n, 3, S, S) images, or None when the bank does not name its autoencoder (or its
    context autoencoder carries no example face to draw the mouths into)."""
    if not (bank.meta.get("encoder") or {}).get("ref"):
        return None
    net = load_bank_encoder(bank, registry)
    codes = bank.codes.float()
    with torch.no_grad():
        if not net.context:
            return net.decode(codes).clamp(0, 1)
        if net.examples is None:
            return None
        faces, mask = net.examples
        face = faces[:1].float() / 255.0  # every code drawn into the same face
        return net.decode(codes, face, mask.float()).clamp(0, 1)


def _save(fig: Any, path: Path) -> Path:
    """matplotlib into a temp name, then rename: a viewer never opens half a file."""
    import matplotlib.pyplot as plt

    try:
        with atomic_path(path, suffix=".png") as tmp:
            fig.savefig(tmp, dpi=100)
    finally:
        plt.close(fig)
    return path


def plot_codes(images: torch.Tensor, sizes: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    order = np.argsort(-sizes, kind="stable")
    n = len(order)
    cols = min(n, 16)
    rows = math.ceil(n / cols)
    fig, axes = plt.subplots(rows, cols, figsize=(cols * 1.1, rows * 1.25 + 0.6), squeeze=False)
    for ax in axes.flat:
        ax.axis("off")
    for slot, idx in enumerate(order):
        ax = axes.flat[slot]
        ax.imshow(images[idx].permute(1, 2, 0).numpy())
        ax.set_title(f"#{idx} ({sizes[idx]})", fontsize=6)
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def plot_sizes(sizes: np.ndarray, path: Path, title: str) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, (by_rank, hist) = plt.subplots(1, 2, figsize=(10, 3.2))
    by_rank.bar(np.arange(len(sizes)), np.sort(sizes)[::-1], width=1.0)
    by_rank.set_xlabel("code, largest cluster first")
    by_rank.set_ylabel("frames in cluster")
    hist.hist(sizes, bins=min(30, max(5, len(sizes) // 3)))
    hist.set_xlabel("cluster size (frames)")
    hist.set_ylabel("codes")
    fig.suptitle(title, fontsize=9)
    fig.tight_layout()
    return _save(fig, path)


def summary(bank: LoadedBank) -> dict[str, Any]:
    meta = dict(bank.meta)
    sizes = np.asarray(meta.pop("cluster_sizes", []), dtype=np.int64)
    out = {"ref": bank.ref, "resolved": bank.resolved, "sha256": bank.sha256,
           "shape": list(bank.codes.shape), **meta}
    if sizes.size:
        out["cluster_sizes"] = {"min": int(sizes.min()), "median": float(np.median(sizes)),
                                "max": int(sizes.max()), "empty": int((sizes == 0).sum())}
    return out


def inspect_bank(ref: str, out_dir: str | Path = ".", registry: str | None = None) -> list[Path]:
    reg = LocalRegistry(registry) if registry else None
    bank = load_bank(ref, reg)
    out = Path(out_dir)
    print(json.dumps(summary(bank), indent=2, sort_keys=True, default=str))
    sizes = np.asarray(bank.meta.get("cluster_sizes") or [0] * bank.codes.shape[0])
    title = f"{bank.resolved}: n={bank.codes.shape[0]}, {bank.meta.get('method', '?')}"
    written = [plot_sizes(sizes, _figure_path(out, bank, "cluster_sizes"), title)]
    images = decode_codes(bank, reg)
    if images is None:
        print("note: the bank names no autoencoder; codes cannot be decoded to images")
    else:
        written.append(plot_codes(images, sizes, _figure_path(out, bank, "codes"),
                                  title + " (decoded, largest cluster first)"))
    for path in written:
        print(f"wrote {path}")
    return written
