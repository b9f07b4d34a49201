"""The W&B side of artifacts: download-and-verify, logging registry versions, lineage.

Kept behind a small interface (WandbBackend, log_artifact, record_input) because no W&B
server is reachable from most places lipmem runs; tests drive WandbBackend with a fake.
A W&B artifact logged by lipmem carries `registry_ref` and `files_sha256` in its metadata,
so a download is verified against the same digests as the registry version it came from.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from datamodules.atomic_files import sha256_file, write_json_atomic
from memory_bank.artifacts.registry import (
    ARTIFACT_JSON,
    ArtifactIntegrityError,
    ArtifactNotFound,
    ArtifactVersion,
    LocalRegistry,
    artifact_payload,
    parse_version,
    read_version,
)

if TYPE_CHECKING:
    from memory_bank.artifacts.reference_syntax import Reference

LINEAGE_KEYS = ("registry_ref", "files_sha256")
DEFAULT_PROJECT = "lipmem"  # LipmemWandbLogger's default project
_NOT_FOUND = re.compile(r"not found|does not exist|no such|could not find", re.IGNORECASE)


def _is_disabled(run: Any) -> bool:
    # wandb's disabled run (NoopRun) has disabled=True; Lightning's DummyExperiment on
    # non-zero ranks answers every attribute with a no-op function (truthy) -> also skipped.
    return run is None or bool(getattr(run, "disabled", False))


def _default_cache_dir() -> Path:
    staged = os.environ.get("WANDB_ARTIFACT_DIR")
    if staged:
        return Path(staged) / "lipmem-downloads"
    return LocalRegistry.default().root / ".wandb-cache"


class WandbBackend:
    """Real W&B: run.use_artifact(...) for lineage when a run is given, else
    wandb.Api().artifact(...); .download(root=...) into a cache dir, then verified like a
    registry version (an artifact.json is written next to the download and reused)."""

    def __init__(self, run: Any | None = None, cache_dir: str | os.PathLike | None = None,
                 api: Any | None = None) -> None:
        self.run = run
        self.cache_dir = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
        self._api = api

    @property
    def api(self) -> Any:
        if self._api is None:
            import wandb

            self._api = wandb.Api()
        return self._api

    def _fetch(self, ref: Reference) -> Any:
        path = ref.wandb_path
        try:
            if self.run is not None and not _is_disabled(self.run):
                return self.run.use_artifact(path)  # the run's entity/project fill the gaps
            if ref.project is None:  # Api alone would look in 'uncategorized'
                path = f"{os.environ.get('WANDB_PROJECT') or DEFAULT_PROJECT}/{path}"
            return self.api.artifact(path)
        except Exception as exc:
            if _NOT_FOUND.search(str(exc)):
                raise ArtifactNotFound(f"W&B has no artifact {path!r} ({ref.raw!r}): "
                                       f"{exc}") from exc
            raise

    def resolve(self, ref: Reference) -> ArtifactVersion:
        art = self._fetch(ref)
        name = str(art.name).split(":")[0]
        number = parse_version(str(getattr(art, "version", "")))
        if number is None:
            raise ArtifactIntegrityError(f"W&B artifact {ref.raw!r}: version "
                                         f"{getattr(art, 'version', None)!r} is not vN")
        entity = getattr(art, "entity", None) or ref.entity
        project = getattr(art, "project", None) or ref.project
        source = "wandb:" + "/".join(p for p in (entity, project, f"{name}:v{number}") if p)
        metadata = dict(art.metadata or {})
        expected = metadata.get("files_sha256")
        if not isinstance(expected, dict):  # not logged by lipmem
            expected = None
        aliases = tuple(str(a) for a in getattr(art, "aliases", None) or ())
        dest = self.cache_dir / (f"{entity}--{project}" if entity or project else "_") / name
        dest = dest / f"v{number}"
        if (dest / ARTIFACT_JSON).is_file():
            try:
                cached = read_version(dest, verify=True, aliases=aliases)
                if expected is None or cached.files == expected:
                    return cached
            except (ArtifactIntegrityError, ArtifactNotFound):
                pass
            shutil.rmtree(dest, ignore_errors=True)  # stale or damaged: download again
        dest.parent.mkdir(parents=True, exist_ok=True)
        tmp = Path(tempfile.mkdtemp(prefix=".download-", dir=dest.parent))
        try:
            art.download(root=str(tmp))
            files = self._check_download(ref, tmp, expected)
            extra = {k: v for k, v in metadata.items() if k not in LINEAGE_KEYS}
            write_json_atomic(tmp / ARTIFACT_JSON, artifact_payload(
                name, number, str(art.type), files, extra, source=source))
            try:
                os.rename(tmp, dest)
            except OSError:  # another process finished the same download first
                shutil.rmtree(tmp, ignore_errors=True)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        return read_version(dest, verify=True, aliases=aliases)

    @staticmethod
    def _check_download(ref: Reference, root: Path,
                        expected: dict[str, str] | None) -> dict[str, dict[str, Any]]:
        """{file: {sha256, size}}; against `files_sha256` when lipmem logged the artifact."""
        if expected is None:  # not logged by lipmem: take what W&B delivered
            names = sorted(p.relative_to(root).as_posix() for p in root.rglob("*") if p.is_file())
            if ARTIFACT_JSON in names:
                raise ArtifactIntegrityError(f"W&B artifact {ref.raw!r} holds a file named "
                                             f"{ARTIFACT_JSON}, which lipmem reserves")
            return {n: {"sha256": sha256_file(root / n), "size": (root / n).stat().st_size}
                    for n in names}
        files = {}
        for name, digest in expected.items():
            path = root / name
            if not path.is_file():
                raise ArtifactIntegrityError(f"W&B artifact {ref.raw!r}: file {name!r} listed in "
                                             "its files_sha256 metadata was not downloaded")
            actual = sha256_file(path)
            if actual != digest:
                raise ArtifactIntegrityError(f"W&B artifact {ref.raw!r}: downloaded file {name!r} "
                                             f"sha256 expected {digest}, actual {actual}")
            files[name] = {"sha256": actual, "size": path.stat().st_size}
        return files


def log_artifact(run: Any, version: ArtifactVersion, aliases: Sequence[str] | None = None) -> None:
    """Log a published registry version into a W&B run (online or offline, offline is synced
    later by `wandb sync`), with the registry ref and file digests in its metadata.
    No-op when run is None or is wandb's disabled run."""
    if _is_disabled(run):
        return
    import wandb

    art = wandb.Artifact(version.name, type=version.type,
                         metadata={**version.metadata, "registry_ref": version.ref,
                                   "files_sha256": dict(version.files)})
    for name in version.files:
        # registry files never change after publishing: no staging copy needed
        art.add_file(str(version.file(name)), name=name, policy="immutable")
    wanted = version.aliases if aliases is None else aliases
    run.log_artifact(art, aliases=[a for a in wanted if parse_version(a) is None])


