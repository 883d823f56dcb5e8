"""`rnnflow download`: through the real entry point, against a file server on 127.0.0.1."""

from __future__ import annotations

import dataclasses
import functools
import gzip
import hashlib
import io
import shutil
import socket
import sys
import threading
from collections.abc import Iterator
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import numpy as np
import pytest

from rnnflow.cli import main
from rnnflow.data.catalog import Checksum
from rnnflow.data.datasets import DATASETS, IdxFile

NAMES = (
    "train-images-idx3-ubyte",
    "train-labels-idx1-ubyte",
    "t10k-images-idx3-ubyte",
    "t10k-labels-idx1-ubyte",
)


class QuietHandler(SimpleHTTPRequestHandler):
    def log_message(self, format: str, *args: object) -> None:
        pass


@pytest.fixture(autouse=True)
def isolated(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    for var in ("RNNFLOW_DATA_DIR", "http_proxy", "HTTP_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)
    monkeypatch.setattr("rnnflow.data.download.time.sleep", lambda s: None)


@pytest.fixture
def mirror(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Serve a tiny fake MNIST (as gz files) on 127.0.0.1 and point DATASETS['mnist'] at it."""
    root = tmp_path / "mirror"
    root.mkdir()
    rng = np.random.default_rng(0)
    files = []
    for name in NAMES:
        n = 20 if name.startswith("train") else 10
        shape = (n, 28, 28) if "images" in name else (n,)
        array = rng.integers(0, 10, shape, dtype=np.uint8)
        raw = bytes([0, 0, 8, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in shape)
        raw += array.tobytes()
        gz = gzip.compress(raw, mtime=0)
        (root / f"{name}.gz").write_bytes(gz)
        sha = hashlib.sha256
        files.append(
            IdxFile(
                name,
                Checksum("sha256", sha(gz).hexdigest()),
                len(gz),
                len(raw),
                sha(raw).hexdigest(),
            )
        )
    handler = functools.partial(QuietHandler, directory=str(root))
    httpd = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.02})
    thread.start()
    url = f"http://127.0.0.1:{httpd.server_address[1]}/"
    spec = dataclasses.replace(
        DATASETS["mnist"],
        mirrors=(url,),
        train_images=files[0],
        train_labels=files[1],
        test_images=files[2],
        test_labels=files[3],
        system_dirs=(),
    )
    monkeypatch.setitem(DATASETS, "mnist", spec)
    try:
        yield url
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join()


class Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


def test_download_into_data_dir_then_already_present(
    mirror: str, tmp_path: Path, capsys, monkeypatch
) -> None:
    terminal = Terminal()
    with monkeypatch.context() as patch:
        patch.setattr(sys, "stderr", terminal)
        assert main(["download", "mnist", "--data-dir", str(tmp_path / "d")]) == 0
    out = capsys.readouterr().out
    target = tmp_path / "d" / "mnist"
    assert out == f"mnist: 4 files verified in {target}\n"
    bars = terminal.getvalue()  # tqdm's bars on a terminal, one finished line per file
    for name in NAMES:
        assert f"  {name}.gz: 100%|" in bars
    assert bars.count("\n") == 4
    shutil.rmtree(target)
    assert main(["download", "mnist", "--data-dir", str(tmp_path / "d")]) == 0
    assert capsys.readouterr().err == ""  # off a terminal (a log, CI): no bar
    assert sorted(p.name for p in target.iterdir()) == sorted(n + ".gz" for n in NAMES)
    assert main(["download", "mnist", "--data-dir", str(tmp_path / "d"), "--quiet"]) == 0
    out, err = capsys.readouterr()
    assert out == f"mnist: 4 files verified in {target}\n" and err == ""


def test_default_target_is_the_user_cache(mirror: str, tmp_path: Path, capsys) -> None:
    assert main(["download", "mnist", "--quiet"]) == 0
    assert capsys.readouterr().out.endswith(f"{tmp_path / 'cache' / 'rnnflow' / 'mnist'}\n")


def test_offline_exits_1_with_the_reasons_and_the_fix(
    mirror: str, tmp_path: Path, monkeypatch, capsys
) -> None:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{s.getsockname()[1]}/"
    monkeypatch.setitem(DATASETS, "mnist", dataclasses.replace(DATASETS["mnist"], mirrors=(dead,)))
    code = main(["download", "mnist", "--data-dir", str(tmp_path / "d"), "--retries", "1"])
    assert code == 1
    err = capsys.readouterr().err
    assert "rnnflow download: fetch: could not download train-images-idx3-ubyte.gz; every" in err
    assert "(try 1/1): cannot connect" in err
    target = tmp_path / "d" / "mnist"
    assert f"to fix it: connect to the internet and retry, or copy the files into {target}" in err
    assert not (tmp_path / "d" / "mnist").exists()


def test_found_locally_needs_no_network(mirror: str, tmp_path: Path, monkeypatch, capsys) -> None:
    """As with Debian's dataset-fashion-mnist: files in a system folder, no network at all."""
    assert main(["download", "mnist", "--data-dir", str(tmp_path / "d"), "--quiet"]) == 0
    system = tmp_path / "d" / "mnist"
    monkeypatch.setitem(
        DATASETS,
        "mnist",
        dataclasses.replace(
            DATASETS["mnist"], mirrors=("http://127.0.0.1:9/",), system_dirs=(str(system),)
        ),
    )
    capsys.readouterr()
    assert main(["download", "mnist"]) == 0
    assert capsys.readouterr().out == (
        f"mnist: 4 files verified in {system} (found locally, nothing downloaded)\n"
    )
    assert not (tmp_path / "cache" / "rnnflow" / "mnist").exists()


def test_a_corrupted_file_in_the_target_is_reported(mirror: str, tmp_path: Path, capsys) -> None:
    target = tmp_path / "d" / "mnist"
    target.mkdir(parents=True)
    (target / "t10k-labels-idx1-ubyte").write_bytes(bytes([0, 0, 8, 1, 0, 0, 0, 1, 3]))
    assert main(["download", "mnist", "--data-dir", str(tmp_path / "d"), "--quiet"]) == 1
    assert "t10k-labels-idx1-ubyte: sha256 of the uncompressed data is" in capsys.readouterr().err


def test_unknown_dataset_is_a_usage_error(capsys) -> None:
    with pytest.raises(SystemExit) as info:
        main(["download", "cifar10"])
    assert info.value.code == 2
    assert "invalid choice: 'cifar10'" in capsys.readouterr().err


def test_help_lists_the_datasets(capsys) -> None:
    with pytest.raises(SystemExit):
        main(["download", "--help"])
    # one spelling, train's (the aliases are accepted, not listed: tests/cli/)
    assert (
        "{mnist,fashion-mnist,kmnist,emnist-letters,emnist-balanced}"
        in capsys.readouterr().out.replace("\n", "").replace(" ", "")
    )
