"""Fixtures for the data tests: an isolated environment, a local HTTP server, a tiny fake dataset.

No test here touches the internet: mirrors point at 127.0.0.1.
"""

from __future__ import annotations

import dataclasses
import gzip
import hashlib
import socket
import threading
from collections import Counter
from collections.abc import Iterator
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from rnnflow.data.catalog import Checksum
from rnnflow.data.datasets import DatasetSpec, IdxFile


@pytest.fixture(autouse=True)
def isolated_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Empty user cache under tmp_path, no $RNNFLOW_DATA_DIR, no proxies (127.0.0.1 direct)."""
    cache = tmp_path / "xdg-cache"
    monkeypatch.setenv("XDG_CACHE_HOME", str(cache))
    for var in (
        "RNNFLOW_DATA_DIR",
        "http_proxy",
        "https_proxy",
        "HTTP_PROXY",
        "HTTPS_PROXY",
        "all_proxy",
        "ALL_PROXY",
    ):
        monkeypatch.delenv(var, raising=False)
    return cache


# ------------------------------------------------------------------------------------------------
# Local HTTP server


@dataclass
class Reply:
    """One canned HTTP reply. ``send`` < len(body) announces len(body) but sends only ``send``
    bytes and closes (an interrupted transfer); ``delay`` sleeps before answering."""

    body: bytes = b""
    status: int = 200
    send: int | None = None
    delay: float = 0.0


class LocalServer:
    """routes: path -> Reply, or a list of Replies served in turn (the last one repeats)."""

    def __init__(self) -> None:
        self.routes: dict[str, Reply | list[Reply]] = {}
        self.hits: Counter[str] = Counter()
        self._lock = threading.Lock()
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def do_GET(self) -> None:
                reply = outer._next(self.path)
                try:
                    if reply.delay:
                        threading.Event().wait(reply.delay)
                    self.send_response(reply.status)
                    self.send_header("Content-Length", str(len(reply.body)))
                    self.end_headers()
                    body = reply.body if reply.send is None else reply.body[: reply.send]
                    self.wfile.write(body)
                    self.wfile.flush()
                    self.close_connection = True
                except (BrokenPipeError, ConnectionResetError):
                    pass  # the client gave up (timeout test)

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.httpd = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = False  # server_close() joins handler threads
        self.port = self.httpd.server_address[1]
        self.thread = threading.Thread(
            target=self.httpd.serve_forever, kwargs={"poll_interval": 0.02}, daemon=True
        )

    def _next(self, path: str) -> Reply:
        with self._lock:
            self.hits[path] += 1
            route = self.routes.get(path)
            if route is None:
                return Reply(b"not found", status=404)
            if isinstance(route, list):
                return route.pop(0) if len(route) > 1 else route[0]
            return route

    reply = Reply  # tests build replies as server.reply(body, status=..., send=..., delay=...)

    def route(self, path: str, *replies: Reply) -> str:
        """Serve ``replies`` in turn at ``path`` (the last one repeats); returns the URL."""
        self.routes[path] = list(replies)
        return self.url(path)

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def close(self) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join()


@pytest.fixture
def server() -> Iterator[LocalServer]:
    srv = LocalServer()
    srv.thread.start()
    try:
        yield srv
    finally:
        srv.close()


@pytest.fixture
def dead_url() -> str:
    """A URL on 127.0.0.1 where nothing listens (connection refused)."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    return f"http://127.0.0.1:{port}/"


# ------------------------------------------------------------------------------------------------
# A tiny fake four-file dataset


@dataclass
class FakeDataset:
    """Arrays, their .gz bytes, and ``spec(mirrors)`` giving a DatasetSpec that describes them."""

    arrays: dict[str, np.ndarray]  # canonical file name -> array
    gz: dict[str, bytes]  # canonical file name -> gzip bytes as a mirror serves them
    raw: dict[str, bytes]  # canonical file name -> uncompressed IDX bytes
    name: str = "mnist"

    def spec(self, mirrors: tuple[str, ...] = (), **changes: object) -> DatasetSpec:
        def idx_file(name: str) -> IdxFile:
            return IdxFile(
                name,
                Checksum("sha256", hashlib.sha256(self.gz[name]).hexdigest()),
                len(self.gz[name]),
                len(self.raw[name]),
                hashlib.sha256(self.raw[name]).hexdigest(),
            )

        spec = DatasetSpec(
            name=self.name,
            mirrors=mirrors,
            train_images=idx_file("train-images-idx3-ubyte"),
            train_labels=idx_file("train-labels-idx1-ubyte"),
            test_images=idx_file("t10k-images-idx3-ubyte"),
            test_labels=idx_file("t10k-labels-idx1-ubyte"),
            class_names=tuple(str(d) for d in range(10)),
            system_dirs=(),
        )
        return dataclasses.replace(spec, **changes)

    def write(self, folder: Path, *, compressed: bool = True) -> Path:
        folder.mkdir(parents=True, exist_ok=True)
        for name, data in (self.gz if compressed else self.raw).items():
            (folder / (name + ".gz" if compressed else name)).write_bytes(data)
        return folder

    def serve(self, server: LocalServer, prefix: str = "/good/") -> str:
        for name, data in self.gz.items():
            server.routes[f"{prefix}{name}.gz"] = Reply(data)
        return server.url(prefix)


def make_fake_dataset(n_train: int = 30, n_test: int = 12, seed: int = 0) -> FakeDataset:
    rng = np.random.default_rng(seed)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train, dtype=np.uint8),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test, dtype=np.uint8),
    }
    raw, gz = {}, {}
    for name, array in arrays.items():
        header = bytes([0, 0, 0x08, array.ndim]) + b"".join(
            d.to_bytes(4, "big") for d in array.shape
        )
        raw[name] = header + array.tobytes()
        gz[name] = gzip.compress(raw[name], mtime=0)
    return FakeDataset(arrays, gz, raw)


@pytest.fixture
def fake() -> FakeDataset:
    return make_fake_dataset()


@pytest.fixture
def make_fake():
    """The factory itself: make_fake(n_train=30, n_test=12, seed=0) -> FakeDataset."""
    return make_fake_dataset
