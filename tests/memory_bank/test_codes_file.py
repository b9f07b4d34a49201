import pytest
import torch

from memory_bank.codes_file import load_codes, save_codes


def test_round_trip_keeps_codes_and_metadata(tmp_path):
    codes = torch.randn(7, 5)
    path = save_codes(tmp_path / "bank" / "codes.safetensors", codes, {"n": 7, "method": "x"})
    loaded, meta = load_codes(path)
    torch.testing.assert_close(loaded, codes)
    assert meta == {"n": 7, "method": "x"}
    assert [p.name for p in path.parent.iterdir()] == ["codes.safetensors"]  # no temp left


def test_missing_and_corrupt_files_are_refused_by_name(tmp_path):
    with pytest.raises(FileNotFoundError, match="nope.safetensors"):
        load_codes(tmp_path / "nope.safetensors")
    bad = tmp_path / "bad.safetensors"
    bad.write_bytes(b"not a safetensors file")
    with pytest.raises(ValueError, match="bad.safetensors"):
        load_codes(bad)
