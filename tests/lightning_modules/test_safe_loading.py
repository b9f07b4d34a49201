"""Loading is safe: sha256-checked against the manifest or sidecar, never executes code."""

from __future__ import annotations

import os
from pathlib import Path

import lightning as L
import pytest
import torch
from torch.utils.data import DataLoader

from datamodules.atomic_files import sha256_file
from lightning_modules.callbacks import RunCheckpoint
from lightning_modules.callbacks.model_artifact import CKPT_FILE, MODEL_TYPE
from lightning_modules.checkpoints.digest import (
    CheckpointIntegrityError,
    load_checkpoint_safely,
    sidecar_path,
    verify_digest,
    write_digest,
)
from lightning_modules.checkpoints.references import resolve_ckpt_path
from memory_bank.artifacts.registry import ArtifactIntegrityError, LocalRegistry
from memory_bank.bank import CODES_FILE, load_bank, publish_bank


class RunsCode:
    """Unpickling this runs `touch MARKER`: what a malicious checkpoint would do."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def plain_ckpt(path: Path) -> Path:
    torch.save({"state_dict": {"w": torch.arange(4.0)}, "global_step": 3,
                "lipmem": {"wandb_run_id": None}}, path)
    return path


def evil_ckpt(path: Path, marker: Path) -> Path:
    torch.save({"state_dict": {"w": torch.zeros(2)}, "payload": RunsCode(marker)}, path)
    return path


def tamper(path: Path) -> None:
    data = bytearray(path.read_bytes())
    data[len(data) // 2] ^= 0xFF
    path.write_bytes(bytes(data))


def test_tampered_registry_checkpoint_is_refused_naming_file_and_digests(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    version = registry.publish("model-run1", MODEL_TYPE,
                               {CKPT_FILE: plain_ckpt(tmp_path / "last.ckpt")}, {})
    assert resolve_ckpt_path("model-run1:latest", str(registry.root)).endswith(CKPT_FILE)
    stored = version.file(CKPT_FILE)
    expected = sha256_file(stored)
    os.chmod(stored, 0o644)
    tamper(stored)
    with pytest.raises(ArtifactIntegrityError) as err:
        resolve_ckpt_path("model-run1:latest", str(registry.root))
    message = str(err.value)
    assert str(stored) in message and expected in message and sha256_file(stored) in message


def test_tampered_bank_codes_are_refused(tmp_path):
    registry = LocalRegistry(tmp_path / "registry")
    version = publish_bank(registry, torch.randn(8, 16), {"method": "test"})
    assert load_bank("memory-bank:n8", registry).codes.shape == (8, 16)
    codes = version.file(CODES_FILE)
    expected = sha256_file(codes)
    tamper(codes)
    with pytest.raises(ArtifactIntegrityError, match=rf"{CODES_FILE}.*{expected}"):
        load_bank("memory-bank:n8", registry)


def test_tampered_local_checkpoint_is_refused_and_a_good_one_loads(tmp_path):
    ckpt = plain_ckpt(tmp_path / "last.ckpt")
    digest = write_digest(ckpt)
    assert sidecar_path(ckpt).read_text() == f"{digest}  last.ckpt\n"  # sha256sum -c format
    assert load_checkpoint_safely(ckpt)["global_step"] == 3
    tamper(ckpt)
    with pytest.raises(CheckpointIntegrityError) as err:
        load_checkpoint_safely(ckpt)
    assert str(ckpt) in str(err.value) and digest in str(err.value)
    assert sha256_file(ckpt) in str(err.value)


def test_a_checkpoint_that_would_run_code_is_refused_and_runs_nothing(tmp_path):
    marker = tmp_path / "pwned"
    ckpt = evil_ckpt(tmp_path / "evil.ckpt", marker)
    write_digest(ckpt)  # its digest matches: only the code-free loader stands in the way
    with pytest.raises(CheckpointIntegrityError, match="cannot be loaded safely"):
        load_checkpoint_safely(ckpt)
    assert not marker.exists()


@pytest.mark.timeout(600)
def test_cli_refuses_tampered_and_code_carrying_checkpoints(tiny_corpus, tmp_path, lipmem_cli):
    args = ["--config", "configs/smoke.yaml", f"--data.root={tiny_corpus}",
            f"--trainer.default_root_dir={tmp_path / 'run'}", "--trainer.logger=false"]
    tampered = plain_ckpt(tmp_path / "tampered.ckpt")
    write_digest(tampered)
    tamper(tampered)
    out = lipmem_cli(["validate", *args, f"--ckpt_path={tampered}"], tmp_path)
    assert out.returncode != 0
    assert "has changed since it was saved" in out.stderr and str(tampered) in out.stderr

    marker = tmp_path / "pwned"
    evil = evil_ckpt(tmp_path / "evil.ckpt", marker)
    out = lipmem_cli(["fit", *args, f"--ckpt_path={evil}"], tmp_path)
    assert out.returncode != 0 and "cannot be loaded safely" in out.stderr, out.stderr[-3000:]
    assert not marker.exists()


def test_run_checkpoint_writes_a_matching_sidecar_per_checkpoint_and_removes_stale_ones(tmp_path):
    from lightning_modules.lipsync_gan import LipSyncGAN
    from lightning_modules.losses import LipSyncLoss
    from lightning_modules.nets import LipSyncGenerator

    s = 32
    gen = LipSyncGenerator(image_size=s, num_codes=4, embed_dim=16, audio_dim=16, base_channels=8,
                           max_channels=16, attention_heads=2, mapping_hidden=16, cond_channels=4)
    gen.memory.load_codes(torch.randn(4, 16))
    model = LipSyncGAN(gen, LipSyncLoss(lpips_backbone="random", disc_channels=8))
    batches = [{"face": torch.randint(0, 256, (2, 1, 3, s, s), dtype=torch.uint8),
                "mel": torch.randn(2, 1, 1, 80, 16), "mask": torch.ones(2, 1, s, s)}
               for _ in range(3)]
    callback = RunCheckpoint(filename="step{step}", every_n_train_steps=2, save_top_k=1,
                             save_last=True)
    trainer = L.Trainer(default_root_dir=str(tmp_path), accelerator="cpu", devices=1,
                        max_epochs=1, logger=False, enable_progress_bar=False,
                        enable_model_summary=False, limit_val_batches=0, callbacks=[callback])
    trainer.fit(model, train_dataloaders=DataLoader(batches, batch_size=None))
    folder = tmp_path / "checkpoints"
    ckpts = sorted(p.name for p in folder.glob("*.ckpt"))
    sidecars = sorted(p.name for p in folder.glob("*.sha256"))
    assert "last.ckpt" in ckpts and len(ckpts) == 2  # last + the one kept by top-k
    assert sidecars == [f"{name}.sha256" for name in ckpts]  # none left for removed files
    for name in ckpts:
        assert verify_digest(folder / name)
        load_checkpoint_safely(folder / name)  # plain types only: weights_only works
