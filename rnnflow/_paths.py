"""The one wording of "this path is not what was asked for", for every file and folder argument
(a library function's or a CLI flag's): a missing path, a folder given for a file and a file
given for a folder each say which."""

from __future__ import annotations

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
