"""`lipmem` end to end in subprocesses: the real console script, configs and DDP."""

from __future__ import annotations

from pathlib import Path

import yaml


def smoke_args(corpus: Path, run_dir: Path) -> list[str]:
    return ["--config", "configs/smoke.yaml", f"--data.root={corpus}",
            f"--trainer.default_root_dir={run_dir}"]


def test_print_config_merges_default_and_overlay_and_links_geometry(tiny_corpus, tmp_path,
                                                                   lipmem_cli):
    out = lipmem_cli(["fit", *smoke_args(tiny_corpus, tmp_path / "run"),
                      "--model.loss.l1_weight=7.5", "--print_config"], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    cfg = yaml.safe_load(out.stdout)
    assert cfg["model"]["loss"]["init_args"]["l1_weight"] == 7.5
    assert cfg["model"]["loss"]["init_args"]["gan_mode"] == "hinge"  # from default.yaml
    assert cfg["data"]["image_size"] == 48  # from smoke.yaml
    assert cfg["trainer"]["default_root_dir"] == str(tmp_path / "run")


def test_misspelled_key_fails(tiny_corpus, tmp_path, lipmem_cli):
    out = lipmem_cli(["fit", *smoke_args(tiny_corpus, tmp_path / "run"),
                      "--model.loss.l1_wieght=3", "--print_config"], tmp_path)
    assert out.returncode != 0
    assert "l1_wieght" in out.stderr


def test_audio_ratio_below_five_fails_at_startup(tiny_corpus, tmp_path, lipmem_cli):
    out = lipmem_cli(["fit", *smoke_args(tiny_corpus, tmp_path / "run"),
                      "--data.audio_seconds=0.12"], tmp_path)
    assert out.returncode != 0
    assert "audio_seconds" in out.stderr and "0.12" in out.stderr


def test_smoke_fit_writes_checkpoints_samples_and_an_offline_wandb_run(tiny_corpus, tmp_path, lipmem_cli):
    run_dir = tmp_path / "run"
    out = lipmem_cli(["fit", *smoke_args(tiny_corpus, run_dir)], tmp_path)
    assert out.returncode == 0, out.stderr[-3000:]
    assert (run_dir / "checkpoints" / "last.ckpt").is_file()
    assert (run_dir / "samples" / "val_latest.png").is_file()
    runs = list((run_dir / "wandb").glob("offline-run-*"))
    assert len(runs) == 1, list(run_dir.rglob("*"))[:20]
    assert not (tmp_path / "home" / ".cache" / "wandb").exists()
    assert not (tmp_path / "home" / ".config" / "wandb").exists()
