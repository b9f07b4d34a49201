"""Files loaded from disk (checkpoints, autoencoder files, run state) choose no code and
cannot make us allocate without bound.

A checkpoint is data: `weights_only` loading keeps pickles from running code, but its
fields are read afterwards. Class paths in them (Lightning's `hyper_parameters`, the
generator class, a crop detector) must never be imported, and the constructor arguments
they record must not build a net larger than the weights the file holds.
"""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from lightning_modules.generation.clip_generation import MODEL_RECORD_KEY, load_generator
from tests.conftest import REPO
from tests.model_fixtures import generator_checkpoint

EVIL_MODULE = ("import pathlib, os\npathlib.Path(os.environ['EVIL_MARKER']).touch()\n"
               "from lightning_modules.nets import LipSyncGenerator\n"
               "class Gen(LipSyncGenerator):\n    pass\n")


def evil_env(tmp_path: Path) -> dict[str, str]:
    folder = tmp_path / "evil"
    folder.mkdir(exist_ok=True)
    (folder / "evilmod.py").write_text(EVIL_MODULE)
    return {"PYTHONPATH": f"{REPO}:{folder}", "EVIL_MARKER": str(tmp_path / "evil_ran")}


def test_ckpt_hyper_parameters_cannot_name_a_class(tiny_corpus, tmp_path, lipmem_cli):
    """Lightning's CLI merges a --ckpt_path file's `hyper_parameters` into the config, and
    jsonargparse imports any class_path found there. lipmem's CLI does not merge them."""
    ckpt = tmp_path / "evil.ckpt"
    torch.save({"state_dict": {}, "global_step": 0, "hyper_parameters": {
        "generator": {"class_path": "evilmod.Gen", "init_args": {"num_codes": 8}}}}, ckpt)
    out = lipmem_cli(["validate", "--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
                      f"--trainer.default_root_dir={tmp_path / 'run'}", f"--ckpt_path={ckpt}",
                      "--trainer.logger=false"], tmp_path, timeout=300, **evil_env(tmp_path))
    assert not (tmp_path / "evil_ran").exists(), out.stderr[-3000:]
    assert "evilmod" not in out.stdout + out.stderr


def test_recorded_arguments_cannot_allocate_beyond_the_stored_weights(tmp_path):
    """A few bytes asking for a 10^11-code memory (6 TB) are refused from shapes alone."""
    path = generator_checkpoint(tmp_path / "big.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint[MODEL_RECORD_KEY]["generator"]["num_codes"] = 10**11
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"big.ckpt.*do not match the recorded architecture"):
        load_generator(path)


@pytest.mark.parametrize("change", [
    {"generator": {"no_such_argument": 1}},
    {"generator": ["not", "a", "mapping"]},
    {"geometry": {"image_size": 48, "surprise": 1}},
    {"geometry": {"image_size": 48, "crop": "haar"}},
])
def test_malformed_records_are_a_clear_error_naming_the_file(tmp_path, change):
    path = generator_checkpoint(tmp_path / "odd.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    record = checkpoint[MODEL_RECORD_KEY]
    for key, value in change.items():
        record[key] = {**record[key], **value} if isinstance(value, dict) else value
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match="odd.ckpt"):
        load_generator(path)


def test_generator_class_is_one_of_the_built_in_ones(tmp_path):
    path = generator_checkpoint(tmp_path / "cls.ckpt")
    checkpoint = torch.load(path, weights_only=True)
    checkpoint[MODEL_RECORD_KEY]["generator_class"] = "os.system"
    torch.save(checkpoint, path)
    with pytest.raises(ValueError, match=r"generator_class 'os.system' is not one of"):
        load_generator(path)


def test_autoencoder_file_arguments_are_checked_against_its_weights(tmp_path):
    from safetensors import safe_open
    from safetensors.torch import save_file

    from lightning_modules.nets.mouth_autoencoder import MouthAutoencoderNet
    from memory_bank.encoder_file import load_autoencoder, save_autoencoder

    net = MouthAutoencoderNet(image_size=32, embed_dim=8, audio_dim=8, base_channels=4,
                              max_channels=8, cond_channels=4)
    path = save_autoencoder(tmp_path / "ae.safetensors", net, {"steps": 1})
    assert load_autoencoder(path)[0].config == net.config
    with safe_open(str(path), framework="pt") as fh:
        meta = json.loads(fh.metadata()["lipmem"])
        tensors = {k: fh.get_tensor(k) for k in fh.keys()}  # noqa: SIM118
    meta["net"]["max_channels"] = 1 << 20
    save_file(tensors, str(path), metadata={"lipmem": json.dumps(meta)})
    with pytest.raises(ValueError, match="ae.safetensors.*do not match"):
        load_autoencoder(path)


