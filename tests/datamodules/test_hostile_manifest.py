"""A manifest is data: its shard names can name files beside it, never a command or a URL.

webdataset opens `pipe:CMD` by running CMD in a shell and `http://...` over the network;
those forms are for explicit config (`data.*_shards`), which the user wrote. A manifest
that arrives with a corpus must not be able to smuggle them in.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from datamodules.atomic_files import sha256_file
from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.manifest import ManifestError, load_manifest
from datamodules.shards import MANIFEST_NAME

try:  # module names relative to the rootdir (pytest >= 8 with the rootdir on sys.path) ...
    from tests.datamodules.test_fixture_corpus import write_corpus
except ModuleNotFoundError:  # ... else load the sibling module from this folder
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_fixture_corpus import write_corpus

BAD_NAMES = ["pipe:sh evil.sh", "../outside.tar", "sub/dir.tar", "/abs/path.tar",
             "http://example.com/x.tar", "-rf.tar", ".hidden.tar", "notatar.zip", "", "a b.tar",
             "file:x.tar"]


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("corpus")
    write_corpus(root, {"train": [2], "val": [1]}, num_frames=8)
    return root


def with_shard_name(corpus: Path, out: Path, name: object) -> Path:
    """A copy of the corpus manifest in ``out`` whose first val shard is called ``name``."""
    data = json.loads((corpus / MANIFEST_NAME).read_text())
    old = data["splits"]["val"]["shards"][0]
    data["splits"]["val"]["shards"][0] = name
    for shard in data["shards"]:
        if shard["name"] == old:
            shard["name"] = name
    (out / MANIFEST_NAME).write_text(json.dumps(data))
    return out


@pytest.mark.parametrize("name", BAD_NAMES)
def test_a_shard_name_that_is_not_a_plain_tar_file_name_is_refused(corpus, tmp_path, name):
    with_shard_name(corpus, tmp_path, name)
    with pytest.raises(ManifestError) as info:
        load_manifest(tmp_path)
    message = str(info.value)
    assert str(tmp_path / MANIFEST_NAME) in message and repr(name) in message


def test_a_shard_name_of_the_wrong_type_is_refused(corpus, tmp_path):
    with_shard_name(corpus, tmp_path, ["x.tar"])
    with pytest.raises(ManifestError, match=r"shards\[\d\].*name"):
        load_manifest(tmp_path)


def test_plain_names_still_load(corpus):
    assert load_manifest(corpus)["splits"]["val"]["shards"] == ["val-0000.tar"]


def test_a_pipe_name_never_runs_its_command(corpus, tmp_path, monkeypatch):
    """The reported case: `--data.root=.` and a listed file literally named `pipe:sh evil.sh`
    whose size and digest match, so the manifest checks pass and only the name is hostile."""
    marker = tmp_path / "ran"
    (tmp_path / "evil.sh").write_text(f"touch {marker}\ncat {corpus / 'val-0000.tar'}\n")
    hostile = tmp_path / "pipe:sh evil.sh"
    hostile.write_bytes((corpus / "val-0000.tar").read_bytes())
    data = json.loads((corpus / MANIFEST_NAME).read_text())
    data["splits"]["val"]["shards"] = [hostile.name]
    data["shards"] = [s for s in data["shards"] if s["split"] != "val"] + [
        {"name": hostile.name, "split": "val", "sha256": sha256_file(hostile),
         "bytes": hostile.stat().st_size, "clips": 1}]
    (tmp_path / MANIFEST_NAME).write_text(json.dumps(data))
    monkeypatch.chdir(tmp_path)
    dm = LipSyncDataModule(root=".", image_size=32, batch_size=2, num_workers=0,
                           batches_per_epoch=1)
    with pytest.raises(ManifestError, match=r"pipe:sh evil\.sh"):
        dm.setup("validate")
        for _ in dm.val_dataloader():
            pass
    assert not marker.exists()


def test_explicit_shard_patterns_keep_their_url_forms(corpus, tmp_path):
    """`data.*_shards` is the user's own config: `pipe:` stays available there."""
    dm = LipSyncDataModule(root=None, val_shards=f"pipe:cat {corpus / 'val-0000.tar'}",
                           image_size=32, batch_size=2, num_workers=0, batches_per_epoch=1)
    dm.setup("validate")
    keys = {k for batch in dm.val_dataloader() for k in batch["key"]}
    assert keys
