"""fetch() against a real HTTP server on 127.0.0.1: mirrors, retries, checksums, short transfers."""

from __future__ import annotations

import hashlib
import io
from pathlib import Path

import pytest

from rnnflow.data.download import (
    ChecksumMismatchError,
    DownloadError,
    fetch,
    file_digest,
    save_verified,
    sha256_of,
    tqdm_progress,
)

PAYLOAD = bytes(range(256)) * 1000  # 256 kB: several chunks
GOOD = hashlib.sha256(PAYLOAD).hexdigest()
GOOD_MD5 = hashlib.md5(PAYLOAD).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir())


def test_success_writes_the_verified_file_and_reports_progress(server, tmp_path: Path) -> None:
    url = server.route("/f.gz", server.reply(PAYLOAD))
    calls: list[tuple[int, int | None]] = []
    dest = fetch(
        url, tmp_path / "sub" / "f.gz", sha256=GOOD, progress=lambda d, t: calls.append((d, t))
    )
    assert dest == tmp_path / "sub" / "f.gz"
    assert dest.read_bytes() == PAYLOAD
    assert leftovers(dest.parent) == ["f.gz"]  # no .part file
    assert calls[0] == (0, len(PAYLOAD)) and calls[-1] == (len(PAYLOAD), len(PAYLOAD))
    assert [d for d, _ in calls] == sorted(d for d, _ in calls)
    assert sha256_of(dest) == GOOD


def test_a_failing_mirror_is_skipped_for_the_next(server, tmp_path: Path) -> None:
    bad = server.route("/bad/f.gz", server.reply(b"gone", status=404))
    good = server.route("/good/f.gz", server.reply(PAYLOAD))
    fetch([bad, good], tmp_path / "f.gz", sha256=GOOD, retries=3, backoff=0)
    assert (tmp_path / "f.gz").read_bytes() == PAYLOAD
    assert server.hits["/bad/f.gz"] == 1  # a 404 is not retried
    assert server.hits["/good/f.gz"] == 1


def test_a_server_error_is_retried_on_the_same_mirror(server, tmp_path: Path) -> None:
    url = server.route(
        "/f.gz", server.reply(status=503), server.reply(status=500), server.reply(PAYLOAD)
    )
    fetch(url, tmp_path / "f.gz", sha256=GOOD, retries=3, backoff=0)
    assert server.hits["/f.gz"] == 3
    assert (tmp_path / "f.gz").read_bytes() == PAYLOAD


def test_a_corrupted_payload_is_rejected_and_nothing_is_left(server, tmp_path: Path) -> None:
    corrupted = PAYLOAD[:-1] + b"\x00"
    url = server.route("/f.gz", server.reply(corrupted))
    bad = hashlib.sha256(corrupted).hexdigest()
    with pytest.raises(
        DownloadError, match=rf"f\.gz: sha256 mismatch: expected {GOOD}, got {bad}"
    ) as info:
        fetch(url, tmp_path / "f.gz", sha256=GOOD, retries=3, backoff=0)
    assert leftovers(tmp_path) == []
    assert server.hits["/f.gz"] == 1  # a wrong checksum is not retried on the same mirror
    assert len(info.value.failures) == 1


def test_a_corrupted_mirror_falls_back_to_a_good_one(server, tmp_path: Path) -> None:
    bad = server.route("/bad/f.gz", server.reply(b"x" * len(PAYLOAD)))
    good = server.route("/good/f.gz", server.reply(PAYLOAD))
    fetch([bad, good], tmp_path / "f.gz", sha256=GOOD, backoff=0)
    assert (tmp_path / "f.gz").read_bytes() == PAYLOAD


def test_an_interrupted_transfer_is_detected_and_cleaned_up(server, tmp_path: Path) -> None:
    """The server announces Content-Length 256000, sends 100000 bytes and closes."""
    url = server.route("/f.gz", server.reply(PAYLOAD, send=100_000))
    with pytest.raises(
        DownloadError,
        match=r"\(try 2/2\): transfer interrupted: received 100000 of 256000 bytes",
    ):
        fetch(url, tmp_path / "f.gz", sha256=GOOD, retries=2, backoff=0)
    assert server.hits["/f.gz"] == 2
    assert leftovers(tmp_path) == []


def test_an_interrupted_transfer_is_retried(server, tmp_path: Path) -> None:
    url = server.route("/f.gz", server.reply(PAYLOAD, send=1000), server.reply(PAYLOAD))
    fetch(url, tmp_path / "f.gz", sha256=GOOD, retries=2, backoff=0)
    assert (tmp_path / "f.gz").read_bytes() == PAYLOAD


def test_a_slow_server_times_out(server, tmp_path: Path) -> None:
    url = server.route("/f.gz", server.reply(PAYLOAD, delay=0.6))
    with pytest.raises(DownloadError, match=r"timed out"):
        fetch(url, tmp_path / "f.gz", sha256=GOOD, timeout=0.1, retries=1)
    assert leftovers(tmp_path) == []


def test_nothing_listening_is_a_connection_error(dead_url: str, tmp_path: Path) -> None:
    with pytest.raises(
        DownloadError,
        match=r"every mirror failed:\n  - http://127\.0\.0\.1:\d+/f\.gz "
        r"\(try 1/1\): cannot connect",
    ):
        fetch(dead_url + "f.gz", tmp_path / "f.gz", sha256=GOOD, retries=1)


def test_more_bytes_than_expected_are_refused(server, tmp_path: Path) -> None:
    url = server.route("/f.gz", server.reply(PAYLOAD))
    with pytest.raises(DownloadError, match=r"server announces 256000 bytes, expected 1000"):
        fetch(url, tmp_path / "f.gz", sha256=GOOD, size=1000)
    assert leftovers(tmp_path) == []


