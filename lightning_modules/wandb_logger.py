"""W&B logging that works with and without a server, writing only under the run folder.

Offline unless credentials exist for the W&B server wandb is configured for (WANDB_BASE_URL,
or the `base_url` that `wandb login --host` writes into W&B's settings): a run on an
air-gapped cluster still records everything for a later `wandb sync`. wandb keeps files in
four places (run data, artifacts staging, cache, settings); all four are pointed inside
`save_dir` so nothing lands in $HOME. The mode and the server are decided from the user's
own settings first, since the settings folder is one of the four.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

from lightning.pytorch.loggers import WandbLogger

MODES = ("auto", "online", "offline", "disabled")
# the folders wandb uses, pointed into the run folder by LipmemWandbLogger
FOLDER_VARS = ("WANDB_DIR", "WANDB_DATA_DIR", "WANDB_CACHE_DIR", "WANDB_CONFIG_DIR",
               "WANDB_ARTIFACT_DIR")
# their values before the first logger of this process moved them: where the user's own
# W&B settings (`wandb login --host` writes base_url there) are
_user_folders: dict[str, str | None] = {}


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


class LipmemWandbLogger(WandbLogger):
    """WandbLogger with `mode='auto'` and every W&B file kept under `save_dir`."""

    def __init__(self, save_dir: str | None = None, project: str = "lipmem",
                 name: str | None = None, mode: str = "auto", group: str | None = None,
                 tags: list[str] | None = None, id: str | None = None,
                 resume: str | None = None, job_type: str | None = None,
                 log_model: bool = False, **kwargs: Any) -> None:
        """id: continue that W&B run (`lipmem fit --ckpt_path` fills it from the checkpoint);
        resume: wandb.init's resume, default 'allow' when an id is given."""
        if save_dir is None:
            raise ValueError("LipmemWandbLogger needs save_dir (the CLI fills it with "
                             "trainer.default_root_dir)")
        # Decided from the user's own W&B settings, before their folder is moved below.
        self.mode = resolve_mode(mode)
        host = wandb_host() if self.mode == "online" else None
        root = Path(save_dir).resolve()
        root.mkdir(parents=True, exist_ok=True)
        for var in FOLDER_VARS:
            _user_folders.setdefault(var, os.environ.get(var))
        for var, sub in zip(FOLDER_VARS, ("", "wandb-data", "wandb-cache", "wandb-config",
                                          "wandb-artifacts"), strict=True):
            path = root / sub if sub else root
            path.mkdir(parents=True, exist_ok=True)
            os.environ[var] = str(path)
        if host is not None:  # the moved settings folder no longer names the user's server
            os.environ.setdefault("WANDB_BASE_URL", host)
        # Lightning refuses offline=True with log_model; WANDB_MODE=offline does the same job.
        os.environ["WANDB_MODE"] = self.mode
        if id and resume is None:
            resume = "allow"
        if resume is not None:
            kwargs["resume"] = resume
        if job_type is not None:
            kwargs["job_type"] = job_type
        super().__init__(name=name, save_dir=str(root), project=project, group=group, tags=tags,
                         id=id, log_model=log_model, offline=False, **kwargs)
