"""Reading a corpus manifest (written by :func:`datamodules.shards.build_manifest`) and
checking that the shards on disk are the ones it lists.

The manifest is the last file written for a corpus, so its presence means "finished"; its
per-shard byte counts and sha256 digests catch a shard that was replaced, truncated or
copied incompletely before a long training run reads it.
"""

from __future__ import annotations

import json
import os
import re
from pathlib import Path
from typing import Any

from datamodules.atomic_files import sha256_file
from datamodules.sample_format import FORMAT_VERSION
from datamodules.shards import MANIFEST_NAME

REQUIRED_FIELDS = ("format_version", "fps", "sample_rate", "image_size", "splits", "shards")
REQUIRED_SHARD_FIELDS = ("name", "split", "sha256", "bytes", "clips")
REQUIRED_SPLIT_FIELDS = ("shards", "clips")
# A shard is a plain file beside the manifest. webdataset reads `pipe:CMD` by running CMD in
# a shell and `scheme://` over the network: those forms come only from explicit config
# (`data.*_shards`), never from a manifest that arrived with a corpus.
SHARD_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.+-]*\.tar")


class ManifestError(ValueError):
    """A manifest that cannot be used; the message names the file."""


def manifest_path(path: str | os.PathLike) -> Path:
    """``path`` itself, or ``path/manifest.json`` when ``path`` is a folder."""
    path = Path(path)
    return path / MANIFEST_NAME if path.is_dir() else path


def load_manifest(path: str | os.PathLike) -> dict[str, Any]:
    """Load and structurally validate a manifest (a file or the corpus folder holding one).

    Raises FileNotFoundError when it does not exist and :class:`ManifestError` (a
    ValueError) for invalid JSON, a newer format version or missing fields; every message
    names the file.
    """
    file = manifest_path(path)
    if not file.is_file():
        raise FileNotFoundError(f"manifest {str(file)!r} not found (is the corpus finished? "
                                f"the manifest is written last)")
    try:
        manifest = json.loads(file.read_text())
    except json.JSONDecodeError as exc:
        raise ManifestError(f"manifest {str(file)!r} is not valid JSON: {exc}") from exc
    except (OSError, UnicodeDecodeError) as exc:
        raise ManifestError(f"manifest {str(file)!r} cannot be read: {exc}") from exc
    if not isinstance(manifest, dict):
        raise ManifestError(f"manifest {str(file)!r}: top level must be an object, "
                            f"got {type(manifest).__name__}")
    missing = [k for k in REQUIRED_FIELDS if k not in manifest]
    if missing:
        raise ManifestError(f"manifest {str(file)!r} lacks field(s) {missing}; "
                            f"expected {list(REQUIRED_FIELDS)}")
    version = manifest["format_version"]
    if not isinstance(version, int) or version > FORMAT_VERSION:
        raise ManifestError(f"manifest {str(file)!r}: format_version={version!r}, this reader "
                            f"understands versions <= {FORMAT_VERSION}")
    if not isinstance(manifest["shards"], list) or not isinstance(manifest["splits"], dict):
        raise ManifestError(f"manifest {str(file)!r}: 'shards' must be a list and 'splits' an "
                            f"object")
    for i, shard in enumerate(manifest["shards"]):
        if not isinstance(shard, dict):
            raise ManifestError(f"manifest {str(file)!r}: shards[{i}] is not an object")
        lacking = [k for k in REQUIRED_SHARD_FIELDS if k not in shard]
        if lacking:
            raise ManifestError(f"manifest {str(file)!r}: shards[{i}] "
                                f"({shard.get('name', '?')!r}) lacks field(s) {lacking}")
        check_shard_name(shard["name"], f"manifest {str(file)!r}: shards[{i}].name")
    for name, split in manifest["splits"].items():
        lacking = [k for k in REQUIRED_SPLIT_FIELDS if not isinstance(split, dict) or k not in split]
        if lacking:
            raise ManifestError(f"manifest {str(file)!r}: splits[{name!r}] lacks field(s) "
                                f"{lacking}")
        if not isinstance(split["shards"], list):
            raise ManifestError(f"manifest {str(file)!r}: splits[{name!r}].shards must be a "
                                f"list of shard names")
        for j, entry in enumerate(split["shards"]):
            check_shard_name(entry, f"manifest {str(file)!r}: splits[{name!r}].shards[{j}]")
        known = {s["name"] for s in manifest["shards"]}
        unknown = [s for s in split["shards"] if s not in known]
        if unknown:
            raise ManifestError(f"manifest {str(file)!r}: splits[{name!r}] lists shard(s) "
                                f"{unknown} that are not in 'shards'")
    manifest["_path"] = str(file)
    return manifest


def check_shard_name(name: Any, where: str) -> str:
    """``name`` when it is a plain ``*.tar`` file name (letters, digits, ``_ . + -``, not
    starting with ``.`` or ``-``); else ManifestError saying ``where`` and what is allowed."""
    if not isinstance(name, str) or not SHARD_NAME.fullmatch(name):
        raise ManifestError(f"{where} is {name!r}: a shard name must be a plain file name "
                            f"ending in .tar (letters, digits, '_', '.', '+', '-'; no '/', ':' "
                            f"or leading '.'/'-'). Commands (pipe:) and URLs are allowed only "
                            f"in explicit config (data.train_shards/val_shards/test_shards)")
    return name


def _describe(manifest: dict[str, Any]) -> str:
    return repr(manifest.get("_path", "<manifest>"))


def split_names(manifest: dict[str, Any]) -> list[str]:
    return sorted(manifest["splits"])


def split_urls(manifest: dict[str, Any], root: str | os.PathLike, split: str) -> list[str]:
    """Local paths of the shards of ``split``, in manifest order.

    Raises ValueError naming the available splits when ``split`` is unknown; an existing
    split with no shards gives an empty list (the caller decides whether that is an error).
    """
    if split not in manifest["splits"]:
        raise ValueError(f"manifest {_describe(manifest)} has no split {split!r}; "
                         f"available: {split_names(manifest)}")
    return [str(Path(root) / name) for name in manifest["splits"][split]["shards"]]


def split_clips(manifest: dict[str, Any], split: str) -> int:
    return int(manifest["splits"][split]["clips"])


def verify_shards(manifest: dict[str, Any], root: str | os.PathLike, check_sha256: bool = True,
                  splits: list[str] | tuple[str, ...] | None = None) -> None:
    """Check that every listed shard (of ``splits``, default all) exists with the listed size
    and, with ``check_sha256``, the listed digest. Raises ValueError naming the shard and
    giving expected vs found.
    """
    root = Path(root)
    wanted = None if splits is None else set(splits)
    for shard in manifest["shards"]:
        if wanted is not None and shard["split"] not in wanted:
            continue
        path = root / shard["name"]
        if not path.is_file():
            raise ValueError(f"shard {str(path)!r} listed in manifest {_describe(manifest)} is "
                             f"missing (expected {shard['bytes']} bytes, found no file)")
        size = path.stat().st_size
        if size != int(shard["bytes"]):
            raise ValueError(f"shard {str(path)!r} has the wrong size: expected "
                             f"{shard['bytes']} bytes (manifest {_describe(manifest)}), "
                             f"found {size}")
        if check_sha256:
            digest = sha256_file(path)
            if digest != shard["sha256"]:
                raise ValueError(f"shard {str(path)!r} has the wrong sha256: expected "
                                 f"{shard['sha256']} (manifest {_describe(manifest)}), "
                                 f"found {digest}")
