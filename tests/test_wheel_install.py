"""A wheel (non-editable) install works from any folder: the configs ship inside the package.

The wheel is built from a copy of this checkout, installed with `--no-deps` into a folder of
its own, and its own `lipmem` script runs `fit --print_config` from an unrelated folder with
only that folder on PYTHONPATH (the dependencies come from this environment).
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from tests.conftest import REPO

pytestmark = pytest.mark.timeout(600)
SOURCES = ("pyproject.toml", "setup.py", "README.md", "configs", "lightning_modules",
           "datamodules", "memory_bank")


@pytest.fixture(scope="module")
def installed(tmp_path_factory) -> Path:
    tmp = tmp_path_factory.mktemp("wheel")
    src = tmp / "src"
    for name in SOURCES:  # a copy: building in place would leave build/ in the checkout
        source = REPO / name
        if source.is_dir():
            shutil.copytree(source, src / name,
                            ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
        else:
            src.mkdir(exist_ok=True)
            shutil.copy2(source, src / name)
    built = subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps",
                            "--no-build-isolation", "-w", str(tmp / "dist"), str(src)],
                           capture_output=True, text=True, check=False)
    assert built.returncode == 0, built.stderr[-3000:]
    wheel = next((tmp / "dist").glob("lipmem-*.whl"))
    site = tmp / "site"
    done = subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "--no-compile",
                           "--target", str(site), str(wheel)],
                          capture_output=True, text=True, check=False)
    assert done.returncode == 0, done.stderr[-3000:]
    return site


def lipmem(site: Path, cwd: Path, *args: str) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    env.update(PYTHONPATH=str(site), HOME=str(cwd), WANDB_MODE="offline")
    return subprocess.run([sys.executable, str(site / "bin" / "lipmem"), *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=300, check=False)


def test_the_wheel_carries_the_configs(installed):
    shipped = installed / "lightning_modules" / "configs"
    assert {p.name for p in shipped.glob("*.yaml")} >= {"default.yaml", "smoke.yaml",
                                                        "bank.yaml", "sync_expert.yaml"}
    assert (shipped / "ablation" / "cpu.yaml").is_file()


def test_print_config_from_another_folder_has_the_defaults(installed, tmp_path):
    """The reported case: `generator: null`, `loss: null`, no logger, no callbacks."""
    out = lipmem(installed, tmp_path, "fit", "--print_config")
    assert out.returncode == 0, out.stderr[-3000:]
    config = yaml.safe_load(out.stdout)
    assert config["model"]["generator"]["class_path"] == "lightning_modules.nets.LipSyncGenerator"
    assert config["model"]["loss"]["class_path"] == "lightning_modules.losses.LipSyncLoss"
    assert config["trainer"]["logger"]["class_path"].endswith("LipmemWandbLogger")
    callbacks = [c["class_path"] for c in config["trainer"]["callbacks"]]
    assert any(c.endswith("RunCheckpoint") for c in callbacks), callbacks
    # the code that ran is the installed copy, not this checkout
    probe = "import lightning_modules; print(lightning_modules.__file__)"
    where = subprocess.run([sys.executable, "-c", probe], cwd=tmp_path,
                           env={**os.environ, "PYTHONPATH": str(installed)},
                           capture_output=True, text=True, check=True).stdout
    assert where.startswith(str(installed))


def test_shipped_overlays_are_found_by_their_checkout_path(installed, tmp_path):
    out = lipmem(installed, tmp_path, "fit", "--config", "configs/smoke.yaml", "--print_config")
    assert out.returncode == 0, out.stderr[-3000:]
    config = yaml.safe_load(out.stdout)
    assert config["trainer"]["max_steps"] == 8 and config["data"]["image_size"] == 48


def test_a_missing_default_config_is_an_error(installed, tmp_path):
    broken = tmp_path / "site"
    shutil.copytree(installed, broken)
    (broken / "lightning_modules" / "configs" / "default.yaml").unlink()
    out = lipmem(broken, tmp_path, "fit", "--print_config")
    assert out.returncode != 0
    assert "default.yaml" in out.stderr and "missing" in out.stderr, out.stderr[-3000:]
    assert "generator: null" not in out.stdout
