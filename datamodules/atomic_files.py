"""Writing files so that nothing half-written is ever mistaken for complete.

One mechanism for every file lipmem writes (shards, manifests, codes, weights, features,
images, registry entries, sweep state): write a hidden temp file in the destination folder,
then rename it over the target, which readers see as old-or-new, never a part. Kept free of
heavy imports: the artifact registry and the sweep runner use it without torch.
"""

from __future__ import annotations

import hashlib
import json
import os
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any


@contextmanager
def atomic_path(path: str | os.PathLike, suffix: str = ".tmp") -> Iterator[Path]:
    """Yield a temp path beside `path`; on success it becomes `path` (mode 0644), on any
    error it is removed. `suffix` matters to writers that pick a format by extension."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=suffix, dir=path.parent)
    os.close(fd)
    try:
        yield Path(tmp)
        os.chmod(tmp, 0o644)  # mkstemp makes 0600; these files are shared data
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


def write_json_atomic(path: str | os.PathLike, payload: Any, *, allow_nan: bool = True) -> None:
    """Indented JSON plus a newline, flushed to disk before the rename."""
    with atomic_path(path) as tmp, open(tmp, "w") as fh:
        json.dump(payload, fh, indent=2, allow_nan=allow_nan)
        fh.write("\n")
        fh.flush()
        os.fsync(fh.fileno())


def sha256_file(path: str | os.PathLike, chunk: int = 1 << 20) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()
