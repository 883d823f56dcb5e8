"""Fetch one file over HTTP(S): mirrors in turn, retries, timeouts, progress, sha256, atomic rename.

The bytes go to a hidden ``.<name>.<random>.part`` file next to the destination, are hashed while
they arrive, and the file is renamed onto the destination only when the sha256 matches. Whatever
goes wrong (a mirror that answers 404, a dropped connection, a short transfer, a wrong checksum,
Ctrl-C) the ``.part`` file is deleted, so a destination that exists is always complete and
verified. Library code never prints: pass ``progress`` to see the transfer
(:func:`text_progress` draws a bar on a stream you choose).
"""

from __future__ import annotations

import hashlib
import http.client
import logging
import os
import re
import socket
import tempfile
import time
import urllib.error
import urllib.request
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import BinaryIO, TextIO

__all__ = ["DownloadError", "ProgressCallback", "fetch", "sha256_of", "text_progress"]

logger = logging.getLogger(__name__)

ProgressCallback = Callable[[int, "int | None"], None]
"""Called as ``progress(bytes_received, total_bytes_or_None)`` after every chunk."""

USER_AGENT = "rnnflow-data/1"
_CHUNK = 1 << 16
_SHA256_RE = re.compile(r"[0-9a-f]{64}")


class DownloadError(OSError):
    """Every mirror failed. ``failures`` holds one ``"url: reason"`` line per failed attempt."""

    def __init__(self, message: str, failures: Sequence[str] = ()) -> None:
        super().__init__(message)
        self.failures = list(failures)


class _Transient(Exception):
    """A failure worth retrying on the same mirror (timeout, dropped or short transfer, 5xx)."""


class _Permanent(Exception):
    """A failure that retrying the same mirror will not fix (404, wrong checksum)."""


def sha256_of(path: str | os.PathLike[str]) -> str:
    """Hex sha256 of a file's bytes, read in chunks."""
    h = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            h.update(chunk)
    return h.hexdigest()


def fetch(
    urls: str | Sequence[str],
    dest: str | os.PathLike[str],
    *,
    sha256: str,
    size: int | None = None,
    timeout: float = 30.0,
    retries: int = 3,
    backoff: float = 1.0,
    progress: ProgressCallback | None = None,
) -> Path:
    """Download ``dest`` from the first mirror in ``urls`` that delivers bytes with this ``sha256``.

    Each mirror is tried up to ``retries`` times for transient failures (timeouts, connection
    errors, HTTP 5xx/408/429, a transfer shorter than its Content-Length), sleeping
    ``backoff * 2**k`` seconds between tries; an HTTP 4xx, an unknown host or a checksum mismatch
    moves on to the next mirror at once. ``timeout`` bounds every connect and every read, in
    seconds. ``size``, when given, stops a server that sends more bytes than expected. Returns
    ``dest``.

    Raises :class:`DownloadError` (an ``OSError``) naming every failed attempt; a mismatch reads
    ``sha256 mismatch: expected <hex>, got <hex>``. Nothing is left behind on failure.
    """
    if isinstance(urls, str):
        urls = [urls]
    urls = list(urls)
    if not urls:
        raise ValueError("fetch: urls must name at least one mirror, got none")
    if not isinstance(sha256, str) or not _SHA256_RE.fullmatch(sha256):
        raise ValueError(f"fetch: sha256 must be 64 lowercase hex digits, got {sha256!r}")
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
                _fetch_verified(url, dest, sha256, size, timeout, progress)
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
    sha256: str,
    size: int | None,
    timeout: float,
    progress: ProgressCallback | None,
) -> None:
    """One attempt: stream ``url`` into a .part file, verify, rename; classify any failure."""
    fd, tmp_name = tempfile.mkstemp(dir=dest.parent, prefix=f".{dest.name}.", suffix=".part")
    tmp = Path(tmp_name)
    try:
        with os.fdopen(fd, "wb") as out:
            actual = _stream(url, out, size, timeout, progress)
            out.flush()
            os.fsync(out.fileno())
        if actual != sha256:
            raise _Permanent(
                f"sha256 mismatch: expected {sha256}, got {actual} (download rejected)"
            )
        os.chmod(tmp, 0o644)  # mkstemp makes 0600 files
        os.replace(tmp, dest)  # atomic: readers see no file or the whole verified file
    finally:
        tmp.unlink(missing_ok=True)


def _stream(
    url: str, out: BinaryIO, size: int | None, timeout: float, progress: ProgressCallback | None
) -> str:
    """Copy the body of ``url`` into ``out``; return its sha256. Raises _Transient/_Permanent."""
    request = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    h = hashlib.sha256()
    received, total = 0, None
    try:
        with urllib.request.urlopen(request, timeout=timeout) as response:
            length = response.headers.get("Content-Length")
            total = int(length) if length is not None and length.strip().isdigit() else None
            if size is not None and total is not None and total != size:
                raise _Permanent(f"server announces {total} bytes, expected {size}")
            if progress is not None:
                progress(0, total)
            while chunk := response.read(_CHUNK):
                received += len(chunk)
                if size is not None and received > size:
                    raise _Permanent(f"server sent more than the expected {size} bytes")
                out.write(chunk)
                h.update(chunk)
                if progress is not None:
                    progress(received, total)
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
    return h.hexdigest()


def text_progress(stream: TextIO, label: str, *, width: int = 30) -> ProgressCallback:
    """A :data:`ProgressCallback` drawing ``label [=====>    ]  42% 11.1/26.4 MB`` on ``stream``.

    Redraws in place with ``\\r`` and ends the line when the transfer completes. The stream is
    chosen by the caller (the CLI passes ``sys.stderr``), so the library itself never prints.
    """
    last = [-1]

    def draw(done: int, total: int | None) -> None:
        if total:
            frac = min(done / total, 1.0)
            percent = int(frac * 100)
            if percent == last[0] and done != total:
                return
            last[0] = percent
            filled = int(frac * width)
            bar = "=" * filled + (">" if filled < width else "") + " " * (width - filled - 1)
            text = f"\r{label} [{bar[:width]}] {percent:3d}% {done / 1e6:.1f}/{total / 1e6:.1f} MB"
        else:
            text = f"\r{label} {done / 1e6:.1f} MB"
        stream.write(text)
        if total is not None and done >= total:
            stream.write("\n")
        stream.flush()

    return draw
