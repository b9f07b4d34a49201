"""The local artifact registry: round trips, aliases, integrity, interrupted and concurrent
publishes, and refusing malformed input."""

import json
import multiprocessing
import threading

import pytest

from memory_bank.artifacts.registry import (
    ARTIFACT_JSON,
    ArtifactIntegrityError,
    ArtifactNotFound,
    LocalRegistry,
)


@pytest.fixture
def registry(tmp_path):
    return LocalRegistry(tmp_path / "registry")


def make_files(folder, **contents):
    folder.mkdir(parents=True, exist_ok=True)
    out = {}
    for name, data in contents.items():
        path = folder / f"{name}.src"
        path.write_bytes(data)
        out[name] = path
    return out


def publish(registry, tmp_path, payload=b"codes", aliases=(), name="memory-bank", **meta):
    files = make_files(tmp_path / "src", codes=payload, notes=b"notes " + payload)
    return registry.publish(name, "memory-bank", {"codes.bin": files["codes"],
                                                  "sub/notes.txt": files["notes"]},
                            {"n": 8, **meta}, aliases=aliases)


def test_publish_resolve_round_trip_and_latest_moves(registry, tmp_path):
    v0 = publish(registry, tmp_path, b"\x00\x01first", aliases=["n8"], method="faiss")
    assert (v0.name, v0.version, v0.ref, v0.type) == ("memory-bank", 0, "memory-bank:v0",
                                                      "memory-bank")
    assert v0.path == registry.root / "memory-bank" / "v0"
    assert set(v0.aliases) == {"n8", "latest"}
    for alias in ("latest", "n8", "v0"):
        got = registry.resolve("memory-bank", alias)
        assert got.file("codes.bin").read_bytes() == b"\x00\x01first"
        assert got.file("sub/notes.txt").read_bytes() == b"notes \x00\x01first"
        assert got.metadata == {"n": 8, "method": "faiss"} and got.files == v0.files
    on_disk = json.loads((v0.path / ARTIFACT_JSON).read_text())
    assert on_disk["name"] == "memory-bank" and on_disk["version"] == 0
    assert on_disk["files"]["codes.bin"]["size"] == len(b"\x00\x01first")
    assert len(on_disk["files"]["codes.bin"]["sha256"]) == 64 and on_disk["created"]

    v1 = publish(registry, tmp_path, b"second", aliases=["n4"])
    assert v1.version == 1 and registry.versions("memory-bank") == [0, 1]
    assert registry.aliases("memory-bank") == {"latest": 1, "n4": 1, "n8": 0}
    assert registry.resolve("memory-bank").file("codes.bin").read_bytes() == b"second"
    old = registry.resolve("memory-bank", "v0")
    assert old.file("codes.bin").read_bytes() == b"\x00\x01first" and old.aliases == ("n8",)
    assert registry.names() == ["memory-bank"]


def test_an_alias_points_at_one_version(registry, tmp_path):
    publish(registry, tmp_path, b"a", aliases=["best"])
    publish(registry, tmp_path, b"b", aliases=["best"])
    assert registry.aliases("memory-bank")["best"] == 1
    assert registry.resolve("memory-bank", "v0").aliases == ()
    assert registry.resolve("memory-bank", "best").file("codes.bin").read_bytes() == b"b"


def test_missing_alias_version_and_name_say_what_exists(registry, tmp_path):
    publish(registry, tmp_path, aliases=["n8"])
    with pytest.raises(ArtifactNotFound) as err:
        registry.resolve("memory-bank", "n80")
    assert "n80" in str(err.value) and "n8 -> v0" in str(err.value)
    assert str(registry.root) in str(err.value) and "v0" in str(err.value)
    with pytest.raises(ArtifactNotFound, match="v7 does not exist"):
        registry.resolve("memory-bank", "v7")
    with pytest.raises(ArtifactNotFound, match=r"no artifact named 'encoder'.*memory-bank"):
        registry.resolve("encoder")
    assert registry.versions("encoder") == [] and registry.aliases("encoder") == {}


