"""eval.json keeps the agreed shape; eval.md has generated and ground-truth columns."""

from __future__ import annotations

import json
import math

import pytest

from lightning_modules.evaluation.report import build_report, markdown_table, write_report


def test_report_shape_and_files(tmp_path):
    report = build_report("model-x:best", {"root": "/d", "split": "test", "clips": 2,
                                           "frames": 150, "manifest_sha256": "ab" * 32},
                          {"psnr_face": 30.0, "lse_d": 0.5, "bad": math.nan},
                          {"lse_d": 0.4}, ["fid skipped: no weights"])
    json_path, md_path = write_report(report, tmp_path / "out")
    loaded = json.loads(json_path.read_text())
    assert list(loaded) == ["model", "data", "metrics", "ground_truth", "notes"]
    assert loaded["model"] == "model-x:best"
    assert loaded["metrics"] == {"psnr_face": 30.0, "lse_d": 0.5}  # non-finite left out...
    assert any("metrics.bad" in n for n in loaded["notes"])  # ...with a note
    assert loaded["ground_truth"] == {"lse_d": 0.4}
    md = md_path.read_text()
    assert "| metric | generated | ground truth |" in md
    assert "| lse_d | 0.5000 | 0.4000 |" in md
    assert "fid skipped" in md
    assert not list((tmp_path / "out").glob(".*"))  # no temp files left


def test_a_report_with_other_keys_is_refused(tmp_path):
    with pytest.raises(ValueError, match="report keys"):
        write_report({"model": "m", "metrics": {}}, tmp_path)
    assert "| psnr_face |" not in markdown_table(build_report("m", {}, {}, {}, []))
