"""A local artifact registry with W&B's `name:alias` / `name:vN` semantics, no server needed.

W&B cannot resolve artifacts offline, so every job also publishes its outputs here and the
next job resolves them from here. Layout under the root:

    NAME/vN/            the copied files + artifact.json (name, version, type, files with
                        sha256 and size, metadata, created)
    NAME/aliases.json   alias -> version
    NAME/.lock          fcntl lock serialising alias updates

Nothing half-written is ever resolvable: files and artifact.json are written into a hidden
temporary folder, which becomes `vN` with one rename (a rename onto an existing `vN` fails,
so concurrent publishers never share a version); a `vN` without artifact.json is ignored.

A publisher holds an fcntl lock on `NAME/.publish-TOKEN.lock` while it fills
`NAME/.publish-TOKEN/`; the lock dies with the process, so the next publish removes the
temporary folders of publishers that were killed (SIGKILL, a lost node) and keeps those of
publishers still at work. Aliases only ever move forward: under racing publishes an alias
stays on the higher version, whichever publisher updates the table last.
"""

from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import shutil
import time
from collections.abc import Iterator, Mapping, Sequence
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import datetime, timezone
from pathlib import Path, PurePosixPath
from typing import Any

from datamodules.atomic_files import sha256_file, write_json_atomic

ARTIFACT_JSON = "artifact.json"
ALIASES_JSON = "aliases.json"
LOCK_FILE = ".lock"
PUBLISH_PREFIX = ".publish-"
# a temporary folder without a lock file is from a lipmem that did not write one: removed
# once it is this old (seconds) and its publisher surely gone
UNLOCKED_STALE_AFTER = 24 * 3600
FORMAT = 1
NAME_RE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
VERSION_RE = re.compile(r"v(\d+)")
_MAX_CLAIMS = 10_000


class ArtifactNotFound(LookupError):
    """A reference that names nothing; the message says what does exist."""


class ArtifactIntegrityError(ValueError):
    """An artifact whose files no longer match its artifact.json, or an unreadable one."""


class ArtifactFileMissing(KeyError):
    """`ArtifactVersion.file(name)` for a name the artifact does not hold."""

    def __str__(self) -> str:  # KeyError would print the message repr-quoted
        return str(self.args[0]) if self.args else ""


@dataclass(frozen=True)
class ArtifactVersion:
    name: str
    version: int
    type: str
    path: Path                     # the version's folder
    files: dict[str, str]          # relative file name -> sha256 hex
    metadata: dict[str, Any]
    aliases: tuple[str, ...]
    created: str                   # ISO time, UTC
    source: str | None = None      # "wandb:entity/project/name:vN" when downloaded from W&B

    @property
    def ref(self) -> str:
        return f"{self.name}:v{self.version}"

    def file(self, name: str) -> Path:
        if name not in self.files:
            raise ArtifactFileMissing(f"artifact {self.ref} ({self.path}) has no file {name!r}; "
                                      f"it holds {sorted(self.files)}")
        return self.path / name


def validate_name(name: str, what: str = "artifact name") -> str:
    if not isinstance(name, str) or not NAME_RE.fullmatch(name):
        raise ValueError(f"{what} {name!r} is not valid: expected letters, digits, '.', '_' "
                         "or '-', starting with a letter or digit")
    return name


def validate_alias(alias: str) -> str:
    validate_name(alias, "alias")
    if VERSION_RE.fullmatch(alias):
        raise ValueError(f"alias {alias!r} looks like a version number (vN); versions are "
                         "assigned by the registry, pick another alias")
    return alias


def parse_version(alias: str) -> int | None:
    """`v3` -> 3; anything else -> None."""
    match = VERSION_RE.fullmatch(alias)
    return int(match.group(1)) if match else None


def artifact_payload(name: str, version: int, type: str, files: Mapping[str, Mapping[str, Any]],
                     metadata: Mapping[str, Any], **extra: Any) -> dict[str, Any]:
    """The content of artifact.json (`files`: name -> {sha256, size})."""
    return {"format": FORMAT, "name": name, "version": version, "type": type,
            "files": {k: dict(v) for k, v in files.items()}, "metadata": dict(metadata),
            "created": datetime.now(timezone.utc).isoformat(timespec="seconds"), **extra}


