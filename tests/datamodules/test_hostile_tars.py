"""Honest counts: one count per skipped sample, classified by exception type, not by the
text of its message."""

from __future__ import annotations

import sys
import tarfile
from pathlib import Path

import pytest
import torch

from datamodules.atomic_files import sha256_file, write_json_atomic
from datamodules.data_issues import ISSUES, SKIP_REASONS, issue_counts
from datamodules.lipsync_datamodule import LipSyncDataModule
from datamodules.loader_stages import StreamState
from datamodules.shards import MANIFEST_NAME, ShardInfo, build_manifest

try:  # module names relative to the rootdir (pytest >= 8 with the rootdir on sys.path) ...
    from tests.datamodules.test_fixture_corpus import FPS, SIZE, SR, make_sample, write_raw_shard
except ModuleNotFoundError:  # ... else load the sibling module from this folder
    sys.path.insert(0, str(Path(__file__).resolve().parent))
    from test_fixture_corpus import FPS, SIZE, SR, make_sample, write_raw_shard

pytestmark = pytest.mark.filterwarnings("ignore::UserWarning")


def corpus(root: Path, shards: dict[str, list[dict]]) -> Path:
    infos = []
    for name, samples in shards.items():
        write_raw_shard(root / name, samples)
        infos.append(ShardInfo(name, "val", sha256_file(root / name),
                               (root / name).stat().st_size, len(samples), 0, []))
    write_json_atomic(root / MANIFEST_NAME, build_manifest(infos, fps=FPS, sample_rate=SR,
                                                           image_size=SIZE))
    return root


def read_val(root: Path) -> tuple[dict[str, int], set[str]]:
    dm = LipSyncDataModule(root=str(root), image_size=SIZE, batch_size=4, num_workers=0,
                           val_windows_per_clip=1, batches_per_epoch=1, verify_manifest=False)
    dm.setup("validate")
    totals = torch.zeros(len(ISSUES), dtype=torch.int64)
    keys: set[str] = set()
    skipped = 0
    for batch in dm.val_dataloader():
        totals += batch["issues"]
        skipped += int(batch["skipped"])
        keys.update(batch["key"])
    counts = issue_counts(totals)
    assert skipped == sum(counts[r] for r in SKIP_REASONS)
    return {k: v for k, v in counts.items() if v}, keys


def test_two_samples_sharing_member_names_are_each_counted_once(tmp_path):
    """The reported case: webdataset's ValueError ("duplicate file name in tar file") was
    filed as truncated_tar by its text, once per shard, and the first copy was used."""
    shard = [make_sample("spk_a"), make_sample("spk_dup"), make_sample("spk_dup"),
             make_sample("spk_b"), make_sample("spk_twice"), make_sample("spk_twice"),
             make_sample("spk_c")]
    counts, keys = read_val(corpus(tmp_path, {"val-000000.tar": shard}))
    assert keys == {"spk_a", "spk_b", "spk_c"}
    assert counts == {"duplicate_member": 2}


def test_a_missing_shard_is_not_a_truncated_tar(tmp_path):
    """Opening fails with FileNotFoundError, whose message names a `.tar` file: it is
    counted by its type (other), not filed as truncated_tar because of the text."""
    root = corpus(tmp_path, {"val-000000.tar": [make_sample("spk_a")],
                             "val-000001.tar": [make_sample("spk_b")]})
    dm = LipSyncDataModule(root=str(root), image_size=SIZE, batch_size=4, num_workers=0,
                           val_windows_per_clip=1, batches_per_epoch=1)
    dm.setup("validate")
    (root / "val-000001.tar").unlink()  # gone after setup verified it
    totals = torch.zeros(len(ISSUES), dtype=torch.int64)
    keys = set()
    for batch in dm.val_dataloader():
        totals += batch["issues"]
        keys.update(batch["key"])
    assert keys == {"spk_a"}
    assert {k: v for k, v in issue_counts(totals).items() if v} == {"other": 1}


def test_a_truncated_tar_is_counted_once_per_read_of_its_shard(tmp_path):
    root = corpus(tmp_path, {"val-000000.tar": [make_sample("spk_a"), make_sample("spk_b"),
                                                make_sample("spk_c")]})
    path = root / "val-000000.tar"
    with tarfile.open(path) as tar:
        member = next(m for m in tar.getmembers() if m.name.startswith("spk_b."))
    with open(path, "r+b") as fh:
        fh.truncate(member.offset_data + member.size // 2)
    counts, keys = read_val(root)
    assert keys == {"spk_a"} and counts == {"truncated_tar": 1}


@pytest.mark.parametrize("exn, category", [
    (ValueError("bad tar header in sample.tar"), "other"),
    (RuntimeError("unexpected end of tar data"), "other"),
    (tarfile.ReadError("unexpected end of data"), "truncated_tar"),
    (EOFError("compressed file ended"), "truncated_tar"),
])
def test_classification_is_by_exception_type(exn, category):
    state = StreamState("t")
    state.start_shard("x.tar")
    with pytest.warns(UserWarning):
        state.tar_error(exn)
    assert dict(state.issues_total) == {category: 1}
