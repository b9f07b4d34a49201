"""Which videos a folder holds, who speaks in each, and which split each speaker goes to.

Speaker ids come from the folder layout (``--speaker-from``):

================  ===========================================================================
``parent``        the video's folder: ``SPEAKER/VIDEO.mp4`` (LRS3, most custom sets)
``grandparent``   two levels up: ``SPEAKER/SESSION/00001.mp4`` (VoxCeleb2's ``id/ytid/``)
``top``           the first folder under ``--videos``, however deep the video is
``prefix``        the file name up to the first ``--speaker-sep`` (``_``): flat folders such
                  as HDTF's ``WDA_BarackObama_000.mp4`` -> ``WDA`` (use ``regex:`` for more)
``regex:PATTERN`` a Python regex with a ``(?P<speaker>...)`` group, searched in the path
                  relative to ``--videos`` (``/`` separators)
================  ===========================================================================

Names are sanitised to ``[A-Za-z0-9-]`` (sample keys are ``{speaker}_{clip}`` and may not
contain dots). Which split a clip goes to (by speaker, video or clip block) is decided in
:mod:`datamodules.prep.splits` with :func:`assign_splits`.
"""

from __future__ import annotations

import hashlib
import os
import re
from dataclasses import dataclass
from pathlib import Path

VIDEO_EXTENSIONS = ("mp4", "mkv", "avi", "mov", "webm", "m4v", "mpg", "mpeg", "flv", "ts",
                    "wmv", "3gp")
SPEAKER_MODES = ("parent", "grandparent", "top", "prefix")
_UNSAFE = re.compile(r"[^A-Za-z0-9-]+")


def safe_name(text: str) -> str:
    """``text`` reduced to letters, digits and '-' (runs of anything else become one '-')."""
    return _UNSAFE.sub("-", text).strip("-") or "x"


@dataclass(frozen=True)
class VideoTask:
    """One input video: where it is, whose it is, and its sanitised name within the
    speaker (``{speaker}_{name}`` is unique in the corpus and names its staging files)."""

    relpath: str
    path: str
    speaker: str
    name: str
    size: int
    mtime_ns: int

    @property
    def stem(self) -> str:
        return f"{self.speaker}_{self.name}"


def check_speaker_mode(mode: str) -> str:
    """``mode`` when valid; ValueError naming it otherwise."""
    if mode in SPEAKER_MODES:
        return mode
    if mode.startswith("regex:"):
        try:
            pattern = re.compile(mode[len("regex:"):])
        except re.error as exc:
            raise ValueError(f"--speaker-from {mode!r}: invalid regex ({exc})") from exc
        if "speaker" not in pattern.groupindex:
            raise ValueError(f"--speaker-from {mode!r}: the regex needs a (?P<speaker>...) group")
        return mode
    raise ValueError(f"--speaker-from {mode!r}: expected one of {SPEAKER_MODES} or "
                     f"'regex:PATTERN'")


def speaker_of(relpath: str, mode: str, sep: str = "_") -> str:
    """The raw speaker id of a video at ``relpath`` (relative, '/'-separated)."""
    parts = relpath.split("/")
    if mode == "parent":
        if len(parts) < 2:
            raise ValueError(f"{relpath}: --speaker-from parent needs SPEAKER/VIDEO layout, "
                             f"but the video lies directly in --videos")
        return parts[-2]
    if mode == "grandparent":
        if len(parts) < 3:
            raise ValueError(f"{relpath}: --speaker-from grandparent needs SPEAKER/X/VIDEO")
        return parts[-3]
    if mode == "top":
        if len(parts) < 2:
            raise ValueError(f"{relpath}: --speaker-from top needs the video inside a folder")
        return parts[0]
    if mode == "prefix":
        stem = Path(parts[-1]).stem
        if sep not in stem:
            raise ValueError(f"{relpath}: --speaker-from prefix: no {sep!r} in the file name")
        return stem.split(sep, 1)[0]
    match = re.search(mode[len("regex:"):], relpath)
    if not match or not match.group("speaker"):
        raise ValueError(f"{relpath}: --speaker-from {mode!r} does not match")
    return match.group("speaker")