@pytest.mark.parametrize("stages", [
    {"autoencoder": {"ref": "--bank.method=evil"}, "features": {"path": "FEATURES"}},
    {"autoencoder": {"ref": "mouth-autoencoder:v0"}, "features": {"path": "/etc/passwd"}},
    {"autoencoder": {"ref": ["not", "a", "ref"]}, "features": {"path": "FEATURES"}},
    "not an object",
])
def test_ablation_bank_summary_feeds_only_a_registry_ref_and_its_own_file(tmp_path, stages):
    """The ablation passes the bank build's recorded autoencoder and features on to the
    next command line: a summary.json changed on disk must not choose other arguments."""
    from lightning_modules.experiments.ablation.commands import Layout
    from lightning_modules.experiments.ablation.runner import bank_inputs
    from lightning_modules.experiments.ablation.spec import AblationConfigError

    layout = Layout(tmp_path)
    layout.bank_summary().parent.mkdir(parents=True)
    features = layout.bank_summary().parent / "features.npz"
    features.write_bytes(b"x")
    good = {"stages": {"autoencoder": {"ref": "mouth-autoencoder:v0"},
                       "features": {"path": str(features)}}}
    layout.bank_summary().write_text(json.dumps(good))
    assert bank_inputs(layout) == ("mouth-autoencoder:v0", str(features))
    text = json.dumps({"stages": stages}).replace("FEATURES", str(features))
    layout.bank_summary().write_text(text)
    with pytest.raises(AblationConfigError, match="summary.json"):
        bank_inputs(layout)


def test_resumed_callback_state_names_only_files_in_the_checkpoint_folder(tmp_path):
    """Lightning deletes the worst of a resumed ModelCheckpoint's `best_k_models`, guarded
    only by "inside dirpath" on the unresolved path: `dirpath/../victim` passed."""
    from lightning_modules.callbacks import RunCheckpoint

    folder = tmp_path / "run" / "checkpoints"
    folder.mkdir(parents=True)
    victim = tmp_path / "run" / "victim.txt"
    mine = str(folder / "epoch001.ckpt")
    callback = RunCheckpoint(dirpath=str(folder), monitor="val/l1_mouth", save_top_k=2)
    callback.load_state_dict({
        "dirpath": str(folder), "best_model_score": torch.tensor(0.1),
        "best_model_path": str(folder / ".." / "victim.txt"),
        "kth_best_model_path": "s3://bucket/other.ckpt", "kth_value": torch.tensor(0.2),
        "last_model_path": "/etc/hostname",
        "best_k_models": {mine: torch.tensor(0.1), str(folder / ".." / "victim.txt"):
                          torch.tensor(0.2), "s3://bucket/other.ckpt": torch.tensor(0.3)}})
    assert list(callback.best_k_models) == [mine]
    assert callback.best_model_path == callback.kth_best_model_path == ""
    assert callback.last_model_path == ""
    assert not victim.exists()


@pytest.mark.parametrize("run_id", ["../../elsewhere", "a/b", 42])
def test_a_checkpoints_wandb_run_id_is_an_id_not_a_path(tmp_path, run_id):
    """A resumed fit logs into the W&B run its checkpoint names; W&B makes folders from it."""
    from lightning_modules.checkpoints.references import wandb_run_id

    path = tmp_path / "last.ckpt"
    torch.save({"state_dict": {}, "lipmem": {"wandb_run_id": "abc123_x-9"}}, path)
    assert wandb_run_id(path) == "abc123_x-9"
    torch.save({"state_dict": {}, "lipmem": {"wandb_run_id": run_id}}, path)
    with pytest.raises(ValueError, match="wandb_run_id"):
        wandb_run_id(path)