def read_version(path: str | os.PathLike, *, verify: bool = True,
                 aliases: Sequence[str] = ()) -> ArtifactVersion:
    """Load a version folder from its artifact.json and, with `verify`, check every file."""
    path = Path(path)
    meta_path = path / ARTIFACT_JSON
    if not meta_path.is_file():
        raise ArtifactNotFound(f"{path} has no {ARTIFACT_JSON}: not a finished artifact version "
                               "(an interrupted publish, or not an artifact folder)")
    try:
        data = json.loads(meta_path.read_text())
        files = {_check_arcname(str(k)): str(v["sha256"]) for k, v in data["files"].items()}
        version = ArtifactVersion(
            name=str(data["name"]), version=int(data["version"]), type=str(data["type"]),
            path=path, files=files, metadata=dict(data.get("metadata") or {}),
            aliases=tuple(aliases), created=str(data.get("created", "")),
            source=data.get("source"))
    except (OSError, ValueError, KeyError, TypeError, AttributeError) as exc:
        raise ArtifactIntegrityError(f"{meta_path} is not a readable artifact.json with name, "
                                     f"version, type and files ({type(exc).__name__}: {exc})"
                                     ) from exc
    if verify:
        verify_files(version)
    return version


def verify_files(version: ArtifactVersion) -> None:
    """Every file listed in artifact.json is present with the recorded sha256."""
    for name, expected in version.files.items():
        path = version.path / name
        if not path.is_file():
            raise ArtifactIntegrityError(f"artifact {version.ref} ({version.path}): file {name!r} "
                                         f"listed in {ARTIFACT_JSON} is missing")
        actual = sha256_file(path)
        if actual != expected:
            raise ArtifactIntegrityError(f"artifact {version.ref}: file {path} has changed since "
                                         f"it was published: sha256 expected {expected}, actual "
                                         f"{actual}")


def _check_arcname(arcname: str) -> str:
    parts = PurePosixPath(arcname).parts
    if (not arcname or "\\" in arcname or arcname.startswith("/") or ".." in parts
            or arcname == ARTIFACT_JSON or any(p in ("", ".") for p in arcname.split("/"))):
        raise ValueError(f"artifact file name {arcname!r} is not valid: expected a relative "
                         f"path without '..', '.' or empty parts, and not {ARTIFACT_JSON!r}")
    return arcname


def _copy_hashed(src: Path, dst: Path, chunk: int = 1 << 20) -> tuple[str, int]:
    """Copy and hash in one pass (the digest is of the bytes actually stored)."""
    digest, size = hashlib.sha256(), 0
    dst.parent.mkdir(parents=True, exist_ok=True)
    with open(src, "rb") as fin, open(dst, "wb") as fout:
        while block := fin.read(chunk):
            digest.update(block)
            fout.write(block)
            size += len(block)
        fout.flush()
        os.fsync(fout.fileno())
    os.chmod(dst, 0o644)
    return digest.hexdigest(), size


def _lock_path(tmp: Path) -> Path:
    """The lock file a publisher holds while it fills ``tmp``."""
    return tmp.with_name(tmp.name + ".lock")


