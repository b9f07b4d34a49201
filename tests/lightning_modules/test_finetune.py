"""Personalising a base model (configs/finetune.yaml): one person's mp4s -> `lipmem data prep`
-> `lipmem fit --model.init_from BASE` -> `lipmem infer`, all through the real CLI, at smoke
scale. The fine-tune must start from the base's judged (EMA) weights and keep its memory
codes without a bank, validate on the person's held-out video and stop early on
val/mouth_score."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import av
import pytest
import torch
import yaml
from lightning.pytorch.callbacks import Callback

from benchmarks.personal_corpus import add_mouth_tracks, make_person_videos
from lightning_modules.training.generator_ema import EMA_PREFIX, generator_state
from tests.conftest import REPO
from tests.media_fixtures import make_audio_file

FINETUNE = REPO / "configs" / "finetune.yaml"
MAX_STEPS = 12        # 6 batches of 4 at most; early stopping must end the run sooner
EARLY_STOP_STEPS = 8  # validation after batches 2 and 4; the second cannot improve (see overlay)
CODES = "generator.memory.codes"
PROBE = "tests.lightning_modules.test_finetune.FirstState"  # importable by the CLI subprocess


class FirstState(Callback):
    """Saves the live and averaged generator weights as training starts, i.e. after the
    module's on_fit_start has applied model.init_from and installed the memory codes."""

    def __init__(self, path: str) -> None:
        self.path = Path(path)

    def on_train_start(self, trainer: Any, pl_module: Any) -> None:
        live = {k: v.detach().clone() for k, v in pl_module.generator.state_dict().items()}
        ema = {k: v.detach().clone() for k, v in pl_module.eval_generator.state_dict().items()}
        torch.save({"live": live, "ema": ema}, self.path)


def smoke_overlay(tmp: Path) -> Path:
    """finetune.yaml's own callbacks with a probe added, and early stopping made certain to
    fire at the second validation (nothing improves by 1e9), so stopping is observable."""
    callbacks = yaml.safe_load(FINETUNE.read_text())["trainer"]["callbacks"]
    stopper = [c for c in callbacks if c["class_path"].endswith("RunEarlyStopping")]
    assert len(stopper) == 1 and stopper[0]["init_args"]["monitor"] == "val/mouth_score"
    stopper[0]["init_args"].update(patience=1, min_delta=1e9)
    callbacks.append({"class_path": PROBE,
                      "init_args": {"path": str(tmp / "first_state.pt")}})
    overlay = tmp / "smoke_overlay.yaml"
    overlay.write_text(yaml.safe_dump({"trainer": {"callbacks": callbacks}}))
    return overlay


