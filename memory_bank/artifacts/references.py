"""What a user may write wherever lipmem takes an artifact, and how each form is resolved.

    wandb:entity/project/name:alias   W&B only (needs a server)
    name:alias, name:vN, name         W&B when online (falling back to the local registry
                                      when W&B does not have it), else the local registry
    a path (abs, relative, ~)         that file; a folder with artifact.json is loaded and
                                      verified like a registry version

One module owns this so that configs, the CLI and jobs all accept the same strings.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from memory_bank.artifacts.reference_syntax import WANDB_PREFIX, Reference, parse_reference
from memory_bank.artifacts.registry import (
    ARTIFACT_JSON,
    ArtifactNotFound,
    ArtifactVersion,
    LocalRegistry,
    read_version,
)
from memory_bank.artifacts.wandb_mode import resolve_mode

if TYPE_CHECKING:
    from memory_bank.artifacts.wandb_artifacts import WandbBackend

__all__ = ["WANDB_PREFIX", "ArtifactTypeMismatch", "Reference", "WandbUnavailable", "parse_reference",
           "resolve_reference"]


class WandbUnavailable(ArtifactNotFound):
    """A `wandb:` reference while W&B is offline or disabled: it cannot be resolved here."""


class ArtifactTypeMismatch(ValueError):
    """A reference that resolved to an artifact of another type than the caller needs."""


def _check_type(ref: str, version: ArtifactVersion, expected_type: str | None) -> ArtifactVersion:
    if expected_type is not None and version.type != expected_type:
        raise ArtifactTypeMismatch(f"reference {ref!r} resolved to {version.ref} of type "
                                   f"{version.type!r}, but an artifact of type "
                                   f"{expected_type!r} is needed here")
    return version


def _mode(wandb_mode: str | None) -> str:
    if wandb_mode in ("online", "offline", "disabled"):
        return wandb_mode
    return resolve_mode(wandb_mode or "auto")


def _backend(wandb_backend: WandbBackend | None, registry: LocalRegistry) -> WandbBackend:
    if wandb_backend is not None:
        return wandb_backend
    from memory_bank.artifacts.wandb_artifacts import WandbBackend

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
