"""`lipmem eval` end to end on a smoke-trained generator and a briefly trained sync expert."""

from __future__ import annotations

import json


def test_eval_writes_json_and_markdown_with_the_agreed_shape(eval_models, tiny_corpus,
                                                             lipmem_cli):
    tmp = eval_models["tmp"]
    out_dir = tmp / "eval"
    out = lipmem_cli(["eval", "--model", f"{eval_models['model']}:latest", "--data",
                      str(tiny_corpus), "--sync-expert", f"{eval_models['expert']}:best",
                      "--out", str(out_dir), "--lpips-backbone", "random", "--max-clips", "2"],
                     tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads((out_dir / "eval.json").read_text())
    assert list(report) == ["model", "data", "metrics", "ground_truth", "notes"]
    assert report["model"] == f"{eval_models['model']}:latest"
    assert report["data"]["split"] == "test" and report["data"]["clips"] == 2
    assert len(report["data"]["manifest_sha256"]) == 64
    metrics, truth = report["metrics"], report["ground_truth"]
    for name in ("psnr_face", "ssim_face", "lpips_face", "psnr_mouth", "ssim_mouth",
                 "lpips_mouth", "lse_d", "lse_c", "openness_mae", "silent_closed_share"):
        assert isinstance(metrics[name], float), name
    for name in ("lse_d", "lse_c", "openness_mae", "silent_closed_share"):
        assert isinstance(truth[name], float), name
    # 8 smoke steps: the generator is far from the ground truth
    assert metrics["psnr_face"] < 40 and metrics["ssim_mouth"] < 0.99
    assert metrics["openness_mae"] > truth["openness_mae"]
    assert any("RANDOM backbone" in n for n in report["notes"])
    assert "fid" in metrics or any(n.startswith("fid skipped") for n in report["notes"])
    md = (out_dir / "eval.md").read_text()
    assert "| metric | generated | ground truth |" in md and "| lse_d |" in md


def test_eval_without_sync_expert_notes_the_skip_and_bad_input_is_named(eval_models,
                                                                        tiny_corpus,
                                                                        lipmem_cli):
    tmp = eval_models["tmp"]
    out = lipmem_cli(["eval", "--model", f"{eval_models['model']}:latest", "--data",
                      str(tiny_corpus), "--out", str(tmp / "eval2"), "--lpips-backbone",
                      "random", "--max-clips", "1"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads((tmp / "eval2" / "eval.json").read_text())
    assert "lse_d" not in report["metrics"]
    assert any("no --sync-expert" in n for n in report["notes"])
    missing = lipmem_cli(["eval", "--model", "model-nope:best", "--data", str(tiny_corpus),
                          "--out", str(tmp / "eval3"), "--lpips-backbone", "random"], tmp)
    assert missing.returncode != 0 and "model-nope:best" in missing.stderr


def test_eval_by_default_scores_with_st_lpips_offline_and_names_it(eval_models, tiny_corpus,
                                                                   lipmem_cli):
    """No torchvision AlexNet in the hub cache: the default (auto) measures with ST-LPIPS and
    every record says so: stlpips_* metrics, the network in the notes, eval.md and data."""
    tmp = eval_models["tmp"]
    out_dir = tmp / "eval_stlpips"
    out = lipmem_cli(["eval", "--model", f"{eval_models['model']}:latest", "--data",
                      str(tiny_corpus), "--out", str(out_dir), "--max-clips", "1"], tmp,
                     TORCH_HOME=str(tmp / "empty_torch_home"))
    assert out.returncode == 0, out.stderr[-4000:]
    report = json.loads((out_dir / "eval.json").read_text())
    metrics = report["metrics"]
    assert metrics["stlpips_face"] > 0 and metrics["stlpips_mouth"] > 0
    assert not any(name.startswith("lpips") for name in metrics), sorted(metrics)
    assert report["data"]["perceptual"] == {"metric": "stlpips", "net": "alex",
                                            "backbone": "stlpips"}
    assert report["data"]["settings"]["lpips_backbone"] == "auto"
    assert any(n.startswith("stlpips_face/stlpips_mouth: ST-LPIPS") for n in report["notes"])
    md = (out_dir / "eval.md").read_text()
    assert "| stlpips_face |" in md and "| stlpips_mouth |" in md and "| lpips_" not in md
    assert "ST-LPIPS (shift-tolerant LPIPS), mouth box" in md
