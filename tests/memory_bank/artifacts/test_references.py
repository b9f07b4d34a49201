"""References: parsing each form, resolving paths / the local registry / W&B (through a fake
server), and the W&B side (log_artifact into a real offline run, lineage in run.config)."""

import hashlib
import time
from pathlib import Path

import pytest

from memory_bank.artifacts.references import (
    ArtifactTypeMismatch,
    WandbUnavailable,
    parse_reference,
    resolve_reference,
)
from memory_bank.artifacts.registry import (
    ARTIFACT_JSON,
    ArtifactIntegrityError,
    ArtifactNotFound,
    ArtifactVersion,
    LocalRegistry,
)
from memory_bank.artifacts.wandb_artifacts import WandbBackend, log_artifact, record_input


@pytest.fixture
def registry(tmp_path):
    return LocalRegistry(tmp_path / "registry")


def publish(registry, tmp_path, payload=b"codes", name="memory-bank", type="memory-bank",
            aliases=("n8",)):
    src = tmp_path / "codes.src"
    src.write_bytes(payload)
    return registry.publish(name, type, {"codes.bin": src}, {"n": 8}, aliases=aliases)


# ---------------------------------------------------------------------- parsing
@pytest.mark.parametrize("ref,expected", [
    ("memory-bank:n80", {"kind": "registry", "name": "memory-bank", "alias": "n80"}),
    ("memory-bank:v3", {"kind": "registry", "name": "memory-bank", "alias": "v3"}),
    ("memory-bank", {"kind": "registry", "name": "memory-bank", "alias": "latest"}),
    ("wandb:lab/lipmem/memory-bank:n80", {"kind": "wandb", "entity": "lab", "project": "lipmem",
                                          "name": "memory-bank", "alias": "n80"}),
    ("wandb:lab/lipmem/memory-bank", {"kind": "wandb", "entity": "lab", "project": "lipmem",
                                      "name": "memory-bank", "alias": "latest"}),
    ("wandb:lipmem/memory-bank:v2", {"kind": "wandb", "entity": None, "project": "lipmem",
                                     "name": "memory-bank", "alias": "v2"}),
    ("/data/codes.safetensors", {"kind": "path", "path": Path("/data/codes.safetensors")}),
    ("./codes.safetensors", {"kind": "path", "path": Path("codes.safetensors")}),
    ("artifacts/memory-bank/v3", {"kind": "path", "path": Path("artifacts/memory-bank/v3")}),
    ("~/codes.safetensors", {"kind": "path", "path": Path.home() / "codes.safetensors"}),
])
def test_parse_each_form(ref, expected):
    parsed = parse_reference(ref)
    assert parsed.raw == ref
    for key, value in expected.items():
        assert getattr(parsed, key) == value, key


def test_an_existing_file_without_separator_is_a_path(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "codes.safetensors").write_bytes(b"x")
    assert parse_reference("codes.safetensors").kind == "path"
    assert parse_reference("codes2.safetensors").kind == "registry"


@pytest.mark.parametrize("ref,needle", [("", "empty"), ("a:b:c", "more than one ':'"),
                                        ("memory-bank:", "empty alias"),
                                        ("wandb:a/b/c/d:x", "wandb:entity/project"),
                                        ("bad name", "artifact name")])
def test_malformed_references_are_refused(ref, needle):
    with pytest.raises(ValueError, match=needle):
        parse_reference(ref)


# ---------------------------------------------------------------------- paths
def test_path_references(tmp_path):
    path = tmp_path / "codes.safetensors"
    path.write_bytes(b"x")
    assert resolve_reference(str(path), wandb_mode="offline") == path
    with pytest.raises(ArtifactNotFound, match="no such file"):
        resolve_reference(str(tmp_path / "missing.safetensors"), wandb_mode="offline")
    assert resolve_reference(str(tmp_path), wandb_mode="offline") == tmp_path  # plain folder


def test_a_version_folder_works_as_a_path(registry, tmp_path):
    version = publish(registry, tmp_path)
    got = resolve_reference(str(version.path), wandb_mode="offline", expected_type="memory-bank")
    assert isinstance(got, ArtifactVersion) and got.ref == "memory-bank:v0"
    assert got.file("codes.bin").read_bytes() == b"codes"
    with pytest.raises(ArtifactTypeMismatch, match="'memory-bank'.*'mouth-autoencoder'"):
        resolve_reference(str(version.path), expected_type="mouth-autoencoder")
    version.file("codes.bin").write_bytes(b"changed")
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        resolve_reference(str(version.path), wandb_mode="offline")


