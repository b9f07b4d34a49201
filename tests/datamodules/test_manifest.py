"""load_manifest / verify_shards / split_urls."""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from datamodules.manifest import load_manifest, split_urls, verify_shards
from datamodules.shards import MANIFEST_NAME

try:  # module names relative to the rootdir (pytest >= 8 with the rootdir on sys.path) ...
    from tests.datamodules.test_fixture_corpus import write_corpus
except ModuleNotFoundError:  # ... else load the sibling module from this folder
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_fixture_corpus import write_corpus


@pytest.fixture(scope="module")
def corpus(tmp_path_factory):
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, {"train": [2, 1], "val": [1]}, num_frames=8)
    return root


def test_load_from_folder_or_file(corpus):
    a = load_manifest(corpus)
    b = load_manifest(corpus / MANIFEST_NAME)
    assert a["splits"] == b["splits"]
    assert a["splits"]["train"]["clips"] == 3
    assert a["_path"] == str(corpus / MANIFEST_NAME)


def test_missing_manifest_names_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match=str(tmp_path / MANIFEST_NAME)):
        load_manifest(tmp_path)


def test_invalid_json_names_the_file(tmp_path):
    (tmp_path / MANIFEST_NAME).write_text('{"fps": 25,')
    with pytest.raises(ValueError, match=rf"{MANIFEST_NAME}.*not valid JSON"):
        load_manifest(tmp_path)


def test_missing_fields_named(corpus, tmp_path):
    data = json.loads((corpus / MANIFEST_NAME).read_text())
    del data["sample_rate"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"manifest.json.*lacks field\(s\) \['sample_rate'\]"):
        load_manifest(tmp_path)
    data = json.loads((corpus / MANIFEST_NAME).read_text())
    del data["shards"][0]["sha256"]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ValueError, match=r"shards\[0\].*'train-0000.tar'.*sha256"):
        load_manifest(tmp_path)


def test_newer_format_rejected(corpus, tmp_path):
    data = json.loads((corpus / MANIFEST_NAME).read_text())
    data["format_version"] = 99
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="format_version=99"):
        load_manifest(tmp_path)


def test_split_urls(corpus):
    m = load_manifest(corpus)
    assert split_urls(m, corpus, "train") == [str(corpus / "train-0000.tar"),
                                              str(corpus / "train-0001.tar")]
    with pytest.raises(ValueError, match=r"no split 'test'.*\['train', 'val'\]"):
        split_urls(m, corpus, "test")


def test_verify_ok(corpus):
    verify_shards(load_manifest(corpus), corpus)


def test_verify_missing_shard(corpus, tmp_path):
    m = load_manifest(corpus)
    (tmp_path / "train-0000.tar").write_bytes((corpus / "train-0000.tar").read_bytes())
    with pytest.raises(ValueError, match=r"train-0001.tar.*missing"):
        verify_shards(m, tmp_path, check_sha256=False)
    verify_shards(m, tmp_path, splits=["nothing"])  # only the named splits are checked


def test_verify_wrong_size_and_digest(corpus, tmp_path):
    m = load_manifest(corpus)
    for name in ("train-0000.tar", "train-0001.tar", "val-0000.tar"):
        (tmp_path / name).write_bytes((corpus / name).read_bytes())
    (tmp_path / "val-0000.tar").write_bytes((corpus / "val-0000.tar").read_bytes() + b"x")
    size = (corpus / "val-0000.tar").stat().st_size
    with pytest.raises(ValueError, match=rf"val-0000.tar.*expected {size} bytes.*found {size + 1}"):
        verify_shards(m, tmp_path)
    verify_shards(m, tmp_path, splits=["train"])
    data = bytearray((corpus / "train-0001.tar").read_bytes())
    data[1000] ^= 0xFF  # same size, different content
    (tmp_path / "train-0001.tar").write_bytes(bytes(data))
    expected = next(s["sha256"] for s in m["shards"] if s["name"] == "train-0001.tar")
    with pytest.raises(ValueError, match=rf"train-0001.tar.*sha256: expected {expected}.*found"):
        verify_shards(m, tmp_path, splits=["train"])
    verify_shards(m, tmp_path, check_sha256=False, splits=["train"])
