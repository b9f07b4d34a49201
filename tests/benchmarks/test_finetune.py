"""Adding seeds to a fine-tune benchmark result: same budgets, old runs kept, mismatches named."""

from __future__ import annotations

import argparse
import json

import pytest

from benchmarks.finetune import previous_result

MINUTES = (2.0, 5.0)


def args(**overrides) -> argparse.Namespace:
    values = {"base": "base.ckpt", "clips": 24, "seconds": 8.0, "size": 192, "smoke": False,
              "extra": []}
    return argparse.Namespace(**{**values, **overrides})


def result(**overrides) -> dict:
    run = {"openness_mae": 0.07, "silent_closed_share": 0.9, "batches": 63}
    values = {"benchmark": "finetune_cpu", "smoke": False,
              "budget": {"minutes": [2.0, 5.0], "batches_per_second": 0.5,
                         "batches": {"2.0": 63, "5.0": 157}},
              "recipe": {"extra": []}, "base": {"ref": "base.ckpt"},
              "corpus": {"clips": 24, "seconds_each": 8.0, "video_side": 192},
              "seeds": {"finetune": {"0": {"2.0": run, "5.0": dict(run, batches=157)}}}}
    return {**values, **overrides}


def test_budgets_and_runs_come_from_the_previous_result(tmp_path):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(result()))
    points, rate, arms = previous_result(path, args(), MINUTES)
    assert points == {2.0: 63, 5.0: 157} and rate == 0.5
    assert arms == {"finetune": {0: {2.0: result()["seeds"]["finetune"]["0"]["2.0"],
                                     5.0: result()["seeds"]["finetune"]["0"]["5.0"]}}}


@pytest.mark.parametrize(("change", "named"), [
    ({"base": {"ref": "other.ckpt"}}, "base.ref='other.ckpt'"),
    ({"corpus": {"clips": 4, "seconds_each": 8.0, "video_side": 192}}, "corpus.clips=4"),
    ({"recipe": {"extra": ["--model.g_lr=1"]}}, "recipe.extra"),
    ({"smoke": True}, "smoke=True"),
    ({"seeds": {"mystery": {}}}, "mystery"),
    ({"budget": {"minutes": [2.0], "batches": {"2.0": 63}}}, "'5.0'"),
])
def test_a_result_of_another_setup_is_refused_with_its_key(tmp_path, change, named):
    path = tmp_path / "old.json"
    path.write_text(json.dumps(result(**change)))
    with pytest.raises(SystemExit, match=named.replace(".", r"\.").replace("[", r"\[")):
        previous_result(path, args(), MINUTES)


def test_an_unreadable_file_is_named(tmp_path):
    path = tmp_path / "broken.json"
    path.write_text("{not json")
    with pytest.raises(SystemExit, match="broken.json"):
        previous_result(path, args(), MINUTES)
