"""Which code produced an artifact: package version and, in a git checkout, the commit."""

from __future__ import annotations

import subprocess
from importlib import metadata
from pathlib import Path

REPO_ROOT = Path(__file__).resolve().parent.parent


def code_version() -> str:
    """'lipmem 0.1.0+g1a2b3c4' (with '-dirty' for uncommitted changes) or just the version."""
    try:
        version = metadata.version("lipmem")
    except metadata.PackageNotFoundError:
        version = "unknown"
    try:
        commit = subprocess.run(["git", "-C", str(REPO_ROOT), "rev-parse", "--short", "HEAD"],
                                capture_output=True, text=True, timeout=10, check=True).stdout.strip()
        dirty = subprocess.run(["git", "-C", str(REPO_ROOT), "status", "--porcelain",
                                "--untracked-files=no"], capture_output=True, text=True,
                               timeout=10, check=True).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return f"lipmem {version}"
    return f"lipmem {version}+g{commit}{'-dirty' if dirty else ''}"