# ---------------------------------------------------------------------- registry
def test_registry_reference_offline(registry, tmp_path):
    publish(registry, tmp_path, b"v0")
    publish(registry, tmp_path, b"v1", aliases=())
    got = resolve_reference("memory-bank:n8", registry=registry, wandb_mode="offline")
    assert got.ref == "memory-bank:v0" and got.file("codes.bin").read_bytes() == b"v0"
    assert resolve_reference("memory-bank", registry=registry, wandb_mode="disabled").version == 1
    assert resolve_reference("memory-bank:v0", registry=registry, wandb_mode="offline").version == 0
    with pytest.raises(ArtifactNotFound, match=r"n80.*n8 -> v0"):
        resolve_reference("memory-bank:n80", registry=registry, wandb_mode="offline")


def test_mode_defaults_to_the_logger_rule_and_registry_to_env(registry, tmp_path, monkeypatch):
    publish(registry, tmp_path)
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv(LocalRegistry.ENV, str(registry.root))
    assert resolve_reference("memory-bank:n8").ref == "memory-bank:v0"


def test_expected_type_mismatch_names_both_types(registry, tmp_path):
    publish(registry, tmp_path, name="mouth-autoencoder", type="mouth-autoencoder")
    with pytest.raises(ArtifactTypeMismatch) as err:
        resolve_reference("mouth-autoencoder:latest", registry=registry, wandb_mode="offline",
                          expected_type="memory-bank")
    assert "'mouth-autoencoder'" in str(err.value) and "'memory-bank'" in str(err.value)


def test_wandb_reference_offline_explains_and_suggests_the_local_form(registry):
    with pytest.raises(WandbUnavailable) as err:
        resolve_reference("wandb:lab/lipmem/memory-bank:n8", registry=registry,
                          wandb_mode="offline")
    text = str(err.value)
    assert "offline" in text and "'memory-bank:n8'" in text and str(registry.root) in text
    assert isinstance(err.value, ArtifactNotFound)


# ---------------------------------------------------------------------- W&B (fake server)
class FakeArtifact:
    def __init__(self, name, version, type, files, metadata, aliases=()):
        self.name, self.version, self.type = f"{name}:v{version}", f"v{version}", type
        self.files, self.metadata, self.aliases = files, metadata, list(aliases)
        self.downloads = 0

    def download(self, root):
        self.downloads += 1
        for rel, data in self.files.items():
            (Path(root) / rel).parent.mkdir(parents=True, exist_ok=True)
            (Path(root) / rel).write_bytes(data)
        return root


class FakeWandb:
    """Implements only what WandbBackend calls: Api.artifact and Run.use_artifact."""

    def __init__(self, artifacts):
        self.artifacts, self.asked = artifacts, []

    def artifact(self, path):
        self.asked.append(path)
        key = path.rsplit("/", 1)[-1]
        if key not in self.artifacts:
            raise ValueError(f"artifact membership {key!r} not found in 'lab/lipmem'")
        return self.artifacts[key]

    use_artifact = artifact


def lipmem_artifact(data=b"from wandb", aliases=("n8", "latest"), **overrides):
    sha = hashlib.sha256(data).hexdigest()
    kw = {"name": "memory-bank", "version": 4, "type": "memory-bank",
          "files": {"codes.bin": data}, "aliases": aliases,
          "metadata": {"n": 8, "registry_ref": "memory-bank:v0",
                       "files_sha256": {"codes.bin": sha}}}
    return FakeArtifact(**{**kw, **overrides})


