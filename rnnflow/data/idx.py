"""IDX files (the MNIST container format): a strict reader and a writer.

Layout (all integers big-endian)::

    bytes 0-1   0x00 0x00                     magic
    byte  2     type code                     0x08 uint8, 0x09 int8, 0x0B int16, 0x0C int32,
                                              0x0D float32, 0x0E float64
    byte  3     number of dimensions D >= 1
    D x uint32  size of each dimension
    payload     prod(sizes) items of that type, row-major

Files may be gzip-compressed (detected from the gzip magic bytes, not from the name). Unlike
torchvision's parser, every check is an explicit ``if``/``raise`` (so ``python -O`` keeps it) and
each error names the file and what is wrong with it.
"""

from __future__ import annotations

import gzip
import math
import os
import zlib
from pathlib import Path
from typing import BinaryIO, NoReturn

import numpy as np

from rnnflow._atomic import atomic_write_bytes

__all__ = ["IdxFormatError", "parse_idx", "read_idx", "read_idx_bytes", "write_idx"]

# IDX type code -> big-endian numpy dtype.
_CODE_TO_DTYPE: dict[int, np.dtype] = {
    0x08: np.dtype(">u1"),
    0x09: np.dtype(">i1"),
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}
_KIND_TO_CODE: dict[tuple[str, int], int] = {
    (dt.kind, dt.itemsize): code for code, dt in _CODE_TO_DTYPE.items()
}
_GZIP_MAGIC = b"\x1f\x8b"


class IdxFormatError(ValueError):
    """A file is not a well-formed IDX file (the message names the file and the problem)."""


