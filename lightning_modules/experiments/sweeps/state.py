"""`OUT/SWEEP_ID/sweep.json`: what every trial ran and how it ended, rewritten after each trial.

Written to a temp file and renamed, so a killed sweep leaves the previous complete file; a
rerun reads it to skip trials that finished (exit code 0); failed and interrupted ones
(``status``) run again.
"""

from __future__ import annotations

import hashlib
import json
import math
from pathlib import Path
from typing import Any

STATE_FILE = "sweep.json"
FORMAT_VERSION = 1


def sweep_id_for(stem: str, config_sha256: str, seed: int, extra_args: list[str]) -> str:
    """`{file stem}-{8 hex}`: the same file, seed and extra args give the same sweep id."""
    key = json.dumps([config_sha256, seed, extra_args])
    return f"{stem}-{hashlib.sha256(key.encode()).hexdigest()[:8]}"


def finite_or_none(value: Any) -> float | None:
    """A metric as JSON can hold it: a finite float, else None (NaN/inf/missing/non-numeric)."""
    if isinstance(value, bool) or not isinstance(value, (int, float)):
        return None
    return float(value) if math.isfinite(value) else None


def load_state(path: Path) -> dict[str, Any] | None:
    if not path.is_file():
        return None
    try:
        state = json.loads(path.read_text())
    except json.JSONDecodeError as err:
        raise ValueError(f"{path}: not valid JSON ({err}); move it away to start the sweep "
                         "again") from err
    if not isinstance(state, dict) or state.get("format_version") != FORMAT_VERSION:
        raise ValueError(f"{path}: format_version={state.get('format_version')!r}, expected "
                         f"{FORMAT_VERSION}")
    return state


def check_resume(state: dict[str, Any], path: Path, config_sha256: str, seed: int) -> None:
    """Refuse to mix trials of a different sweep file or seed into one sweep folder."""
    if state.get("config_sha256") != config_sha256 or state.get("seed") != seed:
        raise ValueError(
            f"{path} was written for sweep file sha256 {state.get('config_sha256', '?')[:12]} "
            f"seed {state.get('seed')!r}, not sha256 {config_sha256[:12]} seed {seed}: give "
            "another --sweep-id (or --out) for the changed sweep")


def finished(state: dict[str, Any] | None) -> dict[str, dict[str, Any]]:
    """Trials recorded as finished (exit code 0, not interrupted), by trial name."""
    trials = (state or {}).get("trials", {})
    return {name: t for name, t in trials.items()
            if t.get("exit_code") == 0 and t.get("status", "finished") == "finished"}