def _describe_input(ref: str, target: ArtifactVersion | Path) -> dict[str, Any]:
    if isinstance(target, ArtifactVersion):
        entry = {"ref": ref, "resolved": target.ref, "type": target.type,
                 "sha256": dict(target.files)}
        if target.source:
            entry["source"] = target.source
        return entry
    path = Path(target)
    if path.is_dir():
        digests = {p.relative_to(path).as_posix(): sha256_file(p)
                   for p in sorted(path.rglob("*")) if p.is_file()}
    else:
        digests = {path.name: sha256_file(path)}
    return {"ref": ref, "resolved": str(path.absolute()), "sha256": digests}


def record_input(run: Any, key: str, ref: str, version: ArtifactVersion | Path,
                 wandb_mode: str) -> None:
    """Lineage. Always: {ref, resolved version, sha256 of files} under
    run.config['inputs'][key], so the run says what it used even offline. Online and the
    input came from W&B: also run.use_artifact(...) so the W&B graph links it."""
    if _is_disabled(run):
        return
    entry = _describe_input(ref, version)
    if (wandb_mode == "online" and isinstance(version, ArtifactVersion)
            and (version.source or "").startswith("wandb:")):
        from wandb.errors import Error as WandbError

        try:
            run.use_artifact(version.source[len("wandb:"):])
        except (WandbError, TypeError, ValueError, OSError) as exc:
            # lineage is best effort; the config entry below still says what was used
            entry["use_artifact_error"] = f"{type(exc).__name__}: {exc}"
    inputs = dict(run.config.get("inputs") or {})
    inputs[key] = entry
    run.config.update({"inputs": inputs}, allow_val_change=True)
