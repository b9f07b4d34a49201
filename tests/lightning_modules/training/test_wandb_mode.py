"""`mode: auto` follows W&B's own notion of being logged in, for whichever server is
configured: `wandb login --host URL` (base_url in W&B's settings + a netrc entry for that
host), WANDB_BASE_URL, or the public cloud. No W&B server exists here: only the decision is
tested (and that the chosen server survives moving W&B's folders into the run folder)."""

from __future__ import annotations

from pathlib import Path

import pytest

from lightning_modules.training.wandb_logger import LipmemWandbLogger
from memory_bank.artifacts import wandb_mode
from memory_bank.artifacts.wandb_mode import FOLDER_VARS, resolve_mode

KEY = "k" * 40
HOST = "https://wandb.example.org"


@pytest.fixture
def home(monkeypatch, tmp_path) -> Path:
    """A user with no W&B credentials anywhere; every variable the logger sets is restored."""
    for var in ("WANDB_MODE", "WANDB_API_KEY", "WANDB_BASE_URL", "WANDB_IDENTITY_TOKEN_FILE",
                "NETRC", *FOLDER_VARS):
        monkeypatch.setenv(var, "")  # recorded, so that teardown restores what was there
        monkeypatch.delenv(var)
    monkeypatch.setattr(wandb_mode, "_user_folders", {})
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))
    monkeypatch.chdir(tmp_path)
    return home


def wandb_login_host(home: Path, host: str = HOST, netrc_host: str | None = None) -> None:
    """What `wandb login --host HOST KEY` leaves behind: the server in W&B's global
    settings, the key in ~/.netrc under the server's host name."""
    settings = home / ".config" / "wandb" / "settings"
    settings.parent.mkdir(parents=True)
    settings.write_text(f"[default]\nbase_url = {host}\n")
    netrc = home / ".netrc"
    netrc.write_text(f"machine {(netrc_host or host).split('://')[1]}\n  login user\n"
                     f"  password {KEY}\n")
    netrc.chmod(0o600)


def test_a_self_hosted_login_is_online(home, tmp_path):
    """The reported case: credentials were looked for only for api.wandb.ai, so a user of
    their own server ran offline without a word."""
    wandb_login_host(home)
    assert resolve_mode("auto") == "online"


def test_the_server_survives_moving_the_settings_folder(home, tmp_path):
    """Once WANDB_CONFIG_DIR points into the run folder, wandb no longer sees the user's
    base_url: the logger decides first and passes the server on; a second logger in the same
    process (the folder already moved) decides the same."""
    wandb_login_host(home)
    import os

    first = LipmemWandbLogger(save_dir=str(tmp_path / "run1"))
    assert first.mode == "online"
    assert os.environ["WANDB_CONFIG_DIR"].startswith(str(tmp_path / "run1"))
    assert os.environ["WANDB_BASE_URL"] == HOST
    os.environ.pop("WANDB_MODE")  # set by the first logger for wandb.init
    os.environ.pop("WANDB_BASE_URL")
    second = LipmemWandbLogger(save_dir=str(tmp_path / "run2"))
    assert second.mode == "online" and os.environ["WANDB_BASE_URL"] == HOST


def test_a_key_for_another_server_does_not_count(home):
    wandb_login_host(home, netrc_host="https://api.wandb.ai")
    assert resolve_mode("auto") == "offline"


def test_wandb_base_url_picks_the_host_whose_key_counts(home, monkeypatch):
    wandb_login_host(home, host="https://api.wandb.ai", netrc_host=HOST)
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_BASE_URL", HOST)
    assert resolve_mode("auto") == "online"


def test_wandb_mode_wins(home, monkeypatch):
    wandb_login_host(home)
    monkeypatch.setenv("WANDB_MODE", "offline")
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "dryrun")
    assert resolve_mode("auto") == "offline"
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"


def test_no_credentials_is_offline(home):
    assert resolve_mode("auto") == "offline"