def test_wandb_reference_online_downloads_verifies_and_caches(registry, tmp_path):
    art = lipmem_artifact()
    api = FakeWandb({"memory-bank:n8": art, "memory-bank:v4": art})
    backend = WandbBackend(api=api, cache_dir=tmp_path / "cache")
    got = resolve_reference("wandb:lab/lipmem/memory-bank:n8", registry=registry,
                            wandb_mode="online", wandb_backend=backend,
                            expected_type="memory-bank")
    assert api.asked == ["lab/lipmem/memory-bank:n8"]
    assert got.ref == "memory-bank:v4" and got.source == "wandb:lab/lipmem/memory-bank:v4"
    assert got.file("codes.bin").read_bytes() == b"from wandb"
    assert got.metadata == {"n": 8} and set(got.aliases) == {"n8", "latest"}
    assert (got.path / ARTIFACT_JSON).is_file() and got.path.is_relative_to(tmp_path / "cache")
    again = resolve_reference("wandb:lab/lipmem/memory-bank:v4", registry=registry,
                              wandb_mode="online", wandb_backend=backend)
    assert again.path == got.path and art.downloads == 1  # reused, still verified
    with pytest.raises(ArtifactTypeMismatch):
        resolve_reference("wandb:lab/lipmem/memory-bank:n8", registry=registry,
                          wandb_mode="online", wandb_backend=backend, expected_type="encoder")


def test_wandb_download_that_does_not_match_its_digests_is_refused(registry, tmp_path):
    art = lipmem_artifact(files={"codes.bin": b"tampered in transit"})
    backend = WandbBackend(api=FakeWandb({"memory-bank:n8": art}), cache_dir=tmp_path / "cache")
    with pytest.raises(ArtifactIntegrityError, match="codes.bin.*sha256 expected"):
        resolve_reference("wandb:lab/lipmem/memory-bank:n8", registry=registry,
                          wandb_mode="online", wandb_backend=backend)
    assert not list((tmp_path / "cache").rglob("codes.bin"))  # nothing half-verified kept


def test_wandb_artifact_not_logged_by_lipmem_is_hashed_as_delivered(registry, tmp_path):
    art = FakeArtifact("encoder", 0, "mouth-autoencoder", {"enc.pt": b"w", "cfg/a.json": b"{}"},
                       {})
    backend = WandbBackend(api=FakeWandb({"encoder:latest": art}), cache_dir=tmp_path / "c")
    got = resolve_reference("wandb:lab/lipmem/encoder", registry=registry, wandb_mode="online",
                            wandb_backend=backend)
    assert sorted(got.files) == ["cfg/a.json", "enc.pt"]
    assert got.files["enc.pt"] == hashlib.sha256(b"w").hexdigest()


def test_online_registry_form_tries_wandb_then_the_local_registry(registry, tmp_path,
                                                                  monkeypatch):
    monkeypatch.delenv("WANDB_PROJECT", raising=False)
    publish(registry, tmp_path, b"local", aliases=("n8", "n4"))
    api = FakeWandb({"memory-bank:n8": lipmem_artifact()})
    backend = WandbBackend(api=api, cache_dir=tmp_path / "cache")
    from_wandb = resolve_reference("memory-bank:n8", registry=registry, wandb_mode="online",
                                   wandb_backend=backend)
    assert from_wandb.source and from_wandb.file("codes.bin").read_bytes() == b"from wandb"
    assert api.asked == ["lipmem/memory-bank:n8"]  # the logger's default project
    local = resolve_reference("memory-bank:n4", registry=registry, wandb_mode="online",
                              wandb_backend=backend)
    assert local.source is None and local.file("codes.bin").read_bytes() == b"local"
    with pytest.raises(ArtifactNotFound, match="neither in W&B.*nor locally"):
        resolve_reference("memory-bank:n80", registry=registry, wandb_mode="online",
                          wandb_backend=backend)


def test_backend_with_a_run_uses_use_artifact_for_lineage(tmp_path):
    from memory_bank.artifacts.references import parse_reference as parse

    run = FakeWandb({"memory-bank:n8": lipmem_artifact()})
    api = FakeWandb({})
    backend = WandbBackend(run=run, api=api, cache_dir=tmp_path / "cache")
    assert backend.resolve(parse("wandb:lab/lipmem/memory-bank:n8")).version == 4
    assert run.asked == ["lab/lipmem/memory-bank:n8"] and api.asked == []


# ---------------------------------------------------------------------- W&B runs (real, offline)
@pytest.fixture
def offline_run(tmp_path, monkeypatch):
    wandb = pytest.importorskip("wandb")
    for var, sub in (("WANDB_DIR", "wb"), ("WANDB_DATA_DIR", "wb-data"),
                     ("WANDB_CACHE_DIR", "wb-cache"), ("WANDB_CONFIG_DIR", "wb-config"),
                     ("WANDB_ARTIFACT_DIR", "wb-artifacts")):
        (tmp_path / sub).mkdir()
        monkeypatch.setenv(var, str(tmp_path / sub))
    monkeypatch.setenv("WANDB_MODE", "offline")
    monkeypatch.setenv("WANDB_SILENT", "true")
    # wandb.init exports WANDB_SERVICE; undo that after the test, so no later subprocess
    # logs through this process's wandb-core (a resumed run's id would be "in use" there).
    monkeypatch.setenv("WANDB_SERVICE", "")
    monkeypatch.delenv("WANDB_SERVICE")
    run = wandb.init(mode="offline", dir=str(tmp_path / "wb"), project="lipmem-test")
    yield run
    run.finish()


