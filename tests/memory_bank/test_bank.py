"""Bank artifacts: publish -> load, and refusing banks that do not fit the generator."""

import json

import pytest
import torch

from datamodules.masks import LowerFaceMask
from memory_bank.artifacts.registry import ArtifactIntegrityError, ArtifactNotFound, LocalRegistry
from memory_bank.bank import CODES_FILE, BankMismatch, check_bank, load_bank, publish_bank
from memory_bank.codes_file import save_codes

MASK = LowerFaceMask("rectangle", "nose_to_chin", image_size=48).describe()


def meta(**kw):
    return {"image_size": 48, "mask": MASK, "method": "faiss_kmeans", **kw}


@pytest.fixture
def registry(tmp_path):
    return LocalRegistry(tmp_path / "registry")


def test_publish_then_load_by_n_alias_and_version(registry):
    codes = torch.randn(8, 16)
    version = publish_bank(registry, codes, meta())
    assert set(version.aliases) >= {"n8", "latest"}
    for ref in ("memory-bank:n8", "memory-bank:latest", version.ref):
        bank = load_bank(ref, registry)
        torch.testing.assert_close(bank.codes, codes)
        assert bank.meta["n"] == 8 and bank.meta["dim"] == 16
        assert bank.resolved == version.ref
    on_disk = json.loads((version.path / "bank.json").read_text())
    assert on_disk["n"] == 8 and on_disk["mask"] == MASK
    # a second bank with another n moves `latest` but leaves n8 where it was
    publish_bank(registry, torch.randn(4, 16), meta())
    assert load_bank("memory-bank:n8", registry).codes.shape == (8, 16)
    assert load_bank("memory-bank:latest", registry).codes.shape == (4, 16)


def test_random_member_bank_gets_its_own_alias_and_leaves_n_alias_alone(registry):
    centres = publish_bank(registry, torch.randn(8, 16), meta())
    members = torch.randn(8, 16)
    version = publish_bank(registry, members, meta(method="random_members", seed=3))
    assert "n8-random" in version.aliases and "n8" not in version.aliases
    assert load_bank("memory-bank:n8", registry).resolved == centres.ref
    bank = load_bank("memory-bank:n{n}-random".replace("{n}", "8"), registry)
    torch.testing.assert_close(bank.codes, members)
    assert bank.meta["method"] == "random_members" and bank.meta["seed"] == 3


def test_missing_alias_names_what_exists(registry):
    publish_bank(registry, torch.randn(8, 16), meta())
    with pytest.raises(ArtifactNotFound, match="n8"):
        load_bank("memory-bank:n80", registry)


def test_tampered_codes_file_is_refused(registry):
    version = publish_bank(registry, torch.randn(8, 16), meta())
    path = version.path / CODES_FILE
    data = bytearray(path.read_bytes())
    data[-1] ^= 0xFF
    path.write_bytes(bytes(data))
    with pytest.raises(ArtifactIntegrityError, match="sha256"):
        load_bank("memory-bank:n8", registry)


def test_corrupt_plain_codes_file_is_refused(tmp_path):
    bad = tmp_path / "codes.safetensors"
    bad.write_bytes(b"\x00" * 64)
    with pytest.raises(ValueError, match="codes.safetensors"):
        load_bank(str(bad))


def test_plain_file_reference_loads(tmp_path):
    path = save_codes(tmp_path / "c.safetensors", torch.randn(8, 16), meta(n=8))
    bank = load_bank(str(path))
    assert bank.resolved == str(path) and bank.codes.shape == (8, 16)


@pytest.mark.parametrize("field,kwargs,needle", [
    ("n", {"num_codes": 80}, "n=8 codes but model.generator.init_args.num_codes=80"),
    ("dim", {"code_dim": 32}, "dim=16 but model.generator.init_args.embed_dim=32"),
    ("size", {"image_size": 96}, "image_size=48 but the generator uses image_size=96"),
    ("mask", {"mask": LowerFaceMask("rectangle", "lips", image_size=48).describe()},
     "mask region='nose_to_chin' but training masks with region='lips'"),
])
def test_bank_generator_mismatch_is_refused_naming_both_sides(tmp_path, field, kwargs, needle):
    path = save_codes(tmp_path / "c.safetensors", torch.randn(8, 16), meta(n=8))
    bank = load_bank(str(path))
    expected = {"num_codes": 8, "code_dim": 16, "image_size": 48, "mask": MASK}
    assert check_bank(bank, **expected) == []
    with pytest.raises(BankMismatch) as err:
        check_bank(bank, **{**expected, **kwargs})
    assert needle in str(err.value)