def list_videos(root: str | os.PathLike, mode: str = "parent", sep: str = "_",
                extensions: tuple[str, ...] = VIDEO_EXTENSIONS) -> list[VideoTask]:
    """Every file under ``root`` with a video extension (case-insensitive, hidden files
    skipped), sorted by path. Videos of a speaker whose sanitised names coincide get a short
    hash of their path appended. Raises ValueError when ``root`` is not a folder or a
    speaker cannot be derived (naming the file)."""
    root = Path(root)
    if not root.is_dir():
        raise ValueError(f"--videos {str(root)!r} is not a folder")
    check_speaker_mode(mode)
    exts = {e.lower().lstrip(".") for e in extensions}
    files = sorted(p for p in root.rglob("*") if p.is_file()
                   and p.suffix.lower().lstrip(".") in exts
                   and not any(part.startswith(".") for part in p.relative_to(root).parts))
    stems: dict[tuple[str, str], list[Path]] = {}
    for path in files:
        rel = path.relative_to(root).as_posix()
        speaker = safe_name(speaker_of(rel, mode, sep))
        parts = rel.rsplit(".", 1)[0].split("/")
        # what tells a speaker's videos apart: VoxCeleb's 00001 repeats in every session
        within = parts[-2:] if mode == "grandparent" else parts[1:] if mode == "top" else parts[-1:]
        stems.setdefault((speaker, safe_name("-".join(within))), []).append(path)
    tasks = []
    for (speaker, name), paths in stems.items():
        for path in paths:
            # same sanitised name (other extension, other subfolder): a short path hash
            rel = path.relative_to(root).as_posix()
            unique = name if len(paths) == 1 else \
                f"{name}-{hashlib.sha1(rel.encode()).hexdigest()[:8]}"
            stat = path.stat()
            tasks.append(VideoTask(path.relative_to(root).as_posix(), str(path), speaker, unique,
                                   stat.st_size, stat.st_mtime_ns))
    seen: dict[str, str] = {}
    for task in tasks:
        if task.stem in seen:
            raise ValueError(f"videos {seen[task.stem]!r} and {task.relpath!r} both become clip "
                             f"name {task.stem!r} after sanitising; rename one")
        seen[task.stem] = task.relpath
    return sorted(tasks, key=lambda t: t.relpath)


def _rank(seed: int, speaker: str) -> str:
    return hashlib.sha256(f"{seed}\0{speaker}".encode()).hexdigest()


def assign_splits(speakers: list[str], fractions: tuple[float, float, float],
                  seed: int = 0) -> dict[str, str]:
    """speaker (or any unit: a video) -> ``train``/``val``/``test``, deterministic.

    Speakers are ordered by sha256(seed, speaker), a key that does not depend on the other
    speakers: the first ``round(test * n)`` go to test, the next ``round(val * n)`` to val, the
    rest to train. Adding a speaker moves at most the few speakers at the two boundaries.
    Small folders: a split with a positive fraction gets at least one speaker as long as
    train keeps one (val before test), so 2 speakers -> train + val, 3 -> one each,
    1 -> train only.
    """
    _train_f, val_f, test_f = fractions
    n = len(set(speakers))
    n_val, n_test = round(val_f * n), round(test_f * n)
    if val_f > 0 and n_val == 0 and n >= 2:
        n_val = 1
    if test_f > 0 and n_test == 0 and n - n_val >= 2:
        n_test = 1
    while n - n_val - n_test < 1 and (n_val or n_test):
        if n_test:
            n_test -= 1
        else:
            n_val -= 1
    ordered = sorted(set(speakers), key=lambda s: _rank(seed, s))
    out = {s: "test" for s in ordered[:n_test]}
    out.update({s: "val" for s in ordered[n_test:n_test + n_val]})
    out.update({s: "train" for s in ordered[n_test + n_val:]})
    return out


__all__ = ["SPEAKER_MODES", "VIDEO_EXTENSIONS", "VideoTask", "assign_splits",
           "check_speaker_mode", "list_videos", "safe_name", "speaker_of"]
