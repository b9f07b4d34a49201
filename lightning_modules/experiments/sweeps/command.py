"""A trial's command line, built from the sweep file's `command:` as `wandb agent` builds it.

The agent (wandb/wandb_agent.py, wandb/sdk/launch/sweeps/utils.py) replaces whole-element
macros: `${args}` -> `--key=value` per parameter (value formatted with Python's str()),
`${args_no_hyphens}`, `${args_json}`, ... and `${envvar:NAME}` anywhere in an element.
The same formatting is used here so a trial gets the same argv offline as under the agent.
Offline, `${env}` becomes nothing and `${interpreter}` this Python; an unknown macro is an error
(the agent would silently drop it).
"""

from __future__ import annotations

import json
import os
import re
import shutil
import sys
from pathlib import Path
from typing import Any

from lightning_modules.experiments.sweeps.spec import SweepConfigError

ENVVAR = re.compile(r"\$\{envvar:([A-Z0-9_]*)\}")


def format_args(params: dict[str, Any]) -> dict[str, list[str]]:
    """The agent's argument formats, keyed by macro name."""
    flags = [f"{key}={value}" for key, value in params.items()]
    no_equals = [item for key, value in params.items() for item in (f"--{key}", str(value))]
    no_booleans = [f"--{key}" if isinstance(value, bool) else f"--{key}={value}"
                   for key, value in params.items() if value is not False]
    return {
        "args": ["--" + f for f in flags],
        "args_no_equals": no_equals,
        "args_no_hyphens": flags,
        "args_no_boolean_flags": no_booleans,
        "args_json": [json.dumps(params)],
        "args_append_hydra": ["+" + f for f in flags],
        "args_override_hydra": ["++" + f for f in flags],
    }


def build_command(command: list[str], params: dict[str, Any], program: str | None = None,
                  args_json_file: Path | None = None) -> list[str]:
    """Expand the macros of a sweep `command:` for one trial's parameters."""
    macros: dict[str, list[str]] = {"env": [], "interpreter": [sys.executable],
                                    **format_args(params)}
    if program is not None:
        macros["program"] = [program]
    if args_json_file is not None:
        macros["args_json_file"] = [str(args_json_file)]
    argv: list[str] = []
    for element in command:
        element = ENVVAR.sub(lambda m: os.environ.get(m.group(1), m.group(1)), str(element))
        if element.startswith("${") and element.endswith("}"):
            name = element[2:-1]
            if name not in macros:
                hint = "set `program:` in the sweep file" if name == "program" else (
                    f"known: {sorted(macros)}")
                raise SweepConfigError(f"command element {element!r} cannot be expanded: {hint}")
            argv.extend(macros[name])
        else:
            argv.append(element)
    if not argv:
        raise SweepConfigError(f"command {command!r} expands to nothing")
    return argv


def resolve_executable(argv: list[str]) -> list[str]:
    """Run `lipmem` from this environment (the script beside this Python), like the runner."""
    if argv and argv[0] == "lipmem":
        beside = Path(sys.executable).parent / "lipmem"
        if beside.is_file():
            return [str(beside), *argv[1:]]
        if shutil.which("lipmem") is None:
            return [sys.executable, "-m", "lightning_modules.cli.main", *argv[1:]]
    return argv