def read_idx_bytes(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> bytes:
    """Return the IDX bytes of ``path``, decompressed if the file is gzip (whatever its name).

    The header is read first and the rest only as far as it declares: a raw file whose size
    differs from the header's is refused before its payload is read, and gzip data is
    decompressed in streaming, never beyond the declared size (a gzip bomb costs no more memory
    than the array its header declares). ``max_bytes`` bounds the IDX size the caller accepts
    (header + payload; a dataset file's published size): a header declaring more is refused
    before anything else is read.

    Raises ``FileNotFoundError`` for a missing file and :class:`IdxFormatError` for an empty,
    malformed or truncated file, trailing bytes, a size over ``max_bytes``, or a truncated or
    corrupt gzip stream.
    """
    path = Path(path)
    with open(path, "rb") as raw:
        size = os.fstat(raw.fileno()).st_size
        if size == 0:
            raise IdxFormatError(f"read_idx: {path}: empty file (0 bytes)")
        if raw.read(2) != _GZIP_MAGIC:
            raw.seek(0)
            return _read_stream(raw, source=str(path), file_size=size, max_bytes=max_bytes)
        raw.seek(0)
        try:
            with gzip.GzipFile(fileobj=raw, mode="rb") as stream:
                return _read_stream(stream, source=str(path), file_size=None, max_bytes=max_bytes)
        except (EOFError, OSError, zlib.error) as exc:
            raise IdxFormatError(
                f"read_idx: {path}: truncated or corrupt gzip data ({exc}); delete the file and "
                "download it again"
            ) from exc


_SHOWN_DIMS = 8  # shapes with more dimensions are described by their count in errors
_MAX_HEADER = 4 + 4 * 255  # magic, type, ndim <= 255, the sizes
_CHUNK = 1 << 20
_TRAILING_LIMIT = 1 << 20  # trailing bytes of a gzip stream counted exactly up to this many


def _read_stream(
    stream: BinaryIO, *, source: str, file_size: int | None, max_bytes: int | None
) -> bytes:
    """The IDX bytes of ``stream``: header, then exactly the declared payload (see
    :func:`read_idx_bytes`); ``file_size`` is the byte count of an uncompressed file."""
    data = bytearray(stream.read(4))
    if len(data) == 4 and data[:2] == b"\0\0" and data[3]:
        data += stream.read(4 * data[3])
    dtype, shape, header_len = _parse_header(
        bytes(data), source=source, compressed=file_size is None
    )
    expected = header_len + math.prod(shape) * dtype.itemsize
    described = _describe(shape, dtype, expected)
    if max_bytes is not None and expected > max_bytes:
        raise IdxFormatError(
            f"read_idx: {source}: {described}, more than the {max_bytes} bytes expected of this "
            "file"
        )
    if file_size is not None and file_size != expected:  # checked before reading the payload
        _wrong_size(source, described, expected, file_size)
    while len(data) < expected:  # grows with the bytes really there, not with the claim
        chunk = stream.read(min(_CHUNK, expected - len(data)))
        if not chunk:
            _wrong_size(source, described, expected, len(data))
        data += chunk
    trailing = 0
    while chunk := stream.read(_CHUNK):  # only gzip streams get here with bytes left
        trailing += len(chunk)
        if trailing > _TRAILING_LIMIT:
            raise IdxFormatError(
                f"read_idx: {source}: more than {_TRAILING_LIMIT} unexpected trailing bytes: "
                f"{described}"
            )
    if trailing:
        _wrong_size(source, described, expected, expected + trailing)
    return bytes(data)


def _describe(shape: tuple[int, ...], dtype: np.dtype, expected: int) -> str:
    dims = "x".join(map(str, shape[:_SHOWN_DIMS]))
    if len(shape) > _SHOWN_DIMS:  # a corrupt dimension count: no 255-part shape string
        dims = f"{len(shape)} dimensions ({dims}x...)"
    return f"header declares {dims} {dtype.name} ({expected} bytes in all)"


def _wrong_size(source: str, described: str, expected: int, actual: int) -> NoReturn:
    if actual < expected:
        raise IdxFormatError(f"read_idx: {source}: truncated: {described}, file has {actual} bytes")
    raise IdxFormatError(
        f"read_idx: {source}: {actual - expected} unexpected trailing bytes: {described}, file "
        f"has {actual}"
    )


def _parse_header(
    data: bytes, *, source: str, compressed: bool = False
) -> tuple[np.dtype, tuple[int, ...], int]:
    """(dtype, shape, header length) from the first bytes of an IDX file; every check of the
    magic, type code and dimension count, each with its own message."""
    if len(data) == 0:
        what = "gzip holds 0 bytes" if compressed else "0 bytes"
        raise IdxFormatError(f"read_idx: {source}: empty file ({what})")
    if len(data) < 4:
        raise IdxFormatError(
            f"read_idx: {source}: truncated header: need at least 4 bytes, got {len(data)}"
        )
    if data[0] != 0 or data[1] != 0:
        raise IdxFormatError(
            f"read_idx: {source}: bad magic: expected the first two bytes to be 00 00, "
            f"got {data[:2].hex(' ')} (not an IDX file)"
        )
    code, ndim = data[2], data[3]
    dtype = _CODE_TO_DTYPE.get(code)
    if dtype is None:
        known = ", ".join(f"0x{c:02X}" for c in _CODE_TO_DTYPE)
        raise IdxFormatError(
            f"read_idx: {source}: wrong type code 0x{code:02X}: expected one of {known}"
        )
    if ndim == 0:
        raise IdxFormatError(f"read_idx: {source}: number of dimensions is 0, expected >= 1")
    header_len = 4 + 4 * ndim
    if len(data) < header_len:
        raise IdxFormatError(
            f"read_idx: {source}: truncated header: {ndim} dimensions need {header_len} bytes, "
            f"file has {len(data)}"
        )
    shape = tuple(int.from_bytes(data[4 + 4 * i : 8 + 4 * i], "big") for i in range(ndim))
    return dtype, shape, header_len


def parse_idx(data: bytes, *, source: str = "<bytes>") -> np.ndarray:
    """Parse uncompressed IDX ``data`` into a writable native-endian array of the header's shape.

    ``source`` names the data in error messages (normally the file path).
    """
    dtype, shape, header_len = _parse_header(data[:_MAX_HEADER], source=source)
    count = math.prod(shape)
    expected = header_len + count * dtype.itemsize
    if len(data) != expected:
        _wrong_size(source, _describe(shape, dtype, expected), expected, len(data))
    flat = np.frombuffer(data, dtype=dtype, count=count, offset=header_len)
    return flat.astype(dtype.newbyteorder("="), copy=True).reshape(shape)  # writable, native


def read_idx(path: str | os.PathLike[str], *, max_bytes: int | None = None) -> np.ndarray:
    """Read an IDX file (raw or gzip) into a writable, native-endian numpy array.

    Shapes: ``train-images-idx3-ubyte`` -> uint8 [N, 28, 28]; ``*-labels-idx1-ubyte`` -> uint8 [N].
    Raises ``FileNotFoundError`` if missing and :class:`IdxFormatError` (a ``ValueError``) for an
    empty or truncated file, bad magic, an unknown type code, zero dimensions, a payload whose
    length does not match the header, a size over ``max_bytes`` (see :func:`read_idx_bytes`:
    the payload is never read beyond what the header declares), or corrupt gzip data.
    """
    return parse_idx(read_idx_bytes(path, max_bytes=max_bytes), source=str(path))


def write_idx(path: str | os.PathLike[str], array: np.ndarray) -> None:
    """Write ``array`` as an IDX file; gzip-compressed if ``path`` ends with ``.gz``.

    The type code follows the array's dtype (uint8, int8, int16, int32, float32, float64). The
    file is written to a temporary name and renamed, so readers never see half a file; gzip output
    uses mtime 0 so the same array always gives the same bytes.
    """
    path = Path(path)
    array = np.asarray(array)
    code = _KIND_TO_CODE.get((array.dtype.kind, array.dtype.itemsize))
    if code is None:
        raise ValueError(
            f"write_idx: array dtype must be one of uint8, int8, int16, int32, float32, float64, "
            f"got {array.dtype}"
        )
    if array.ndim == 0 or array.ndim > 255:
        raise ValueError(f"write_idx: array must have 1 to 255 dimensions, got {array.ndim}")
    if any(d >= 2**32 for d in array.shape):
        raise ValueError(f"write_idx: every dimension must be < 2**32, got {array.shape}")
    header = bytes([0, 0, code, array.ndim]) + b"".join(d.to_bytes(4, "big") for d in array.shape)
    payload = np.ascontiguousarray(array, dtype=_CODE_TO_DTYPE[code]).tobytes()
    data = header + payload
    if path.name.endswith(".gz"):
        data = gzip.compress(data, mtime=0)
    atomic_write_bytes(path, data)
