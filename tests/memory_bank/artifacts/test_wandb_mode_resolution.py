import pytest

from memory_bank.artifacts.wandb_mode import resolve_mode


@pytest.fixture
def no_credentials(monkeypatch, tmp_path):
    for var in ("WANDB_MODE", "WANDB_API_KEY", "NETRC"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))  # no ~/.netrc


def test_auto_is_offline_without_credentials(no_credentials):
    assert resolve_mode("auto") == "offline"


def test_auto_is_online_with_an_api_key_or_netrc(no_credentials, monkeypatch, tmp_path):
    monkeypatch.setenv("WANDB_API_KEY", "x" * 40)
    assert resolve_mode("auto") == "online"
    monkeypatch.delenv("WANDB_API_KEY")
    netrc = tmp_path / ".netrc"
    netrc.write_text("machine api.wandb.ai\n  login user\n  password " + "y" * 40 + "\n")
    netrc.chmod(0o600)
    assert resolve_mode("auto") == "online"


def test_explicit_env_and_bad_mode(no_credentials, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "disabled")
    assert resolve_mode("auto") == "disabled"
    assert resolve_mode("offline") == "offline"
    with pytest.raises(ValueError, match="mode='cloud'"):
        resolve_mode("cloud")
