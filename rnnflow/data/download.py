"""Fetch one file over HTTP(S): mirrors in turn, retries, timeouts, progress, checksum, rename.

The bytes go to a hidden ``.<name>.<random>.part`` file next to the destination, are hashed while
they arrive, and the file is renamed onto the destination only when the checksum (sha256, or md5
where that is all a publisher gives) matches. Whatever goes wrong (a mirror that answers 404, a
dropped connection, a short transfer, a wrong checksum, Ctrl-C) the ``.part`` file is deleted, so a
destination that exists is always complete and verified. :func:`save_verified` does the same for
bytes read from any stream (a member of a zip). Library code never prints: pass ``progress`` to
see the transfer (:func:`tqdm_progress` draws a tqdm bar on a stream you choose).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any, BinaryIO, TextIO

from rnnflow.data.catalog import check_digest

__all__ = [
    "ChecksumMismatchError",
    "DownloadError",
    "ProgressCallback",
    "TqdmProgress",
    "fetch",
    "file_digest",
    "save_verified",
    "sha256_of",
    "tqdm_progress",
]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(bytes_received, total_bytes_or_None)`` after every chunk."""

USER_AGENT = "rnnflow-data/1"
_CHUNK = 1 << 16


class DownloadError(OSError):
    """Every mirror failed. ``failures`` holds one ``"url: reason"`` line per failed attempt."""

    def __init__(self, message: str, failures: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


class ChecksumMismatchError(ValueError):
    """The bytes written do not have the expected digest (nothing was kept)."""


class _Transient(Exception):
    """A failure worth retrying on the same mirror (timeout, dropped or short transfer, 5xx)."""


class _Permanent(Exception):
    """A failure that retrying the same mirror will not fix (404, wrong checksum)."""


def _hasher(algorithm: str) -> Any:
    if algorithm == "md5":
        return hashlib.md5(usedforsecurity=False)  # a published md5 is an integrity check here
    return hashlib.sha256()


def file_digest(path: str | os.PathLike[str], algorithm: str = "sha256") -> str:
    """Hex digest ("sha256" or "md5") of a file's bytes, read in chunks."""
    h = _hasher(algorithm)
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    return file_digest(path, "sha256")


def _expected(where: str, sha256: str | None, md5: str | None) -> tuple[str, str]:
    """(algorithm, hexdigest) from exactly one of ``sha256=`` / ``md5=``; checks the digits."""
    given = [(a, h) for a, h in (("sha256", sha256), ("md5", md5)) if h is not None]
    if len(given) != 1:
        raise ValueError(f"{where}: give exactly one of sha256= or md5=, got {len(given)}")
    algorithm, hexdigest = given[0]
    check_digest(where, algorithm, hexdigest)
    return algorithm, hexdigest


def _write_verified(
    dest: Path, algorithm: str, expected: str, fill: Callable[[BinaryIO, Any], None]
) -> None:
    """``fill(out, hasher)`` writes and hashes into a .part file beside ``dest``; it becomes
    ``dest`` only when the digest is ``expected`` (else :class:`ChecksumMismatchError`)."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        h = _hasher(algorithm)
        with os.fdopen(fd, "wb") as out:
            fill(out, h)
            out.flush()
            os.fsync(out.fileno())
        actual = h.hexdigest()
        if actual != expected:
            raise ChecksumMismatchError(
                f"{algorithm} mismatch: expected {expected}, got {actual} (download rejected)"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, dest)  # atomic: readers see no file or the whole verified file
    finally:
        tmp.unlink(missing_ok=True)


def _copy(
    read: Callable[[int], bytes],
    out: BinaryIO,
    h: Any,
    size: int | None,
    too_long: Callable[[], Exception],
    step: Callable[[int], None] | None = None,
) -> None:
    """Copy ``read``'s chunks into ``out`` and the hasher ``h``; past ``size`` bytes raise
    ``too_long()``; ``step(bytes so far)`` after each chunk."""
    done = 0
    while chunk := read(_CHUNK):
        done += len(chunk)
        if size is not None and done > size:
            raise too_long()
        out.write(chunk)
        h.update(chunk)
        if step is not None:
            step(done)


def save_verified(
    source: BinaryIO,
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
) -> Path:
    """Copy the stream ``source`` to ``dest`` if its bytes have this ``sha256`` (or ``md5``).

    Written to a ``.part`` file and renamed atomically, as :func:`fetch` does; ``size``, when
    given, stops a stream longer than that. Raises :class:`ChecksumMismatchError` (a
    ``ValueError``: ``<algorithm> mismatch: expected <hex>, got <hex>``) or ``ValueError`` for a
    stream longer than ``size``; nothing is left behind. Returns ``dest``.
    """
    algorithm, expected = _expected("save_verified", sha256, md5)
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    def too_long() -> Exception:
        return ValueError(f"save_verified: {dest.name}: more than the expected {size} bytes")

    _write_verified(
        dest, algorithm, expected, lambda out, h: _copy(source.read, out, h, size, too_long)
    )
    return dest


def fetch(
    urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str | None = None,
    md5: str | None = None,
    size: int | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: ProgressCallback | None = None,
) -> Path:
    """Download ``dest`` from the first mirror in ``urls`` that delivers bytes with this ``sha256``
    (or, where the publisher gives only that, this ``md5``: exactly one of the two).

    Each mirror is tried up to ``retries`` times for transient failures (timeouts, connection
    errors, HTTP 5xx/408/429, a transfer shorter than its Content-Length), sleeping
    ``backoff * 2**k`` seconds between tries; an HTTP 4xx, an unknown host or a checksum mismatch
    moves on to the next mirror at once. ``timeout`` bounds every connect and every read, in
    seconds. ``size``, when given, stops a server that sends more bytes than expected. Returns
    ``dest``.

    Raises :class:`DownloadError` (an ``OSError``) naming every failed attempt; a mismatch reads
    ``sha256 mismatch: expected <hex>, got <hex>`` (or ``md5 mismatch``). Nothing is left behind
    on failure.
    """
    if isinstance(urls, str):
        urls = [urls]
    urls = list(urls)
    if not urls:
        raise ValueError("fetch: urls must name at least one mirror, got none")
    algorithm, expected = _expected("fetch", sha256, md5)
    if retries < 1:
        raise ValueError(f"fetch: retries must be >= 1, got {retries}")
    if timeout <= 0:
        raise ValueError(f"fetch: timeout must be > 0 seconds, got {timeout}")
    dest = Path(dest)
    dest.parent.mkdir(parents=True, exist_ok=True)

    failures: list[str] = []
    for url in urls:
        for attempt in range(1, retries + 1):
            try:
                _fetch_verified(url, dest, algorithm, expected, size, timeout, progress)
                logger.info("downloaded %s -> %s", url, dest)
                return dest
            except _Permanent as exc:
                failures.append(f"{url}: {exc}")
                logger.info("download failed, trying the next mirror: %s: %s", url, exc)
                break
            except _Transient as exc:
                failures.append(f"{url} (try {attempt}/{retries}): {exc}")
                logger.info("download try %d/%d failed: %s: %s", attempt, retries, url, exc)
                if attempt < retries and backoff > 0:
                    time.sleep(backoff * 2 ** (attempt - 1))
    lines = "\n".join(f"  - {f}" for f in failures)
    raise DownloadError(
        f"fetch: could not download {dest.name}; every mirror failed:\n{lines}", failures
    )


def _fetch_verified(
    url: str,
    dest: Path,
    algorithm: str,
    expected: str,
    size: int | None,
    timeout: float,
    progress: ProgressCallback | None,
) -> None:
    """One attempt: stream ``url`` into a .part file, verify, rename; classify any failure."""
    try:
        _write_verified(
            dest, algorithm, expected, lambda out, h: _stream(url, out, h, size, timeout, progress)
        )
    except ChecksumMismatchError as exc:
        raise _Permanent(str(exc)) from exc


def _stream(
    url: str,
    out: BinaryIO,
    h: Any,
    size: int | None,
    timeout: float,
    progress: ProgressCallback | None,
) -> None:
    """Copy the body of ``url`` into ``out``, hashed into ``h``. Raises _Transient/_Permanent."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    received, total = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None and length.strip().isdigit() else None
            if size is not None and total is not None and total != size:
                raise _Permanent(f"server announces {total} bytes, expected {size}")
            if progress is not None:
                progress(0, total)

            def too_long() -> Exception:
                return _Permanent(f"server sent more than the expected {size} bytes")

            def step(done: int) -> None:
                nonlocal received
                received = done
                if progress is not None:
                    progress(done, total)

            _copy(response.read, out, h, size, too_long, step)
            # http.client returns b"" (no error) when the peer closes early: check it here.
            if total is not None and received != total:
                raise _Transient(f"transfer interrupted: received {received} of {total} bytes")
    except http.client.IncompleteRead as exc:  # the same, where http.client does raise
        raise _Transient(f"transfer interrupted: received {received} of {total} bytes") from exc
    except urllib.error.HTTPError as exc:
        exc.close()  # an HTTPError holds the open response
        if exc.code >= 500 or exc.code in (408, 429):
            raise _Transient(f"HTTP {exc.code} {exc.reason}") from exc
        raise _Permanent(f"HTTP {exc.code} {exc.reason}") from exc
    except urllib.error.URLError as exc:
        if isinstance(exc.reason, socket.gaierror):  # offline or unknown host: retrying won't help
            raise _Permanent(f"cannot resolve host: {exc.reason}") from exc
        raise _Transient(f"cannot connect: {exc.reason}") from exc
    except TimeoutError as exc:
        raise _Transient(f"timed out after {timeout:g} s") from exc
    except (ConnectionError, http.client.HTTPException) as exc:
        raise _Transient(f"connection failed: {type(exc).__name__}: {exc}") from exc


class TqdmProgress:
    """A :data:`ProgressCallback` drawing a tqdm bar (``label  42%|####   | 11.1M/26.4M ...``).

    A new transfer (``done`` back at 0, as when a mirror is retried) starts a new bar; the bar
    closes when ``done`` reaches ``total``; :meth:`close` ends one that broke off. ``disable``
    as tqdm's: ``None`` draws only when ``stream`` is a terminal, ``True`` never, ``False``
    always.
    """

    def __init__(self, stream: TextIO, label: str, *, disable: bool | None = None) -> None:
        self.stream = stream
        self.label = label
        self.disable = disable
        self._bar: Any = None

    def __call__(self, done: int, total: int | None) -> None:
        if self._bar is not None and done < self._bar.n:
            self.close()  # a retry starts the transfer again
        if self._bar is None:
            from tqdm import tqdm  # a dependency; imported when a download starts

            self._bar = tqdm(
                total=total,
                desc=self.label,
                unit="B",
                unit_scale=True,
                unit_divisor=1024,
                file=self.stream,
                disable=self.disable,
                leave=True,
            )
        self._bar.update(done - self._bar.n)
        if total is not None and done >= total:
            self.close()

    def close(self) -> None:
        """End the bar's line (a finished bar closes itself)."""
        if self._bar is not None:
            self._bar.close()
            self._bar = None


def tqdm_progress(stream: TextIO, label: str, *, disable: bool | None = None) -> TqdmProgress:
    """A :class:`TqdmProgress` for one file: a tqdm bar on ``stream``, drawn when it is a
    terminal (``disable=None``). The caller chooses the stream (the CLI passes ``sys.stderr``),
    so the library itself never prints."""
    return TqdmProgress(stream, label, disable=disable)
