"""`lipmem bank build`: autoencoder fit -> encode lower faces -> cluster -> publish.

One job, four stages; each of the first two can be skipped by passing its earlier output
(`bank.encoder=REF` for a trained autoencoder, `bank.features=FILE` for encoded features).
Every published artifact goes to the local registry (resolvable with no server) and into
the job's W&B run (online, or offline for a later `wandb sync`).
"""

from __future__ import annotations

import json
import math
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import torch
from lightning.pytorch.utilities import rank_zero_info

from datamodules.atomic_files import sha256_file, write_json_atomic
from datamodules.manifest import manifest_path, split_clips
from memory_bank.artifacts.references import resolve_reference
from memory_bank.artifacts.registry import ArtifactVersion, LocalRegistry
from memory_bank.bank import BANK_NAME, publish_bank
from memory_bank.bank_metrics import bank_metrics
from memory_bank.code_space import CENTRE_PER, centres_in_code_space, clustering_space
from memory_bank.encoder_file import ENCODER_FILE, load_autoencoder, save_autoencoder
from memory_bank.features import Features, encode_lower_faces, load_features, save_features
from memory_bank.kmeans import METHODS, KMeansResult, cluster, cluster_many
from memory_bank.provenance import code_version

ENCODER_NAME = "mouth-autoencoder"
ENCODER_TYPE = "mouth-autoencoder"


@dataclass
class BankSpec:
    """The `bank.*` keys of configs/bank.yaml."""

    encoder: str | None = None          # trained autoencoder REF: skip the fit
    features: str | None = None         # features .npz of an earlier build: skip encoding
    frames: int = 20000                 # M frames to encode, spread over all clips (rounded up
                                        # to the same count from every training clip)
    method: str = "faiss_kmeans"        # faiss_kmeans | sklearn_kmeans | meanshift |
                                        # random_members (ablation control: n{n}-random)
    n: list[int] = field(default_factory=lambda: [80])   # several n reuse one feature matrix
    niter: int = 25
    seed: int = 0
    centre_per: str = "clip"            # clip | speaker | none: clusters found on codes minus
                                        # their clip's mean (memory_bank.code_space)
    meanshift_bandwidth: float | None = None
    meanshift_max_points: int = 5000
    name: str = BANK_NAME
    registry: str | None = None         # null = $LIPMEM_REGISTRY or ./artifacts
    device: str = "auto"                # where to encode: auto | cpu | cuda

    def __post_init__(self) -> None:
        if self.method not in METHODS:
            raise ValueError(f"bank.method={self.method!r}: expected one of {METHODS}")
        if self.frames <= 0:
            raise ValueError(f"bank.frames={self.frames}: must be > 0")
        if self.centre_per not in CENTRE_PER:
            raise ValueError(f"bank.centre_per={self.centre_per!r}: expected one of {CENTRE_PER}")
        if self.method != "meanshift":
            bad = [n for n in self.n if isinstance(n, bool) or not isinstance(n, int) or n <= 0]
            if not self.n or bad:
                raise ValueError(f"bank.n={self.n}: need a list of positive code counts")
            if max(self.n) > self.frames:
                raise ValueError(f"bank.n={self.n}: cannot form {max(self.n)} clusters from "
                                 f"bank.frames={self.frames} frames")


def _describe_metrics(metrics: dict[str, Any]) -> str:
    parts = [f"largest cluster {metrics['largest_cluster_share']:.1%} of frames"]
    if "single_speaker_share" in metrics:
        parts.append(f"{metrics['single_speaker_share']:.0%} single-speaker clusters")
    if metrics.get("openness_variance_explained") is not None:
        parts.append(f"clusters explain {metrics['openness_variance_explained']:.0%} of the "
                     "mouth-openness variance")
    return ", ".join(parts)


def _device(name: str) -> torch.device:
    if name == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(name)


