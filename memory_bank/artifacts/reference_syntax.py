"""The syntax of an artifact reference, parsed without resolving anything.

    wandb:entity/project/name:alias   W&B only (needs a server)
    name:alias, name:vN, name         W&B when online, else the local registry
    a path (abs, relative, ~)         that file or artifact folder

Both the resolver (:mod:`memory_bank.artifacts.references`) and the W&B backend
(:mod:`memory_bank.artifacts.wandb_artifacts`) use the parsed form.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from memory_bank.artifacts.registry import validate_name

WANDB_PREFIX = "wandb:"


@dataclass(frozen=True)
class Reference:
    raw: str
    kind: str                      # "wandb" | "registry" | "path"
    name: str | None = None
    alias: str | None = None
    entity: str | None = None
    project: str | None = None
    path: Path | None = None

    @property
    def wandb_path(self) -> str:
        """`[entity/][project/]name:alias`, as W&B's use_artifact / Api.artifact take it."""
        return "/".join(p for p in (self.entity, self.project, f"{self.name}:{self.alias}") if p)


def _split_alias(text: str, raw: str) -> tuple[str, str]:
    name, sep, alias = text.partition(":")
    if sep and not alias:
        raise ValueError(f"reference {raw!r}: empty alias after ':' (expected name:alias or "
                         "name:vN)")
    if ":" in alias:
        raise ValueError(f"reference {raw!r}: more than one ':' (expected name:alias or name:vN)")
    alias = alias or "latest"
    validate_name(name, f"reference {raw!r}: artifact name")
    validate_name(alias, f"reference {raw!r}: alias")
    return name, alias


def _looks_like_path(text: str) -> bool:
    seps = [s for s in (os.sep, os.altsep, "/") if s]
    return (text.startswith((".", "~")) or any(s in text for s in seps)
            or os.path.lexists(text))


def parse_reference(ref: str) -> Reference:
    """Classify `ref` (see the module docstring); raises ValueError on a malformed one."""
    if not isinstance(ref, str) or not ref.strip():
        raise ValueError(f"artifact reference {ref!r} is empty: expected name:alias, "
                         "wandb:entity/project/name:alias or a file path")
    text = ref.strip()
    if text.startswith(WANDB_PREFIX):
        body = text[len(WANDB_PREFIX):]
        parts = body.split("/")
        if not 1 <= len(parts) <= 3 or not all(parts):
            raise ValueError(f"reference {ref!r}: expected wandb:entity/project/name:alias")
        name, alias = _split_alias(parts[-1], ref)
        prefix = [None] * (3 - len(parts)) + parts[:-1]
        return Reference(raw=ref, kind="wandb", name=name, alias=alias, entity=prefix[0],
                         project=prefix[1])
    if _looks_like_path(text):
        return Reference(raw=ref, kind="path", path=Path(text).expanduser())
    name, alias = _split_alias(text, ref)
    return Reference(raw=ref, kind="registry", name=name, alias=alias)
