"""The memory bank as an artifact: codes file, metadata, publishing, loading, checking.

A bank is an artifact named `memory-bank` (type `memory-bank`) with aliases `n{n}` and
`latest`, holding `codes.safetensors` (the (n, d) cluster centres, loadable without running
code) and `bank.json` (the same metadata, readable by people and `lipmem bank inspect`).
Random-member banks (the ablation's control, not centres) get `n{n}-random` instead of `n{n}`.
"""

from __future__ import annotations

import json
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from datamodules.atomic_files import sha256_file
from memory_bank.artifacts.references import resolve_reference
from memory_bank.artifacts.registry import ArtifactVersion, LocalRegistry
from memory_bank.codes_file import load_codes, save_codes

BANK_NAME = "memory-bank"
BANK_TYPE = "memory-bank"
CODES_FILE = "codes.safetensors"
META_FILE = "bank.json"
# The geometry a generator must share with the bank it loads.
MASK_KEYS = ("shape", "region", "top")


class BankMismatch(ValueError):
    """A bank built for another generator or mask: training on it would be silently wrong."""


@dataclass
class LoadedBank:
    codes: torch.Tensor               # (n, d)
    meta: dict[str, Any]
    ref: str                          # what the user asked for
    resolved: str                     # registry version (name:vN) or file path
    sha256: str                       # of the codes file
    target: ArtifactVersion | Path | None = None   # what the reference resolved to

    def describe(self) -> dict[str, Any]:
        """What a run records about the bank it used."""
        return {"ref": self.ref, "resolved": self.resolved, "sha256": self.sha256,
                "n": int(self.codes.shape[0]), "dim": int(self.codes.shape[1]),
                "method": self.meta.get("method"), "encoder": self.meta.get("encoder")}


def bank_alias(n: int, method: str | None) -> str:
    """`n80` for cluster centres; `n80-random` for random corpus members, so an ablation's
    control bank never takes the alias a generator's default `memory-bank:n{n}` resolves."""
    return f"n{n}-random" if method == "random_members" else f"n{n}"


def publish_bank(registry: LocalRegistry, codes: torch.Tensor, meta: dict[str, Any],
                 extra_aliases: tuple[str, ...] = (), name: str = BANK_NAME) -> ArtifactVersion:
    """Write the two files to a scratch folder and publish them as one registry version."""
    n = int(codes.shape[0])
    meta = {**meta, "n": n, "dim": int(codes.shape[1])}
    with tempfile.TemporaryDirectory(prefix="lipmem-bank-") as scratch:
        codes_path = save_codes(Path(scratch) / CODES_FILE, codes, meta)
        meta_path = Path(scratch) / META_FILE
        meta_path.write_text(json.dumps(meta, indent=2, sort_keys=True) + "\n")
        return registry.publish(name, BANK_TYPE, {CODES_FILE: codes_path, META_FILE: meta_path},
                                meta, aliases=(bank_alias(n, meta.get("method")), *extra_aliases))


def load_bank(ref: str, registry: LocalRegistry | None = None) -> LoadedBank:
    """Resolve `ref` (registry name:alias, wandb:..., or a codes file path) and read it.

    Registry versions are sha256-checked by the registry; a plain file is read as
    safetensors, which cannot run code.
    """
    target = resolve_reference(ref, registry=registry, expected_type=BANK_TYPE)
    if isinstance(target, ArtifactVersion):
        path = target.file(CODES_FILE)
        resolved = target.ref
        sha = target.files.get(CODES_FILE) or sha256_file(path)
    else:
        path = Path(target)
        if path.is_dir():
            raise ValueError(f"memory bank reference {ref!r} is a folder without artifact.json; "
                             f"pass the {CODES_FILE} file or a registry reference")
        resolved = str(path)
        sha = sha256_file(path)
    codes, meta = load_codes(path)
    return LoadedBank(codes=codes, meta=meta, ref=ref, resolved=resolved, sha256=sha,
                      target=target)


def load_bank_encoder(bank: LoadedBank, registry: LocalRegistry | None = None) -> Any:
    """The MouthAutoencoderNet that built `bank`, checked against the sha256 the bank recorded
    (a `name:vN` may mean another version in W&B than in the registry that built the bank)."""
    from memory_bank.encoder_file import ENCODER_FILE, load_autoencoder

    encoder = bank.meta.get("encoder") or {}
    if not encoder.get("ref"):
        raise ValueError(f"memory bank {bank.ref} ({bank.resolved}) does not record the "
                         "autoencoder it was built with")
    target = resolve_reference(encoder["ref"], registry=registry)
    path = target.file(ENCODER_FILE) if isinstance(target, ArtifactVersion) else Path(target)
    if not path.is_file():  # a device or pipe named in a bank's metadata would never end
        raise ValueError(f"memory bank {bank.ref}: its autoencoder {encoder['ref']!r} is not a "
                         f"regular file ({path})")
    expected = encoder.get("sha256")
    actual = sha256_file(path)
    if expected and actual != expected:
        raise ValueError(f"memory bank {bank.ref} was built with autoencoder {encoder['ref']} "
                         f"(sha256 {expected}) but that reference now resolves to {path} "
                         f"(sha256 {actual}); pass the autoencoder's file path instead")
    net, _ = load_autoencoder(path)
    return net


def check_bank(bank: LoadedBank, *, num_codes: int, code_dim: int, image_size: int,
               mask: dict[str, Any] | None) -> list[str]:
    """Refuse a bank that does not fit the generator; returns what could not be checked."""
    problems = []
    n, d = (int(x) for x in bank.codes.shape)
    if n != num_codes:
        problems.append(f"the bank has n={n} codes but model.generator.init_args.num_codes="
                        f"{num_codes}")
    if d != code_dim:
        problems.append(f"the bank's codes have dim={d} but model.generator.init_args.embed_dim="
                        f"{code_dim}")
    unchecked = []
    bank_size = bank.meta.get("image_size")
    if bank_size is None:
        unchecked.append("image_size")
    elif int(bank_size) != image_size:
        problems.append(f"the bank was encoded at image_size={bank_size} but the generator uses "
                        f"image_size={image_size} (data.image_size)")
    bank_mask = bank.meta.get("mask")
    if mask is None or bank_mask is None:
        unchecked.append("mask")
    else:
        for key in MASK_KEYS:
            a, b = bank_mask.get(key), mask.get(key)
            if isinstance(a, float) or isinstance(b, float):
                same = a is not None and b is not None and abs(float(a) - float(b)) < 1e-6
            else:
                same = a == b
            if not same:
                problems.append(f"the bank's lower-face crops used mask {key}={a!r} but training "
                                f"masks with {key}={b!r} (data.mask_{key})")
    if problems:
        raise BankMismatch(f"memory bank {bank.ref!r} ({bank.resolved}) does not match this "
                           "generator: " + "; ".join(problems)
                           + ". Build a bank with the same geometry (lipmem bank build) or "
                             "point model.memory.source at one.")
    return unchecked