def test_changed_file_is_refused_naming_both_digests(registry, tmp_path):
    version = publish(registry, tmp_path, b"original")
    path = version.file("codes.bin")
    path.write_bytes(b"0riginal")
    with pytest.raises(ArtifactIntegrityError) as err:
        registry.resolve("memory-bank", "latest")
    text = str(err.value)
    assert "sha256" in text and str(path) in text
    assert version.files["codes.bin"] in text
    assert registry.resolve("memory-bank", verify=False).version == 0  # explicit opt-out


def test_missing_file_and_unreadable_artifact_json_are_refused(registry, tmp_path):
    version = publish(registry, tmp_path)
    (version.path / "sub" / "notes.txt").unlink()
    with pytest.raises(ArtifactIntegrityError, match=r"'sub/notes.txt'.*missing"):
        registry.resolve("memory-bank")
    (version.path / ARTIFACT_JSON).write_text("{not json")
    with pytest.raises(ArtifactIntegrityError, match=ARTIFACT_JSON):
        registry.resolve("memory-bank", verify=False)


def test_file_lookup_names_the_files_it_has(registry, tmp_path):
    version = publish(registry, tmp_path)
    with pytest.raises(KeyError, match=r"no file 'codes.safetensors'.*codes.bin"):
        version.file("codes.safetensors")


def test_leftovers_of_killed_publishes_are_never_resolved(registry, tmp_path):
    publish(registry, tmp_path, b"good")
    folder = registry.root / "memory-bank"
    # killed while copying: a hidden temp folder, complete down to its artifact.json
    leftover = folder / ".publish-dead"
    leftover.mkdir()
    (leftover / "codes.bin").write_bytes(b"half")
    (leftover / ARTIFACT_JSON).write_text(json.dumps({"name": "memory-bank", "version": 1}))
    # a vN folder without artifact.json (not written by this registry, or damaged)
    broken = folder / "v1"
    broken.mkdir()
    (broken / "codes.bin").write_bytes(b"half")
    assert registry.versions("memory-bank") == [0]
    with pytest.raises(ArtifactNotFound, match="v1 has no artifact.json"):
        registry.resolve("memory-bank", "v1")
    assert registry.resolve("memory-bank").file("codes.bin").read_bytes() == b"good"
    # the broken number is never reused
    assert publish(registry, tmp_path, b"next").version == 2
    assert registry.versions("memory-bank") == [0, 2]


def test_failed_publish_leaves_nothing_behind(registry, tmp_path, monkeypatch):
    import memory_bank.artifacts.registry as mod

    publish(registry, tmp_path, b"good")
    real_copy = mod._copy_hashed
    calls = []

    def dying_copy(src, dst):
        calls.append(dst)
        if len(calls) == 2:
            raise KeyboardInterrupt  # killed between the two files
        return real_copy(src, dst)

    monkeypatch.setattr(mod, "_copy_hashed", dying_copy)
    with pytest.raises(KeyboardInterrupt):
        publish(registry, tmp_path, b"bad")
    assert sorted(p.name for p in (registry.root / "memory-bank").iterdir()) == [
        ".lock", "aliases.json", "v0"]
    assert registry.resolve("memory-bank").version == 0


def test_a_taken_version_number_is_skipped_not_shared(registry, tmp_path, monkeypatch):
    publish(registry, tmp_path, b"first")
    # a publisher whose listing is stale (another process claimed v0 meanwhile)
    monkeypatch.setattr(registry, "_version_dirs", lambda name: {})
    version = publish(registry, tmp_path, b"second")
    assert version.version == 1 and version.file("codes.bin").read_bytes() == b"second"
    assert json.loads((version.path / ARTIFACT_JSON).read_text())["version"] == 1
    assert registry.resolve("memory-bank", "v0").file("codes.bin").read_bytes() == b"first"


