"""What a training run leaves in its offline W&B run folder: every logged scalar, the val
media every K validation runs (image grid and a video with its audio), the model artifact."""

from __future__ import annotations

import av
import pytest

from lightning_modules.experiments.sweeps.wandb_runs import find_runs, read_run
from memory_bank.artifacts.registry import LocalRegistry

VIDEO_SECONDS = 1.0


@pytest.fixture(scope="module")
def logged_run(tiny_corpus, tmp_path_factory, lipmem_cli):
    tmp = tmp_path_factory.mktemp("run_logging")
    run_dir = tmp / "run"
    # 3 epochs x 4 batches, validation after each: media on validation runs 1 and 3 (K=2)
    out = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
                      f"--trainer.default_root_dir={run_dir}", "--trainer.max_epochs=3",
                      "--trainer.max_steps=24", "--media.every_n_val=2",
                      f"--media.video_seconds={VIDEO_SECONDS}"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    runs = find_runs(run_dir)
    assert len(runs) == 1
    return run_dir, runs[0], read_run(runs[0]), LocalRegistry(tmp / "registry")


def _keys(history: list[dict]) -> set[str]:
    return set().union(*(row.keys() for row in history))


def test_every_loss_term_rate_norm_and_val_metric_is_logged(logged_run):
    _, _, run, _ = logged_run
    keys = _keys(run.history)
    expected = {"train/g_l1", "train/g_adv", "train/g_lpips", "train/g_total", "train/d_total",
                "train/lr_g", "train/lr_d", "train/grad_norm_g", "train/grad_norm_d",
                "perf/frames_per_sec", "memory/weight_entropy", "memory/usage_entropy",
                "val/l1", "val/l1_mouth", "val/psnr", "val/ssim", "val/usage_entropy",
                "val/max_code_usage", "val/code_usage.values"}
    assert expected <= keys, expected - keys
    steps = [row["train/g_l1"] for row in run.history if "train/g_l1" in row]
    assert len(steps) == 12  # one row per batch: 3 epochs x 4 batches, log_every_n_steps=1
    assert len([row for row in run.history if "val/l1_mouth" in row]) == 3


def test_media_every_k_validation_runs(logged_run):
    run_dir, _, run, _ = logged_run
    videos = [row for row in run.history if "val/video.path" in row]
    grids = [row for row in run.history if "val/samples.filenames" in row]
    assert len(videos) == 2 and len(grids) == 2  # validation runs 1 and 3 of 3
    assert len(sorted((run_dir / "samples").glob("val_epoch*.mp4"))) == 2
    assert len(sorted((run_dir / "samples").glob("val_epoch*.png"))) == 2


def test_val_video_has_the_clip_audio(logged_run):
    _, wandb_dir, run, _ = logged_run
    row = next(row for row in run.history if "val/video.path" in row)
    video = wandb_dir / "files" / row["val/video.path"]
    assert video.is_file()
    with av.open(str(video)) as container:
        v, a = container.streams.video[0], container.streams.audio[0]
        assert (v.width, v.height) == (3 * 48, 48)  # masked | generated | ground truth
        frames = sum(1 for _ in container.decode(v))
        assert frames == round(VIDEO_SECONDS * 25)
        assert a.rate == 16000
        assert float(a.duration * a.time_base) == pytest.approx(VIDEO_SECONDS, abs=0.03)


def test_the_model_artifact_is_in_the_run(logged_run):
    _, wandb_dir, run, registry = logged_run
    name = f"model-{run.run_id}"
    assert name in registry.names()
    assert name.encode() in next(wandb_dir.glob("run-*.wandb")).read_bytes()
