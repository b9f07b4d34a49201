"""The registry under faults: a publisher killed mid-copy leaves nothing that a later publish
does not clean up; a live publisher's work is never touched; racing publishers never move an
alias back to an older version; an artifact.json cannot point outside its folder."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

from memory_bank.artifacts.registry import (
    ARTIFACT_JSON,
    ArtifactIntegrityError,
    LocalRegistry,
)
from tests.conftest import REPO

NAME = "memory-bank"

# A publisher that stops for good between copying its two files, with a marker saying so.
STUCK_PUBLISHER = '''
import sys, time
from pathlib import Path
import memory_bank.artifacts.registry as mod
root, marker, src = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
real = mod._copy_hashed
calls = []
def copy(a, b):
    calls.append(b)
    if len(calls) == 2:
        marker.write_text(str(b.parent))
        time.sleep(3600)
    return real(a, b)
mod._copy_hashed = copy
mod.LocalRegistry(root).publish("memory-bank", "memory-bank", {"a.bin": src, "b.bin": src}, {})
'''


def publish(registry: LocalRegistry, tmp_path: Path, payload: bytes = b"codes",
            aliases: tuple[str, ...] = ()):
    src = tmp_path / f"src-{payload.hex()[:16]}.bin"
    src.write_bytes(payload)
    return registry.publish(NAME, "memory-bank", {"codes.bin": src}, {}, aliases=aliases)


def start_stuck_publisher(registry: LocalRegistry, tmp_path: Path,
                          tag: str) -> tuple[subprocess.Popen, Path]:
    src = tmp_path / "payload.bin"
    src.write_bytes(b"x" * 1000)
    marker = tmp_path / f"stuck-{tag}"
    proc = subprocess.Popen([sys.executable, "-c", STUCK_PUBLISHER, str(registry.root),
                             str(marker), str(src)], cwd=REPO,
                            env=dict(os.environ, PYTHONPATH=str(REPO)))
    deadline = time.monotonic() + 120
    while not marker.exists():
        assert proc.poll() is None, "the publisher died before it got stuck"
        assert time.monotonic() < deadline
        time.sleep(0.1)
    return proc, Path(marker.read_text())


def leftovers(registry: LocalRegistry) -> list[str]:
    return sorted(p.name for p in (registry.root / NAME).iterdir() if p.name.startswith(".publish"))


def test_a_killed_publishers_folder_is_removed_by_the_next_publish(tmp_path):
    """The reported case: SIGKILL during a publish left `.publish-*` folders forever."""
    registry = LocalRegistry(tmp_path / "registry")
    publish(registry, tmp_path, b"first")
    proc, tmp = start_stuck_publisher(registry, tmp_path, "killed")
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert tmp.is_dir() and leftovers(registry)  # what the kill left
    version = publish(registry, tmp_path, b"second")
    assert leftovers(registry) == []
    assert registry.resolve(NAME).version == version.version
    assert registry.versions(NAME) == [0, version.version]


def test_a_live_publishers_folder_is_left_alone(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    proc, tmp = start_stuck_publisher(registry, tmp_path, "alive")
    try:
        publish(registry, tmp_path, b"meanwhile")
        assert tmp.is_dir() and (tmp / "a.bin").is_file()
    finally:
        proc.kill()
        proc.wait()
    publish(registry, tmp_path, b"after")
    assert not tmp.exists()


def test_an_old_unlocked_leftover_is_removed_and_a_fresh_one_kept(tmp_path):
    """Temporary folders of earlier lipmem versions carry no lock: removed once old."""
    registry = LocalRegistry(tmp_path / "registry")
    publish(registry, tmp_path, b"first")
    old, fresh = registry.root / NAME / ".publish-old", registry.root / NAME / ".publish-new"
    for folder in (old, fresh):
        folder.mkdir()
        (folder / "codes.bin").write_bytes(b"half")
    long_ago = time.time() - 3 * 24 * 3600
    os.utime(old, (long_ago, long_ago))
    publish(registry, tmp_path, b"second")
    assert leftovers(registry) == [".publish-new"]


def test_no_alias_moves_back_when_an_older_version_finishes_last(tmp_path, monkeypatch):
    """Publisher A claims v0, publisher B claims v1 and moves `best` and `latest` to it;
    then A updates the aliases. Before, `best` went back to v0."""
    registry = LocalRegistry(tmp_path / "registry")
    claimed, release = threading.Event(), threading.Event()
    real_claim = LocalRegistry._claim

    def slow_first_claim(self, *args, **kwargs):
        number = real_claim(self, *args, **kwargs)
        if threading.current_thread().name == "A":
            claimed.set()
            release.wait(60)
        return number

    monkeypatch.setattr(LocalRegistry, "_claim", slow_first_claim)
    results = {}
    a = threading.Thread(name="A", target=lambda: results.setdefault(
        "A", publish(registry, tmp_path, b"from A", aliases=("best",))))
    a.start()
    assert claimed.wait(60)
    results["B"] = publish(registry, tmp_path, b"from B", aliases=("best",))
    release.set()
    a.join(60)
    assert (results["A"].version, results["B"].version) == (0, 1)
    assert registry.aliases(NAME) == {"best": 1, "latest": 1}
    assert registry.resolve(NAME, "best").file("codes.bin").read_bytes() == b"from B"


def _publish_many(root: str, tag: str, count: int) -> None:
    registry = LocalRegistry(root)
    folder = Path(root).parent / f"src-{tag}"
    folder.mkdir(exist_ok=True)
    for i in range(count):
        src = folder / f"{i}.bin"
        src.write_bytes(f"{tag}-{i}".encode())
        registry.publish(NAME, "memory-bank", {"codes.bin": src}, {}, aliases=("best", tag))


def test_racing_processes_leave_every_alias_on_the_highest_version(tmp_path):
    import multiprocessing

    root = str(tmp_path / "registry")
    context = multiprocessing.get_context("spawn")
    procs = [context.Process(target=_publish_many, args=(root, f"p{i}", 5)) for i in range(3)]
    for proc in procs:
        proc.start()
    for proc in procs:
        proc.join(120)
        assert proc.exitcode == 0
    registry = LocalRegistry(root)
    versions = registry.versions(NAME)
    assert versions == list(range(15))
    aliases = registry.aliases(NAME)
    assert aliases["best"] == aliases["latest"] == 14
    for tag in ("p0", "p1", "p2"):  # each publisher's own alias: its last (highest) version
        mine = [v for v in versions if registry.resolve(NAME, f"v{v}").file("codes.bin")
                .read_bytes().startswith(f"{tag}-".encode())]
        assert aliases[tag] == max(mine)
    assert leftovers(registry) == []


@pytest.mark.parametrize("name", ["../../outside.bin", "/etc/hostname", "a/../../b"])
def test_artifact_json_cannot_name_a_file_outside_its_folder(tmp_path, name):
    registry = LocalRegistry(tmp_path / "registry")
    version = publish(registry, tmp_path, b"good")
    meta = json.loads((version.path / ARTIFACT_JSON).read_text())
    meta["files"][name] = {"sha256": "0" * 64, "size": 1}
    (version.path / ARTIFACT_JSON).write_text(json.dumps(meta))
    with pytest.raises(ArtifactIntegrityError, match=ARTIFACT_JSON):
        registry.resolve(NAME, "v0")