def test_concurrent_threads_get_distinct_versions(registry, tmp_path):
    count = 8
    sources = [make_files(tmp_path / f"src{i}", codes=f"payload {i}".encode())["codes"]
               for i in range(count)]
    barrier = threading.Barrier(count)
    results, errors = [None] * count, []

    def worker(i):
        try:
            barrier.wait()
            results[i] = registry.publish("bank", "memory-bank", {"codes.bin": sources[i]},
                                          {"i": i}, aliases=[f"w{i}"])
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=worker, args=(i,)) for i in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert not errors
    assert sorted(r.version for r in results) == list(range(count))
    assert registry.aliases("bank")["latest"] == count - 1
    for i, r in enumerate(results):
        got = registry.resolve("bank", f"w{i}")
        assert got.version == r.version and got.metadata == {"i": i}
        assert got.file("codes.bin").read_bytes() == f"payload {i}".encode()


def test_concurrent_processes_get_distinct_versions(registry, tmp_path):
    sources = [make_files(tmp_path / f"src{i}", codes=f"proc {i}".encode())["codes"]
               for i in range(3)]
    args = [("bank", "memory-bank", {"codes.bin": src}, {"i": i}) for i, src in enumerate(sources)]
    with multiprocessing.get_context("spawn").Pool(3) as pool:
        results = pool.starmap(registry.publish, args)
    assert sorted(r.version for r in results) == [0, 1, 2]
    for r in results:
        got = registry.resolve("bank", f"v{r.version}")
        assert got.file("codes.bin").read_bytes() == f"proc {got.metadata['i']}".encode()
    assert registry.aliases("bank") == {"latest": 2}


@pytest.mark.parametrize("name", ["", "-bank", ".bank", "a/b", "a:b", "a b", "../x"])
def test_bad_names_are_refused(registry, tmp_path, name):
    src = make_files(tmp_path, codes=b"x")["codes"]
    with pytest.raises(ValueError, match="artifact name"):
        registry.publish(name, "memory-bank", {"codes.bin": src}, {})


@pytest.mark.parametrize("alias,needle", [("v3", "looks like a version"),
                                          ("a b", "alias 'a b' is not valid"),
                                          ("", "alias '' is not valid")])
def test_bad_aliases_are_refused(registry, tmp_path, alias, needle):
    src = make_files(tmp_path, codes=b"x")["codes"]
    with pytest.raises(ValueError, match=needle):
        registry.publish("bank", "memory-bank", {"codes.bin": src}, {}, aliases=[alias])


@pytest.mark.parametrize("arcname", ["../codes.bin", "/abs.bin", "a/../b", ARTIFACT_JSON, ""])
def test_bad_file_names_are_refused(registry, tmp_path, arcname):
    src = make_files(tmp_path, codes=b"x")["codes"]
    with pytest.raises(ValueError, match="file name"):
        registry.publish("bank", "memory-bank", {arcname: src}, {})
    assert registry.versions("bank") == []


def test_folders_missing_files_and_bad_metadata_are_refused(registry, tmp_path):
    src = make_files(tmp_path, codes=b"x")["codes"]
    with pytest.raises(ValueError, match="is not a file .a folder"):
        registry.publish("bank", "memory-bank", {"codes.bin": tmp_path}, {})
    with pytest.raises(ValueError, match="missing"):
        registry.publish("bank", "memory-bank", {"codes.bin": tmp_path / "nope"}, {})
    with pytest.raises(ValueError, match="not JSON-serialisable"):
        registry.publish("bank", "memory-bank", {"codes.bin": src}, {"path": tmp_path})
    with pytest.raises(ValueError, match="no files"):
        registry.publish("bank", "memory-bank", {}, {})
    assert registry.versions("bank") == []


def test_default_root_is_env_then_cwd(tmp_path, monkeypatch):
    monkeypatch.setenv(LocalRegistry.ENV, str(tmp_path / "env-reg"))
    assert LocalRegistry.default().root == tmp_path / "env-reg"
    monkeypatch.delenv(LocalRegistry.ENV)
    monkeypatch.chdir(tmp_path)
    assert LocalRegistry.default().root == tmp_path / "artifacts"
