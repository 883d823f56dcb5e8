"""IDX reader/writer: round trips, and one clear error per kind of malformed file."""

from __future__ import annotations

import gzip
import re
import subprocess
import sys
import tracemalloc
from pathlib import Path

import numpy as np
import pytest

from rnnflow.data.idx import IdxFormatError, parse_idx, read_idx, write_idx


def header(code: int, *shape: int) -> bytes:
    return bytes([0, 0, code, len(shape)]) + b"".join(d.to_bytes(4, "big") for d in shape)


@pytest.mark.parametrize("dtype", [np.uint8, np.int8, np.int16, np.int32, np.float32, np.float64])
@pytest.mark.parametrize("suffix", ["", ".gz"])
def test_round_trip_every_type(tmp_path: Path, dtype: type, suffix: str) -> None:
    rng = np.random.default_rng(0)
    array = (rng.standard_normal((3, 5, 7)) * 100).astype(dtype)
    path = tmp_path / f"a-idx3{suffix}"
    write_idx(path, array)
    back = read_idx(path)
    assert back.dtype == np.dtype(dtype)
    assert back.dtype.byteorder in ("=", "|")  # native, usable by torch.from_numpy
    assert back.flags.writeable
    np.testing.assert_array_equal(back, array)
    assert (path.read_bytes()[:2] == b"\x1f\x8b") == (suffix == ".gz")


def test_writer_produces_the_canonical_bytes(tmp_path: Path) -> None:
    labels = np.array([5, 0, 4], dtype=np.uint8)
    write_idx(tmp_path / "l", labels)
    assert (tmp_path / "l").read_bytes() == bytes([0, 0, 8, 1, 0, 0, 0, 3, 5, 0, 4])
    write_idx(tmp_path / "a.gz", labels)
    write_idx(tmp_path / "b.gz", labels)
    assert (tmp_path / "a.gz").read_bytes() == (tmp_path / "b.gz").read_bytes()  # mtime 0
    assert not [p for p in tmp_path.iterdir() if p.name.endswith(".tmp")]


def test_gzip_is_detected_by_content_not_name(tmp_path: Path) -> None:
    path = tmp_path / "labels-without-gz-suffix"
    path.write_bytes(gzip.compress(header(0x08, 2) + b"\x07\x09"))
    np.testing.assert_array_equal(read_idx(path), [7, 9])


def test_big_endian_payload_is_decoded(tmp_path: Path) -> None:
    path = tmp_path / "ints"
    path.write_bytes(
        header(0x0C, 2) + (1).to_bytes(4, "big") + (-2).to_bytes(4, "big", signed=True)
    )
    np.testing.assert_array_equal(read_idx(path), [1, -2])


def test_writer_rejects_unsupported_arrays(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match=r"write_idx: array dtype must be one of .*, got int64"):
        write_idx(tmp_path / "x", np.zeros(3, dtype=np.int64))
    with pytest.raises(ValueError, match=r"write_idx: array must have 1 to 255 dimensions, got 0"):
        write_idx(tmp_path / "x", np.uint8(3))


# ------------------------------------------------------------------------------------------------
# Malformed files: each error names the file and what is wrong.

