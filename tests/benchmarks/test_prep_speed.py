"""The prep speed benchmark runs the real command both ways and writes its JSON."""

from __future__ import annotations

import json

from benchmarks.prep_speed import main


def test_prep_speed_writes_json(tmp_path):
    path = main(["--clips", "1", "--seconds", "1.2", "--size", "160", "--image-size", "48",
                 "--workers", "1", "--work", str(tmp_path / "work"),
                 "--result", str(tmp_path / "prep_speed.json")])
    result = json.loads(path.read_text())
    assert result["benchmark"] == "prep_speed" and result["machine"]["cpu_count"] >= 1
    before, after = result["before"], result["after"]
    assert before["flags"] == ["--detect-every", "1", "--detect-side", "0"] and not after["flags"]
    assert before["video_frames"] == after["video_frames"] == 30
    assert before["detector_calls_per_frame"] == 1.0 > after["detector_calls_per_frame"]
    for run in (before, after):
        assert run["kept_clips"] >= 1 and run["cpu_seconds"] > 0
        assert run["frames_per_second_per_core"] > 0
    assert result["speedup_per_core"] > 0 and result["crop_mean_abs_diff"] >= 0
    assert not list(tmp_path.glob(".*.tmp"))  # written atomically: no temp file left
