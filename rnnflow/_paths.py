"""The one wording of "this path is not what was asked for", for every file and folder argument
(a library function's or a CLI flag's): a missing path, a folder given for a file and a file
given for a folder each say which."""

from __future__ import annotations

import os
from pathlib import Path


def path_problem(path: str | Path, what: str = "file", *, folder: bool = False) -> str:
    """Why ``path`` is not a ``what`` (a file, or with ``folder=True`` a folder), for a message
    ``f"{path}: {path_problem(path)}"``: ``"no such file"``, ``"a folder, not a file"``, ``"a
    file, not a run folder"`` (``what="run folder", folder=True``), or ``"not a regular file"``
    (a device or pipe). Call it once the check (``is_file()``/``is_dir()``) has failed."""
    path = Path(path)
    if not path.exists():
        return f"no such {what}"
    if folder:
        return f"a file, not a {what}"
    if path.is_dir():
        return f"a folder, not a {what}"
    return f"not a regular {what}"


def output_problem(path: str | Path, *, folder: bool = False) -> tuple[str, int] | None:
    """Why ``path`` cannot be written as a file (or, with ``folder=True``, used as a folder to
    write into), with the CLI exit status, or None. Missing parent folders are no problem:
    every command creates them when it writes. A path of the wrong kind is a usage error
    (status 2); a folder that cannot be written, a failure (status 1)."""
    path = Path(path)
    if path.exists() and path.is_dir() != folder:
        return f"cannot write {path}: it is {'a file, not a folder' if folder else 'a folder'}", 2
    existing = next((p for p in path.parents if p.exists()), None)
    if existing is not None and not existing.is_dir():
        return f"cannot write {path}: {existing} is not a folder", 2
    target = path if folder and path.exists() else existing
    if target is not None and not os.access(target, os.W_OK):
        return f"cannot write {path}: folder {target} is not writable", 1
    return None