class LocalRegistry:
    ENV = "LIPMEM_REGISTRY"

    def __init__(self, root: str | os.PathLike) -> None:
        self.root = Path(root).expanduser().absolute()

    @classmethod
    def default(cls) -> LocalRegistry:
        """$LIPMEM_REGISTRY, else ./artifacts (fixed to an absolute path now)."""
        return cls(os.environ.get(cls.ENV) or "artifacts")

    def __repr__(self) -> str:
        return f"LocalRegistry({str(self.root)!r})"

    # ------------------------------------------------------------------ reading
    def _version_dirs(self, name: str) -> dict[int, Path]:
        """Every `vN` entry, finished or not (so a broken vN's number is never reused)."""
        folder = self.root / name
        if not folder.is_dir():
            return {}
        out = {}
        for entry in folder.iterdir():
            number = parse_version(entry.name)
            if number is not None:
                out[number] = entry
        return out

    def versions(self, name: str) -> list[int]:
        """Finished versions (a vN folder holding artifact.json), ascending."""
        validate_name(name)
        return sorted(n for n, p in self._version_dirs(name).items()
                      if (p / ARTIFACT_JSON).is_file())

    def aliases(self, name: str) -> dict[str, int]:
        validate_name(name)
        path = self.root / name / ALIASES_JSON
        if not path.is_file():
            return {}
        try:
            data = json.loads(path.read_text())
            return {str(k): int(v) for k, v in data.items()}
        except (OSError, ValueError, TypeError, AttributeError) as exc:
            raise ArtifactIntegrityError(f"{path} is not a readable alias table (a JSON object "
                                         f"alias -> version): {type(exc).__name__}: {exc}"
                                         ) from exc

    def names(self) -> list[str]:
        if not self.root.is_dir():
            return []
        return sorted(p.name for p in self.root.iterdir()
                      if p.is_dir() and NAME_RE.fullmatch(p.name) and self.versions(p.name))

    def _describe(self, name: str) -> str:
        versions, aliases = self.versions(name), self.aliases(name)
        if not versions:
            others = self.names()
            return (f"registry {self.root} has no artifact named {name!r}; artifacts there: "
                    f"{others or 'none'}")
        alias_text = ", ".join(f"{a} -> v{v}" for a, v in sorted(aliases.items())) or "none"
        return (f"{name!r} in registry {self.root} has versions "
                f"{', '.join(f'v{v}' for v in versions)} and aliases: {alias_text}")

    def resolve(self, name: str, alias: str = "latest", *, verify: bool = True) -> ArtifactVersion:
        """`alias` is an alias or `vN`; with `verify`, every file's sha256 is checked."""
        validate_name(name)
        validate_name(alias, "alias")
        number = parse_version(alias)
        if number is None:
            number = self.aliases(name).get(alias)
            if number is None:
                raise ArtifactNotFound(f"{name}:{alias} not found: {self._describe(name)}")
        path = self.root / name / f"v{number}"
        if not (path / ARTIFACT_JSON).is_file():
            why = (f"v{number} has no {ARTIFACT_JSON} (an interrupted publish?)" if path.exists()
                   else f"v{number} does not exist")
            raise ArtifactNotFound(f"{name}:{alias} not found ({why}): {self._describe(name)}")
        pointing = tuple(sorted(a for a, v in self.aliases(name).items() if v == number))
        version = read_version(path, verify=verify, aliases=pointing)
        if version.name != name or version.version != number:
            raise ArtifactIntegrityError(f"{path / ARTIFACT_JSON} says {version.ref}, expected "
                                         f"{name}:v{number} (folders moved by hand?)")
        return version

    # ------------------------------------------------------------------ writing
    @contextmanager
    def _locked(self, name: str) -> Iterator[None]:
        fd = os.open(self.root / name / LOCK_FILE, os.O_RDWR | os.O_CREAT, 0o644)
        try:
            fcntl.flock(fd, fcntl.LOCK_EX)
            yield
        finally:
            os.close(fd)  # closing releases the lock

    def publish(self, name: str, type: str, files: Mapping[str, str | os.PathLike],
                metadata: Mapping[str, Any], aliases: Sequence[str] = ()) -> ArtifactVersion:
        """Copy `files` (arcname -> source file) into the next version; add `aliases` + latest.

        Aliases move to the new version, and only ever forward: two concurrent publishers
        leave every alias they share on the higher version.
        """
        validate_name(name)
        validate_name(type, "artifact type")
        if isinstance(aliases, str):
            raise TypeError(f"aliases={aliases!r}: expected a sequence of aliases, not a string")
        wanted = list(dict.fromkeys([*(validate_alias(a) for a in aliases), "latest"]))
        if not files:
            raise ValueError(f"publish {name!r}: no files given")
        sources = {}
        for arcname, src in files.items():
            src = Path(src)
            if not src.is_file():
                raise ValueError(f"publish {name!r}: {arcname!r} -> {src} is not a file "
                                 f"({'a folder' if src.is_dir() else 'missing'}); only plain "
                                 "files can be published")
            sources[_check_arcname(arcname)] = src
        if not isinstance(metadata, Mapping):
            raise TypeError(f"publish {name!r}: metadata must be a mapping, got "
                            f"{metadata.__class__.__name__}")
        try:
            metadata = json.loads(json.dumps(dict(metadata)))
        except (TypeError, ValueError) as exc:
            raise ValueError(f"publish {name!r}: metadata is not JSON-serialisable ({exc}); "
                             "store paths, tensors and arrays as strings, numbers or lists"
                             ) from exc

        folder = self.root / name
        folder.mkdir(parents=True, exist_ok=True)
        tmp, lock_fd = self._start_publish(name)
        try:
            stored = {}
            for arcname, src in sources.items():
                sha, size = _copy_hashed(src, tmp / arcname)
                stored[arcname] = {"sha256": sha, "size": size}
            os.chmod(tmp, 0o755)
            number = self._claim(name, type, tmp, stored, metadata)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise
        finally:
            _lock_path(tmp).unlink(missing_ok=True)
            os.close(lock_fd)
        with self._locked(name):
            table = self.aliases(name)
            for alias in wanted:
                if table.get(alias, -1) > number:
                    continue  # a concurrent publisher already moved it to a later version
                table[alias] = number
            write_json_atomic(folder / ALIASES_JSON, dict(sorted(table.items())))
        return self.resolve(name, f"v{number}", verify=False)

    def _start_publish(self, name: str) -> tuple[Path, int]:
        """A new temporary folder and the held lock that marks its publisher alive; the
        temporary folders of dead publishers are removed first. Both under the name's lock,
        so no publisher is seen between creating its folder and locking it."""
        folder = self.root / name
        with self._locked(name):
            self._remove_stale_publishes(folder)
            while True:
                tmp = folder / f"{PUBLISH_PREFIX}{secrets.token_hex(8)}"
                try:
                    fd = os.open(_lock_path(tmp), os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
                    break
                except FileExistsError:
                    continue
            fcntl.flock(fd, fcntl.LOCK_EX)
            try:
                tmp.mkdir()
            except BaseException:
                _lock_path(tmp).unlink(missing_ok=True)
                os.close(fd)
                raise
        return tmp, fd

    @staticmethod
    def _remove_stale_publishes(folder: Path) -> list[Path]:
        """Remove the temporary folders (and lock files) of publishers that died: their lock
        can be taken. Call with the name's lock held. Returns what was removed."""
        removed = []
        for entry in folder.glob(f"{PUBLISH_PREFIX}*"):
            if entry.name.endswith(".lock"):
                tmp, lock = entry.with_name(entry.name.removesuffix(".lock")), entry
            elif entry.is_dir():
                tmp, lock = entry, _lock_path(entry)
                if lock.exists():
                    continue  # judged by its lock file, above
            else:
                continue
            if lock.exists():
                try:
                    fd = os.open(lock, os.O_RDWR)
                except FileNotFoundError:
                    continue  # its publisher just finished
                try:
                    fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                except BlockingIOError:
                    continue  # its publisher is alive
                finally:
                    os.close(fd)
            else:
                try:
                    age = time.time() - tmp.stat().st_mtime
                except FileNotFoundError:
                    continue  # its publisher just finished (renamed it, then dropped its lock)
                if age < UNLOCKED_STALE_AFTER:
                    continue  # no lock file: only old ones are surely abandoned
            shutil.rmtree(tmp, ignore_errors=True)
            lock.unlink(missing_ok=True)
            removed.append(tmp)
        return removed

    def _claim(self, name: str, type: str, tmp: Path, stored: dict[str, dict[str, Any]],
               metadata: dict[str, Any]) -> int:
        """Rename the finished temp folder to the first free vN; artifact.json says that N."""
        existing = self._version_dirs(name)
        number = max(existing) + 1 if existing else 0
        for _ in range(_MAX_CLAIMS):
            write_json_atomic(tmp / ARTIFACT_JSON,
                              artifact_payload(name, number, type, stored, metadata))
            try:
                os.rename(tmp, self.root / name / f"v{number}")
                return number
            except OSError as exc:
                if exc.errno not in (errno.EEXIST, errno.ENOTEMPTY, errno.ENOTDIR):
                    raise
                number += 1
        raise RuntimeError(f"publish {name!r}: could not claim a version folder in "
                           f"{self.root / name} after {_MAX_CLAIMS} tries")