MALFORMED = {
    "empty": (b"", r"empty file \((gzip holds )?0 bytes\)"),
    "short-header": (b"\x00\x00\x08", r"truncated header: need at least 4 bytes, got 3"),
    "bad-magic": (b"\x1a\x2b" + header(0x08, 1)[2:] + b"\x00", r"bad magic: .*got 1a 2b"),
    "png-not-idx": (b"\x89PNG\r\n\x1a\n", r"bad magic: expected the first two bytes to be 00 00"),
    "wrong-type": (header(0x0A, 1) + b"\x00", r"wrong type code 0x0A: expected one of 0x08, "),
    "zero-dims": (bytes([0, 0, 8, 0]), r"number of dimensions is 0, expected >= 1"),
    "dims-cut": (header(0x08, 2, 28, 28)[:9], r"truncated header: 3 dimensions need 16 bytes, "),
    "truncated": (
        header(0x08, 2, 28, 28) + bytes(1000),
        r"truncated: header declares 2x28x28 uint8 \(1584 bytes in all\), file has 1016 bytes",
    ),
    "trailing": (
        header(0x08, 3) + bytes(5),
        r"2 unexpected trailing bytes: header declares 3 uint8",
    ),
    "int32-cut": (header(0x0C, 2) + bytes(7), r"truncated: header declares 2 int32 \(16 bytes"),
    "ndim-ff": (  # a corrupt dimension count: its count is named, not a 255-part shape
        bytes([0, 0, 8, 255]) + header(0x08, 5, 28, 28)[4:] + bytes(4 * 252) + bytes(9),
        r"9 unexpected trailing bytes: header declares 255 dimensions \(5x28x28x0x0x0x0x0x\.\.\.\)"
        r" uint8 \(1024 bytes in all\), file has 1033$",
    ),
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
@pytest.mark.parametrize("compress", [False, True])
def test_malformed_file_gives_a_clear_error(tmp_path: Path, case: str, compress: bool) -> None:
    data, message = MALFORMED[case]
    path = tmp_path / f"{case}-idx"
    path.write_bytes(gzip.compress(data) if compress else data)
    with pytest.raises(IdxFormatError, match=rf"read_idx: {re.escape(str(path))}: {message}"):
        read_idx(path)


def test_truncated_gzip_is_reported(tmp_path: Path) -> None:
    path = tmp_path / "cut.gz"
    path.write_bytes(gzip.compress(header(0x08, 100) + bytes(100))[:-10])
    with pytest.raises(IdxFormatError, match=rf"{re.escape(str(path))}: truncated or corrupt gzip"):
        read_idx(path)


def test_missing_file_is_file_not_found(tmp_path: Path) -> None:
    with pytest.raises(FileNotFoundError, match="nope"):
        read_idx(tmp_path / "nope")


def test_parse_idx_names_its_source() -> None:
    with pytest.raises(IdxFormatError, match=r"read_idx: labels\.bin: truncated"):
        parse_idx(header(0x08, 4) + b"\x00", source="labels.bin")


def test_checks_survive_python_dash_O(tmp_path: Path) -> None:
    """Validation is explicit if/raise, not assert: `python -O` still rejects a bad file."""
    path = tmp_path / "bad"
    path.write_bytes(b"\x01\x02\x08\x01")
    code = f"from rnnflow.data.idx import read_idx; read_idx({str(path)!r})"
    done = subprocess.run(
        [sys.executable, "-O", "-c", code], capture_output=True, text=True, timeout=120
    )
    assert done.returncode != 0
    assert "IdxFormatError" in done.stderr and "bad magic" in done.stderr


# ------------------------------------------------------------------------------------------------
# The magic: each of its two bytes is checked on its own (an `or` turned `and` fails here).


@pytest.mark.parametrize("position", [0, 1])
@pytest.mark.parametrize("value", [0x01, 0x08, 0xFF])
def test_one_wrong_magic_byte_is_enough_to_refuse(position: int, value: int) -> None:
    data = bytearray(header(0x08, 2) + b"\x07\x09")
    data[position] = value
    expected = "00 " + f"{value:02x}" if position else f"{value:02x} 00"
    with pytest.raises(IdxFormatError, match=rf"bad magic: .*got {expected} \(not an IDX file\)"):
        parse_idx(bytes(data))


# ------------------------------------------------------------------------------------------------
# Sizes: nothing is read or decompressed beyond what the header declares.


def traced_peak(run) -> tuple[int, str]:
    """Peak bytes Python allocated while ``run()`` ran (it must raise IdxFormatError)."""
    tracemalloc.start()
    try:
        with pytest.raises(IdxFormatError) as info:
            run()
        return tracemalloc.get_traced_memory()[1], str(info.value)
    finally:
        tracemalloc.stop()


def test_a_gzip_bomb_is_refused_without_expanding_it(tmp_path: Path) -> None:
    path = tmp_path / "bomb-idx1-ubyte.gz"
    with gzip.open(path, "wb", compresslevel=9) as f:  # 10 labels, then 256 MB of zeros
        f.write(header(0x08, 10) + bytes(10))
        for _ in range(256):
            f.write(bytes(1 << 20))
    assert path.stat().st_size < 1 << 20
    peak, message = traced_peak(lambda: read_idx(path))
    assert re.search(
        r"more than 1048576 unexpected trailing bytes: header declares 10 uint8", message
    )
    assert peak < 8 << 20


def test_a_header_over_max_bytes_is_refused_before_decompressing(tmp_path: Path) -> None:
    path = tmp_path / "big-idx3-ubyte.gz"
    with gzip.open(path, "wb") as f:
        f.write(header(0x08, 4000, 28, 28) + bytes(4000 * 28 * 28))
    peak, message = traced_peak(lambda: read_idx(path, max_bytes=1000))
    assert re.search(
        r"header declares 4000x28x28 uint8 \(3136016 bytes in all\), more than the 1000 bytes "
        r"expected of this file",
        message,
    )
    assert peak < 1 << 20
    assert read_idx(path, max_bytes=3136016).shape == (4000, 28, 28)  # the limit is inclusive


def test_a_huge_sparse_file_is_refused_from_its_size(tmp_path: Path) -> None:
    path = tmp_path / "sparse-idx1-ubyte"
    path.write_bytes(header(0x08, 3) + bytes(3))
    with open(path, "r+b") as f:
        f.truncate(1 << 35)  # 32 GB that must never be read
    peak, message = traced_peak(lambda: read_idx(path))
    assert f"{(1 << 35) - 11} unexpected trailing bytes: header declares 3 uint8" in message
    assert peak < 1 << 20


def test_a_header_claiming_more_than_a_gzip_holds_allocates_only_what_is_there(
    tmp_path: Path,
) -> None:
    path = tmp_path / "liar-idx3-ubyte.gz"
    path.write_bytes(gzip.compress(header(0x08, 60000, 1000, 1000) + bytes(100)))  # claims 60 GB
    peak, message = traced_peak(lambda: read_idx(path))
    assert (
        "truncated: header declares 60000x1000x1000 uint8 (60000000016 bytes in all), file "
        "has 116 bytes" in message
    )
    assert peak < 8 << 20
