"""Packaging that pyproject.toml cannot express: the YAML configs live in the checkout's
configs/ (where `--config configs/x.yaml` finds them) and ship inside the wheel as
lightning_modules/configs/ (where `lipmem` finds them after a non-editable install)."""

from setuptools import find_namespace_packages, find_packages, setup

CONFIGS = ["lightning_modules.configs",
           *(f"lightning_modules.configs.{p}" for p in find_namespace_packages(where="configs"))]

setup(
    packages=[*find_packages(include=["lightning_modules*", "datamodules*", "memory_bank*"]),
              *CONFIGS],
    package_dir={"lightning_modules.configs": "configs"},
    package_data={p: ["*.yaml"] for p in CONFIGS},
)
