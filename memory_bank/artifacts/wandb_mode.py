"""Which W&B mode a run or an artifact lookup uses, decided from the user's own W&B settings.

Offline unless credentials exist for the W&B server wandb is configured for (WANDB_BASE_URL,
or the `base_url` that `wandb login --host` writes into W&B's settings). Shared by the
training logger and the artifact references, so both decide the same way; it needs wandb
only, not Lightning.
"""

from __future__ import annotations

import os
from pathlib import Path

MODES = ("auto", "online", "offline", "disabled")
# the folders wandb uses, pointed into the run folder by LipmemWandbLogger
FOLDER_VARS = ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR",
               "WANDB_ARTIFACT_DIR")
# their values before the first logger of this process moved them: where the user's own
# W&B settings (`wandb login --host` writes base_url there) are
_user_folders: dict[str, str | None] = {}


def remember_user_folders() -> None:
    """Record the user's own W&B folders, once per process, before a logger points them into
    a run folder: later lookups of the user's settings read them from here."""
    for var in FOLDER_VARS:
        _user_folders.setdefault(var, os.environ.get(var))


def _user_env() -> dict[str, str]:
    env = dict(os.environ)
    for var, value in _user_folders.items():
        env.pop(var, None)
        if value is not None:
            env[var] = value
    return env


def wandb_host() -> str:
    """The W&B server wandb would log to, read as wandb reads it: WANDB_BASE_URL, else
    ``base_url`` from the user's W&B settings files (``wandb login --host URL`` writes it),
    else the public cloud. Uses the user's settings folder even after a logger moved
    WANDB_CONFIG_DIR into a run folder."""
    from wandb.sdk.wandb_settings import Settings

    env = _user_env()
    config_dir = Path(env.get("WANDB_CONFIG_DIR") or Path("~", ".config", "wandb")).expanduser()
    settings = Settings()
    settings.settings_system = str(config_dir / "settings")
    settings.update_from_system_settings()
    settings.update_from_env_vars(env)
    return str(settings.base_url)


def has_wandb_credentials(host: str | None = None) -> bool:
    """Whether wandb would find credentials for ``host`` (default :func:`wandb_host`): an
    API key or identity token in the environment, or the netrc entry for that host (what
    ``wandb login`` writes), read with wandb's own netrc reader."""
    if os.environ.get("WANDB_API_KEY") or os.environ.get("WANDB_IDENTITY_TOKEN_FILE"):
        return True
    host = host or wandb_host()
    try:
        from wandb.sdk.lib.wbauth.wbnetrc import read_netrc_auth
    except ImportError:  # wandb < 0.22: the same lookup with the standard library
        import netrc
        from urllib.parse import urlsplit

        try:
            return netrc.netrc().authenticators(urlsplit(host).netloc) is not None
        except (OSError, netrc.NetrcParseError):
            return False
    try:
        return read_netrc_auth(host=host) is not None
    except Exception:  # noqa: BLE001 - a malformed key: wandb would refuse it too
        return False


def resolve_mode(mode: str) -> str:
    """An explicit mode as given; ``auto``: WANDB_MODE when set, else online when wandb finds
    credentials for the configured host (:func:`has_wandb_credentials`), else offline."""
    if mode not in MODES:
        raise ValueError(f"trainer.logger mode={mode!r}: expected one of {MODES}")
    if mode != "auto":
        return mode
    env = {"dryrun": "offline"}.get(os.environ.get("WANDB_MODE", ""), os.environ.get("WANDB_MODE"))
    if env in ("online", "offline", "disabled"):
        return env
    return "online" if has_wandb_credentials() else "offline"