class BankBuild:
    """Runs the stages with a configured Trainer, MouthAutoencoder and LipSyncDataModule."""

    def __init__(self, spec: BankSpec, trainer: Any, model: Any, datamodule: Any) -> None:
        self.spec = spec
        self.trainer = trainer
        self.model = model
        self.datamodule = datamodule
        self.registry = LocalRegistry(spec.registry) if spec.registry else LocalRegistry.default()
        self.out = Path(trainer.default_root_dir) / "bank"
        self.run = self._wandb_run()
        self.summary: dict[str, Any] = {"spec": asdict(spec), "stages": {}}

    # ---------------------------------------------------------------- context
    def _wandb_run(self) -> Any:
        for logger in self.trainer.loggers:
            if hasattr(logger, "mode") and logger.mode != "disabled":
                return logger
        return None

    def corpus(self) -> dict[str, Any]:
        root = self.datamodule.root
        if root is None or not manifest_path(root).is_file():
            return {"root": None, "manifest_sha256": None, "shards": self.datamodule.shard_specs}
        path = manifest_path(root)
        return {"root": str(Path(root).resolve()), "manifest_sha256": sha256_file(path)}

    def geometry(self) -> dict[str, Any]:
        return {"image_size": int(self.datamodule.image_size),
                "mask": self.datamodule.mask.describe()}

    def frames_to_encode(self) -> int:
        """`bank.frames` rounded up to the same number of frames from every training clip, so
        the last clips in the stream are not cut short (memory_batches spreads windows evenly)."""
        manifest = self.datamodule.manifest
        if manifest is None or self.datamodule.shard_specs.get("train"):
            return self.spec.frames
        clips = split_clips(manifest, "train")
        if clips <= 0:
            return self.spec.frames
        return math.ceil(self.spec.frames / clips) * clips

    def example_faces(self, count: int = 8) -> tuple[torch.Tensor, torch.Tensor] | None:
        """A few masked faces (val split, else train) for inspect to draw codes into."""
        import numpy as np

        mask = self.datamodule.mask.numpy()  # (1, S, S)
        for split in ("val", "train"):
            try:
                clip = next(iter(self.datamodule.clips(split, limit=1)), None)
            except (ValueError, FileNotFoundError):
                continue
            if clip is None:
                continue
            idx = np.linspace(0, clip.num_frames - 1, count).round().astype(int)
            faces = clip.frames[idx].transpose(0, 3, 1, 2) * (1.0 - mask[None])
            return (torch.from_numpy(faces.round().astype(np.uint8)),
                    torch.from_numpy(mask[None].astype(np.uint8)))
        return None

    # ---------------------------------------------------------------- stages
    def autoencoder(self) -> tuple[Any, dict[str, Any]]:
        """Stage 1: fit, or load the given one. Returns (net, {ref, sha256})."""
        if self.spec.encoder:
            target = resolve_reference(self.spec.encoder, registry=self.registry,
                                       expected_type=ENCODER_TYPE)
            path = target.file(ENCODER_FILE) if isinstance(target, ArtifactVersion) else target
            net, meta = load_autoencoder(path)
            if net.image_size != self.datamodule.image_size:
                raise ValueError(f"bank.encoder={self.spec.encoder!r} was trained at image_size="
                                 f"{net.image_size} but data.image_size="
                                 f"{self.datamodule.image_size}")
            ref = target.ref if isinstance(target, ArtifactVersion) else str(path)
            self._record_input("encoder", self.spec.encoder, target)
            self.summary["stages"]["autoencoder"] = {"skipped": True, "ref": ref}
            return net, {"ref": ref, "sha256": sha256_file(path)}
        started = time.perf_counter()
        self.trainer.fit(self.model, datamodule=self.datamodule)
        net = self.model.net.eval()
        metrics = {k: float(v) for k, v in self.trainer.callback_metrics.items()
                   if k.startswith(("val/", "train/"))}
        meta = {**self.geometry(), "corpus": self.corpus(), "input": self.model.input,
                "steps": int(self.trainer.global_step), "metrics": metrics,
                "code_version": code_version()}
        path = save_autoencoder(self.out / ENCODER_FILE, net, meta,
                                self.example_faces() if net.context else None)
        version = self.registry.publish(ENCODER_NAME, ENCODER_TYPE, {ENCODER_FILE: path},
                                        {**meta, "net": net.config})
        self._log_artifact(version)
        self.summary["stages"]["autoencoder"] = {
            "ref": version.ref, "seconds": round(time.perf_counter() - started, 1),
            "steps": meta["steps"], "metrics": metrics}
        return net, {"ref": version.ref, "sha256": version.files[ENCODER_FILE]}

    def features(self, net: Any) -> tuple[Features, str]:
        """Stage 2: encode, or load the given features. Returns (features, sha256 of the file)."""
        if self.spec.features:
            feats = load_features(self.spec.features)
            if feats.features.shape[1] != net.embed_dim:
                raise ValueError(f"bank.features={self.spec.features!r} has dim "
                                 f"{feats.features.shape[1]} but the autoencoder's embed_dim is "
                                 f"{net.embed_dim}")
            self.summary["stages"]["features"] = {"skipped": True, "path": self.spec.features,
                                                  "frames": len(feats)}
            return feats, sha256_file(self.spec.features)
        started = time.perf_counter()
        device = _device(self.spec.device)
        net = net.to(device).eval()
        frames = self.frames_to_encode()
        batches = self.datamodule.memory_batches(frames)
        feats = encode_lower_faces(net.encode, batches, frames, device, progress=True)
        path = save_features(self.out / "features.npz", feats)
        clips = len(set(feats.keys.tolist()))
        self.summary["stages"]["features"] = {
            "path": str(path), "frames": len(feats), "clips": clips,
            "seconds": round(time.perf_counter() - started, 1)}
        rank_zero_info(f"lipmem bank: encoded {len(feats)} lower faces from {clips} clips")
        return feats, sha256_file(path)

    def cluster(self, feats: Features) -> dict[int, tuple[KMeansResult, Any]]:
        """Stage 3: one feature matrix, every requested n (meanshift: n from the data).
        Returns {n: (result with centres in code space, each frame's cluster)}."""
        started = time.perf_counter()
        spec = self.spec
        groups = feats.keys if spec.centre_per == "clip" else feats.speakers
        space = clustering_space(feats.features, groups, spec.centre_per)
        if spec.method == "meanshift":
            result = cluster(space, None, method="meanshift", seed=spec.seed,
                             bandwidth=spec.meanshift_bandwidth,
                             max_points=spec.meanshift_max_points)
            results = {result.k: result}
        else:
            results = cluster_many(space, spec.n, method=spec.method, seed=spec.seed,
                                   niter=spec.niter)
        out = {n: centres_in_code_space(r, space, feats.features, spec.centre_per)
               for n, r in results.items()}
        self.summary["stages"]["cluster"] = {
            "seconds": round(time.perf_counter() - started, 1), "centre_per": spec.centre_per,
            "inertia": {str(n): r.inertia for n, r in results.items()}}
        return out

    def publish(self, results: dict[int, tuple[KMeansResult, Any]], encoder: dict[str, Any],
                feats: Features, features_sha256: str) -> list[ArtifactVersion]:
        """Stage 4: one registry version (+ W&B artifact) per n, aliases n{n} and latest."""
        versions = []
        common = {**self.geometry(), "encoder": encoder, "corpus": self.corpus(),
                  "frames": len(feats), "features_sha256": features_sha256,
                  "code_version": code_version()}
        for n, (result, labels) in sorted(results.items()):
            metrics = bank_metrics(labels, result.k, feats.speakers, feats.openness)
            meta = {**common, "method": result.method, "device": result.device,
                    "inertia": result.inertia, "cluster_sizes": result.sizes.tolist(),
                    "seed": result.seed, "niter": result.niter, "extra": result.extra,
                    "centre_per": self.spec.centre_per,
                    "metrics": {k: v for k, v in metrics.items() if k != "cluster_sizes"}}
            self.summary.setdefault("metrics", {})[str(n)] = meta["metrics"]
            rank_zero_info(f"lipmem bank: n={n}: {_describe_metrics(meta['metrics'])}")
            version = publish_bank(self.registry, torch.from_numpy(result.centroids), meta,
                                   name=self.spec.name)
            self._log_artifact(version)
            versions.append(version)
            rank_zero_info(f"lipmem bank: published {version.ref} (aliases "
                           f"{', '.join(version.aliases)}) to {self.registry.root}")
        self.summary["published"] = [{"ref": v.ref, "aliases": list(v.aliases),
                                      "path": str(v.path)} for v in versions]
        return versions

    # ---------------------------------------------------------------- W&B
    def _log_artifact(self, version: ArtifactVersion) -> None:
        if self.run is not None:
            from memory_bank.artifacts.wandb_artifacts import log_artifact

            log_artifact(self.run.experiment, version)

    def _record_input(self, key: str, ref: str, target: Any) -> None:
        if self.run is not None:
            from memory_bank.artifacts.wandb_artifacts import record_input

            record_input(self.run.experiment, key, ref, target, self.run.mode)

    # ---------------------------------------------------------------- all
    def __call__(self) -> list[ArtifactVersion]:
        self.out.mkdir(parents=True, exist_ok=True)
        net, encoder = self.autoencoder()
        if self.trainer.global_rank != 0:
            return []  # DDP autoencoder fit: rank zero encodes, clusters and publishes
        if self.run is not None:
            self.run.log_hyperparams({"corpus": self.corpus(), "bank": asdict(self.spec)})
        feats, features_sha = self.features(net)
        results = self.cluster(feats)
        versions = self.publish(results, encoder, feats, features_sha)
        write_json_atomic(self.out / "summary.json", self.summary)
        if self.run is not None:
            self.run.log_metrics({f"bank/inertia_n{n}": r.inertia for n, (r, _) in results.items()})
        print(json.dumps({"published": self.summary["published"]}, indent=2))
        return versions
