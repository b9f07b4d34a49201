"""What a user may write wherever lipmem takes an artifact, and how each form is resolved.

    wandb:entity/project/name:alias   W&B only (needs a server)
    name:alias, name:vN, name         W&B when online (falling back to the local registry
                                      when W&B does not have it), else the local registry
    a path (abs, relative, ~)         that file; a folder with artifact.json is loaded and
                                      verified like a registry version

One module owns this so that configs, the CLI and jobs all accept the same strings.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from memory_bank.registry import (
    ARTIFACT_JSON,
    ArtifactNotFound,
    ArtifactVersion,
    LocalRegistry,
    read_version,
    validate_name,
)

if TYPE_CHECKING:
    from memory_bank.wandb_artifacts import WandbBackend

WANDB_PREFIX = "wandb:"


class WandbUnavailable(ArtifactNotFound):
    """A `wandb:` reference while W&B is offline or disabled: it cannot be resolved here."""


class ArtifactTypeMismatch(ValueError):
    """A reference that resolved to an artifact of another type than the caller needs."""


@dataclass(frozen=True)
class Reference:
    raw: str
    kind: str                      # "wandb" | "registry" | "path"
    name: str | None = None
    alias: str | None = None
    entity: str | None = None
    project: str | None = None
    path: Path | None = None

    @property
    def wandb_path(self) -> str:
        """`[entity/][project/]name:alias`, as W&B's use_artifact / Api.artifact take it."""
        return "/".join(p for p in (self.entity, self.project, f"{self.name}:{self.alias}") if p)


def _split_alias(text: str, raw: str) -> tuple[str, str]:
    name, sep, alias = text.partition(":")
    if sep and not alias:
        raise ValueError(f"reference {raw!r}: empty alias after ':' (expected name:alias or "
                         "name:vN)")
    if ":" in alias:
        raise ValueError(f"reference {raw!r}: more than one ':' (expected name:alias or name:vN)")
    alias = alias or "latest"
    validate_name(name, f"reference {raw!r}: artifact name")
    validate_name(alias, f"reference {raw!r}: alias")
    return name, alias


def _looks_like_path(text: str) -> bool:
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return (text.startswith((".", "~")) or any(s in text for s in seps)
            or os.path.lexists(text))


def parse_reference(ref: str) -> Reference:
    """Classify `ref` (see the module docstring); raises ValueError on a malformed one."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError(f"artifact reference {ref!r} is empty: expected name:alias, "
                         "wandb:entity/project/name:alias or a file path")
    text = ref.strip()
    if text.startswith(WANDB_PREFIX):
        body = text[len(WANDB_PREFIX):]
        parts = body.split("/")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise ValueError(f"reference {ref!r}: expected wandb:entity/project/name:alias")
        name, alias = _split_alias(parts[-1], ref)
        prefix = [None] * (3 - len(parts)) + parts[:-1]
        return Reference(raw=ref, kind="wandb", name=name, alias=alias, entity=prefix[0],
                         project=prefix[1])
    if _looks_like_path(text):
        return Reference(raw=ref, kind="path", path=Path(text).expanduser())
    name, alias = _split_alias(text, ref)
    return Reference(raw=ref, kind="registry", name=name, alias=alias)


def _check_type(ref: str, version: ArtifactVersion, expected_type: str | None) -> ArtifactVersion:
    if expected_type is not None and version.type != expected_type:
        raise ArtifactTypeMismatch(f"reference {ref!r} resolved to {version.ref} of type "
                                   f"{version.type!r}, but an artifact of type "
                                   f"{expected_type!r} is needed here")
    return version


def _mode(wandb_mode: str | None) -> str:
    if wandb_mode in ("online", "offline", "disabled"):
        return wandb_mode
    from lightning_modules.wandb_logger import resolve_mode  # imports lightning: only for auto

    return resolve_mode(wandb_mode or "auto")


def _backend(wandb_backend: WandbBackend | None, registry: LocalRegistry) -> WandbBackend:
    if wandb_backend is not None:
        return wandb_backend
    from memory_bank.wandb_artifacts import WandbBackend

    return WandbBackend(cache_dir=registry.root / ".wandb-cache")


def resolve_reference(ref: str, *, registry: LocalRegistry | None = None,
                      expected_type: str | None = None, wandb_mode: str | None = None,
                      wandb_backend: WandbBackend | None = None) -> ArtifactVersion | Path:
    """An ArtifactVersion (files verified) for artifact references and artifact folders,
    a Path for a plain file or folder. `wandb_mode` None means the logger's `auto` rule."""
    parsed = parse_reference(ref)
    if parsed.kind == "path":
        path = parsed.path
        assert path is not None
        if not path.exists():
            raise ArtifactNotFound(f"reference {ref!r}: no such file or directory "
                                   f"{path.absolute()}")
        if path.is_dir() and (path / ARTIFACT_JSON).is_file():
            return _check_type(ref, read_version(path, verify=True), expected_type)
        return path

    registry = registry or LocalRegistry.default()
    mode = _mode(wandb_mode)
    if parsed.kind == "wandb":
        if mode != "online":
            local = f"{parsed.name}:{parsed.alias}"
            raise WandbUnavailable(
                f"reference {ref!r} names a W&B artifact, but W&B is {mode} here and cannot "
                "resolve artifacts without a server. Use the local registry form "
                f"{local!r} (resolved in {registry.root}, where every lipmem job also "
                "publishes), or a path to the artifact's folder or file.")
        return _check_type(ref, _backend(wandb_backend, registry).resolve(parsed), expected_type)

    assert parsed.name is not None and parsed.alias is not None
    if mode == "online":
        try:
            version = _backend(wandb_backend, registry).resolve(parsed)
        except ArtifactNotFound as wandb_missing:
            try:
                version = registry.resolve(parsed.name, parsed.alias)
            except ArtifactNotFound as local_missing:
                raise ArtifactNotFound(f"reference {ref!r} found neither in W&B "
                                       f"({wandb_missing}) nor locally ({local_missing})"
                                       ) from local_missing
        return _check_type(ref, version, expected_type)
    return _check_type(ref, registry.resolve(parsed.name, parsed.alias), expected_type)