def run_log_bytes(tmp_path, *needles, timeout=30.0):
    """The offline run's .wandb file once it holds every needle. wandb-core writes it in
    its own process and, under load, may not have flushed it when run.finish() returns."""
    deadline = time.monotonic() + timeout
    while True:
        files = list((tmp_path / "wb" / "wandb").glob("offline-run-*/run-*.wandb"))
        data = files[0].read_bytes() if files else b""
        if all(n in data for n in needles) or time.monotonic() > deadline:
            return data
        time.sleep(0.1)


def test_log_artifact_into_an_offline_run(registry, tmp_path, offline_run):
    version = publish(registry, tmp_path, b"logged", name="bank-logged", aliases=("n80",))
    log_artifact(offline_run, version)
    offline_run.finish()
    needles = (b"bank-logged", b"memory-bank", b"n80", b"latest", b"bank-logged:v0",
               version.files["codes.bin"].encode())
    data = run_log_bytes(tmp_path, *needles)
    for needle in needles:
        assert needle in data, needle


def test_log_artifact_and_record_input_skip_missing_or_disabled_runs(registry, tmp_path):
    import wandb

    version = publish(registry, tmp_path)
    disabled = wandb.init(mode="disabled")
    log_artifact(None, version)
    log_artifact(disabled, version)
    record_input(None, "memory_bank", "memory-bank:n8", version, "disabled")
    record_input(disabled, "memory_bank", "memory-bank:n8", version, "disabled")
    disabled.finish()


def test_record_input_offline_writes_the_run_config(registry, tmp_path, offline_run):
    version = publish(registry, tmp_path, b"input bank")
    plain = tmp_path / "enc.pt"
    plain.write_bytes(b"encoder")
    record_input(offline_run, "memory_bank", "memory-bank:n8", version, "offline")
    record_input(offline_run, "encoder", str(plain), plain, "offline")
    inputs = offline_run.config["inputs"]
    assert inputs["memory_bank"] == {"ref": "memory-bank:n8", "resolved": "memory-bank:v0",
                                     "type": "memory-bank", "sha256": version.files}
    assert inputs["encoder"]["sha256"] == {"enc.pt": hashlib.sha256(b"encoder").hexdigest()}
    assert inputs["encoder"]["resolved"] == str(plain)
    offline_run.finish()
    digest = version.files["codes.bin"].encode()
    assert digest in run_log_bytes(tmp_path, digest)


def test_record_input_online_links_wandb_inputs(registry, tmp_path):
    class Config(dict):
        def update(self, values, allow_val_change=False):
            assert allow_val_change
            super().update(values)

    class Run(FakeWandb):
        disabled = False

        def __init__(self):
            super().__init__({})
            self.config = Config(inputs={"other": {"ref": "x"}})

        def use_artifact(self, path):
            self.asked.append(path)

    backend = WandbBackend(api=FakeWandb({"memory-bank:n8": lipmem_artifact()}),
                           cache_dir=tmp_path / "cache")
    version = resolve_reference("wandb:lab/lipmem/memory-bank:n8", wandb_mode="online",
                                wandb_backend=backend, registry=registry)
    run = Run()
    record_input(run, "memory_bank", "wandb:lab/lipmem/memory-bank:n8", version, "online")
    assert run.asked == ["lab/lipmem/memory-bank:v4"]
    assert run.config["inputs"]["memory_bank"]["source"] == "wandb:lab/lipmem/memory-bank:v4"
    assert run.config["inputs"]["other"] == {"ref": "x"}  # other inputs are kept
    local = publish(registry, tmp_path)
    record_input(run, "encoder", "memory-bank:n8", local, "online")
    assert run.asked == ["lab/lipmem/memory-bank:v4"]  # a local-only input is not looked up
    assert run.config["inputs"]["encoder"]["resolved"] == "memory-bank:v0"