@pytest.fixture(scope="module")
def base(tiny_corpus, tmp_path_factory, lipmem_cli) -> Path:
    """A smoke-size base model trained on the synthetic tiny corpus (4 batches), without media:
    `--media.every_n_val=0` reaches the media callback from the command line."""
    tmp = tmp_path_factory.mktemp("finetune_base")
    out = lipmem_cli(["fit", "--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
                      f"--trainer.default_root_dir={tmp / 'run'}", "--media.every_n_val=0",
                      "--trainer.logger=false"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    assert not list((tmp / "run").glob("samples/*"))
    return tmp / "run" / "checkpoints" / "last.ckpt"


@pytest.fixture(scope="module")
def person(tmp_path_factory, lipmem_cli) -> Path:
    """One person's four mp4s through `lipmem data prep` (split by video: train, val, test),
    plus the mouth track that drew each clip, so val/mouth_score is the openness error."""
    tmp = tmp_path_factory.mktemp("finetune_person")
    tracks = make_person_videos(tmp / "videos", clips=4, seconds=2.4, size=160)
    out = lipmem_cli(["data", "prep", "--videos", str(tmp / "videos"), "--out",
                      str(tmp / "prep"), "--image-size", "48", "--clip-seconds", "0.8",
                      "--min-clip-seconds", "0.8", "--workers", "1", "--no-progress"], tmp)
    assert out.returncode == 0, out.stderr[-4000:]
    manifest = add_mouth_tracks(tmp / "prep", tmp / "corpus", tracks)
    assert manifest["split_by"] == "video" and set(manifest["splits"]) == {"train", "val", "test"}
    return tmp


def finetune(base: Path, person: Path, tmp: Path, lipmem_cli, *extra: str) -> Path:
    """`lipmem fit` with finetune.yaml from `base` on the person's corpus; returns the run."""
    run = tmp / "run"
    fit = lipmem_cli(["fit", "--config", "configs/smoke.yaml", "--config", str(FINETUNE),
                      "--config", str(smoke_overlay(tmp)),
                      f"--model.init_from={base}", f"--data.root={person / 'corpus'}",
                      f"--trainer.default_root_dir={run}", "--data.batches_per_epoch=2",
                      "--data.shuffle_buffer=32", "--media.video_seconds=0", *extra], tmp)
    assert fit.returncode == 0, fit.stderr[-4000:]
    return run


def frame_count(path: Path) -> int:
    with av.open(str(path)) as container:
        return sum(1 for _ in container.decode(video=0))


def test_finetune_starts_from_the_base_and_infers(base, person, tmp_path, lipmem_cli):
    run = finetune(base, person, tmp_path, lipmem_cli, f"--trainer.max_steps={MAX_STEPS}")
    source = torch.load(base, map_location="cpu", weights_only=True)["state_dict"]
    assert any(k.startswith(EMA_PREFIX) for k in source)  # the base has an average to start from
    judged = {k[len("generator."):]: v for k, v in generator_state(source).items()}
    first = torch.load(tmp_path / "first_state.pt", map_location="cpu", weights_only=True)
    for name in ("live", "ema"):  # both start exactly at the base's EMA weights and codes
        assert first[name].keys() == judged.keys()
        for key, value in judged.items():
            assert torch.equal(first[name][key], value), (name, key)

    tuned = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert tuned["global_step"] == EARLY_STOP_STEPS  # stopped early on val/mouth_score
    assert tuned["memory_info"]["init_from"] == str(base)
    weights = tuned["state_dict"]
    assert torch.equal(weights[CODES], source[CODES])  # the base's codes, never re-clustered
    assert bool(weights["generator.memory.loaded"])
    changed = [k for k, v in judged.items() if v.is_floating_point() and "memory" not in k
               and not torch.equal(weights["generator." + k], v)]
    assert changed, "fine-tuning did not change any generator weight"

    audio = make_audio_file(tmp_path / "speech.wav", seconds=1.2, seed=3)
    face = person / "videos" / "person" / "clip_003.mp4"  # one of the person's own videos
    out = lipmem_cli(["infer", "--model", str(run / "checkpoints" / "last.ckpt"), "--face",
                      str(face), "--audio", str(audio), "--out", str(tmp_path / "out.mp4")],
                     tmp_path)
    assert out.returncode == 0, out.stderr[-4000:]
    assert frame_count(tmp_path / "out.mp4") == 30  # 1.2 s of audio at 25 fps


def test_finetune_refits_the_base_codes_on_the_person_when_asked(base, person, tmp_path,
                                                                 lipmem_cli):
    # refine through the CLI; how rebuild and refine differ: tests/memory_bank/test_bootstrap.py
    mode = "refine"
    run = finetune(base, person, tmp_path, lipmem_cli, f"--model.memory.refit={mode}",
                   "--trainer.max_steps=4")
    source = torch.load(base, map_location="cpu", weights_only=True)["state_dict"]
    judged = {k[len("generator."):]: v for k, v in generator_state(source).items()}
    first = torch.load(tmp_path / "first_state.pt", map_location="cpu", weights_only=True)
    tuned = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    codes = first["live"]["memory.codes"]
    assert not torch.allclose(codes, judged["memory.codes"]), "the base's codes were kept"
    assert torch.equal(first["ema"]["memory.codes"], codes)  # the average fuses the same codes
    assert torch.equal(tuned["state_dict"][CODES], codes)    # codes are not trained
    for key, value in judged.items():  # every other weight still starts at the base's
        if "memory" not in key:
            assert torch.equal(first["live"][key], value), key
    info = tuned["memory_info"]
    assert info["refit"] == mode and info["refit_frames"] > 0 and info["init_from"] == str(base)


def test_refit_without_a_base_is_refused():
    from lightning_modules.lipsync_gan import LipSyncGAN
    from lightning_modules.losses import LipSyncLoss
    from lightning_modules.nets import LipSyncGenerator
    from memory_bank.memory_config import MemoryConfig

    with pytest.raises(ValueError, match="refit='maybe'"):
        MemoryConfig(refit="maybe")
    generator = LipSyncGenerator(image_size=48, num_codes=8, embed_dim=32, audio_dim=32,
                                 base_channels=8, max_channels=32, attention_heads=2,
                                 mapping_hidden=32, cond_channels=8)
    with pytest.raises(ValueError, match="needs model.init_from"):
        LipSyncGAN(generator, LipSyncLoss(lpips_backbone="random", disc_channels=8),
                   memory=MemoryConfig(refit="refine"))
