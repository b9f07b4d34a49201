"""Where lipmem's YAML configs are, and what a command line's `--config` files ask for.

Shared by the `lipmem` entry point (lightning_modules.cli.main) and the LightningCLI jobs
(lightning_modules.cli.trainer), which import it and not each other's constants.
"""

from __future__ import annotations

from pathlib import Path

TRAINER_COMMANDS = ("fit", "validate", "test", "predict")
REPO_ROOT = Path(__file__).resolve().parents[2]
# The YAML configs: inside the package in a wheel install (setup.py ships the checkout's
# configs/ as lightning_modules/configs/), the checkout's configs/ otherwise.
PACKAGED_CONFIGS = Path(__file__).resolve().parents[1] / "configs"
CHECKOUT_CONFIGS = REPO_ROOT / "configs"
CONFIGS = PACKAGED_CONFIGS if PACKAGED_CONFIGS.is_dir() else CHECKOUT_CONFIGS
DEFAULT_CONFIG = CONFIGS / "default.yaml"
BANK_CONFIG = CONFIGS / "bank.yaml"
SYNC_EXPERT_CONFIG = CONFIGS / "sync_expert.yaml"
JOBS = ("sync_expert",)  # `lipmem_job:` in a --config file: a trainer job other than the GAN


def require_default_config(path: Path) -> Path:
    """``path`` when it exists; otherwise the job would silently run without its defaults
    (no generator, loss, logger or callbacks), so it is an error naming what is missing."""
    if not path.is_file():
        raise SystemExit(f"lipmem: the default config {path} is missing (looked in "
                         f"{PACKAGED_CONFIGS} and {CHECKOUT_CONFIGS}); the installation is "
                         "incomplete: reinstall lipmem")
    return path


def shipped_config_args(args: list[str]) -> list[str]:
    """``--config configs/NAME.yaml`` given where no such file exists (a wheel install run
    from any folder) names the config shipped with lipmem; other paths are left as they are."""
    out = list(args)
    for i, arg in enumerate(out):
        flag, eq, value = arg.partition("=")
        if eq and flag in ("--config", "-c"):
            out[i] = f"{flag}={_shipped(value)}"
        elif not eq and i > 0 and out[i - 1] in ("--config", "-c"):
            out[i] = _shipped(arg)
    return out


def _shipped(value: str) -> str:
    rel = Path(value)
    if rel.is_absolute() or rel.exists() or not rel.parts or rel.parts[0] != "configs":
        return value
    candidate = CONFIGS.joinpath(*rel.parts[1:])
    return str(candidate) if candidate.is_file() else value


def config_job(args: list[str]) -> str | None:
    """The `lipmem_job` declared by the last `--config` file that declares one (None: the
    GAN). Peeked before LightningCLI runs because the job decides which module it builds."""
    import yaml

    files = [a.split("=", 1)[1] for a in args if a.startswith("--config=")]
    files += [args[i + 1] for i, a in enumerate(args[:-1]) if a in ("--config", "-c")]
    job = None
    for name in files:
        path = Path(name)
        if not path.is_file():
            continue  # LightningCLI reports it
        try:
            data = yaml.safe_load(path.read_text())
        except yaml.YAMLError:
            continue  # LightningCLI reports it
        if isinstance(data, dict) and data.get("lipmem_job") is not None:
            job = str(data["lipmem_job"])
            if job not in JOBS:
                raise SystemExit(f"lipmem: {path}: lipmem_job={job!r} is not one of {JOBS}")
    return job