def test_a_failed_download_keeps_an_existing_file(server, tmp_path: Path) -> None:
    (tmp_path / "f.gz").write_bytes(b"old")
    url = server.route("/f.gz", server.reply(b"wrong"))
    with pytest.raises(DownloadError, match="sha256 mismatch"):
        fetch(url, tmp_path / "f.gz", sha256=GOOD)
    assert (tmp_path / "f.gz").read_bytes() == b"old"


def test_bad_arguments_are_rejected(tmp_path: Path) -> None:
    with pytest.raises(
        ValueError, match=r"fetch: sha256 must be 64 lowercase hex digits, got 'abc'"
    ):
        fetch("http://127.0.0.1/", tmp_path / "f", sha256="abc")
    with pytest.raises(ValueError, match=r"fetch: md5 must be 32 lowercase hex digits, got 'A'"):
        fetch("http://127.0.0.1/", tmp_path / "f", md5="A")
    with pytest.raises(ValueError, match=r"fetch: give exactly one of sha256= or md5=, got 2"):
        fetch("http://127.0.0.1/", tmp_path / "f", sha256=GOOD, md5=GOOD_MD5)
    with pytest.raises(ValueError, match=r"fetch: give exactly one of sha256= or md5=, got 0"):
        fetch("http://127.0.0.1/", tmp_path / "f")
    with pytest.raises(ValueError, match=r"fetch: urls must name at least one mirror, got none"):
        fetch([], tmp_path / "f", sha256=GOOD)
    with pytest.raises(ValueError, match=r"fetch: retries must be >= 1, got 0"):
        fetch("http://127.0.0.1/", tmp_path / "f", sha256=GOOD, retries=0)
    assert leftovers(tmp_path) == []


def test_md5_where_that_is_all_a_publisher_gives(server, tmp_path: Path) -> None:
    url = server.route("/f.gz", server.reply(PAYLOAD))
    fetch(url, tmp_path / "f.gz", md5=GOOD_MD5)
    assert (tmp_path / "f.gz").read_bytes() == PAYLOAD
    assert file_digest(tmp_path / "f.gz", "md5") == GOOD_MD5 == hashlib.md5(PAYLOAD).hexdigest()
    wrong = "0" * 32
    with pytest.raises(
        DownloadError, match=rf"md5 mismatch: expected {wrong}, got {GOOD_MD5} \(download rejected"
    ):
        fetch(url, tmp_path / "g.gz", md5=wrong)
    assert leftovers(tmp_path) == ["f.gz"]


def test_save_verified_keeps_only_a_stream_with_the_checksum(tmp_path: Path) -> None:
    dest = save_verified(io.BytesIO(PAYLOAD), tmp_path / "a" / "f.gz", md5=GOOD_MD5)
    assert dest.read_bytes() == PAYLOAD and leftovers(dest.parent) == ["f.gz"]
    with pytest.raises(
        ChecksumMismatchError, match=rf"sha256 mismatch: expected {'0' * 64}, got {GOOD}"
    ):
        save_verified(io.BytesIO(PAYLOAD), tmp_path / "b" / "f.gz", sha256="0" * 64)
    with pytest.raises(
        ValueError, match=r"save_verified: f\.gz: more than the expected 1000 bytes"
    ):
        save_verified(io.BytesIO(PAYLOAD), tmp_path / "b" / "f.gz", sha256=GOOD, size=1000)
    assert leftovers(tmp_path / "b") == []  # no .part file, no destination


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_tqdm_progress_draws_on_a_terminal_and_restarts_on_a_retry() -> None:
    out = Terminal()
    bar = tqdm_progress(out, "f.gz")
    for done in (0, 512, 1024):
        bar(done, 1024)
    text = out.getvalue()
    assert "f.gz: 100%" in text and "1.00k/1.00k " in text and text.endswith("\n")
    assert bar._bar is None  # a finished transfer closed its bar
    retried = Terminal()
    bar = tqdm_progress(retried, "g")
    bar(0, 2048)
    bar(1024, 2048)
    bar(0, 2048)  # the mirror is retried: a fresh bar, not a bar going backwards
    bar(2048, 2048)
    assert retried.getvalue().count("g: 100%") == 1 and retried.getvalue().count("\n") == 2


def test_tqdm_progress_is_quiet_off_a_terminal_and_bounded_without_a_total() -> None:
    log = io.StringIO()  # a log file, CI: no bar
    bar = tqdm_progress(log, "f.gz")
    bar(0, 1024)
    bar(1024, 1024)
    assert log.getvalue() == ""
    unknown = Terminal()
    bar = tqdm_progress(unknown, "g")
    bar(2_500_000, None)
    bar.close()
    assert "g: 2.38MB " in unknown.getvalue() and unknown.getvalue().endswith("\n")


def test_an_unknown_host_is_not_retried(server, tmp_path: Path, monkeypatch) -> None:
    """Offline (DNS fails): move on to the next mirror at once instead of retrying."""
    import socket

    real = socket.getaddrinfo

    def getaddrinfo(host, *args, **kwargs):
        if host == "mirror.invalid":
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        return real(host, *args, **kwargs)

    monkeypatch.setattr(socket, "getaddrinfo", getaddrinfo)
    good = server.route("/f.gz", server.reply(PAYLOAD))
    fetch(["http://mirror.invalid/f.gz", good], tmp_path / "f.gz", sha256=GOOD, retries=3)
    with pytest.raises(
        DownloadError, match=r"http://mirror\.invalid/f\.gz: cannot resolve host: .*Name or service"
    ) as info:
        fetch("http://mirror.invalid/f.gz", tmp_path / "g.gz", sha256=GOOD, retries=3)
    assert len(info.value.failures) == 1
