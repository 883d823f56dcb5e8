"""CRC-32C (Castagnoli), as TensorFlow's checkpoints use it, without compiled dependencies.

``crc32c(data)`` is the standard CRC-32C (``crc32c(b"123456789") == 0xE3069283``);
``mask``/``unmask`` are LevelDB's and TensorFlow's rotation + offset of a stored CRC. The ``crc32c``
or ``google_crc32c`` extension is used when it happens to be importable; otherwise a table
implementation runs byte by byte for short inputs and, for long ones, over many lanes at once
with NumPy, the lanes' CRCs then being combined (CRCs are linear over GF(2)). Both paths give the
same result (tested).
"""

from __future__ import annotations

from collections.abc import Callable
from functools import lru_cache

import numpy as np

_POLY = 0x82F63B78  # reversed Castagnoli polynomial
_MASK_DELTA = 0xA282EAD8
_M32 = 0xFFFFFFFF
_VECTOR_MIN_BYTES = 1 << 16  # below this the plain loop is fast enough
_LANES = 4096


def _make_table() -> list[int]:
    table = []
    for n in range(256):
        c = n
        for _ in range(8):
            c = (c >> 1) ^ _POLY if c & 1 else c >> 1
        table.append(c)
    return table


_TABLE = _make_table()
_NP_TABLE = np.array(_TABLE, dtype=np.uint32)


def _raw_loop(crc: int, data: bytes | bytearray | memoryview) -> int:
    """Feed ``data`` into the (pre-/post-inversion free) CRC register ``crc``."""
    table = _TABLE
    for byte in bytes(data):
        crc = table[(crc ^ byte) & 0xFF] ^ (crc >> 8)
    return crc


@lru_cache(maxsize=8)
def _shift_tables(num_bytes: int) -> np.ndarray:
    """4 x 256 tables of the linear map "feed ``num_bytes`` zero bytes" on a 32-bit register."""
    basis = np.array([1 << k for k in range(32)], dtype=np.uint32)
    for _ in range(num_bytes):
        basis = _NP_TABLE[basis & 0xFF] ^ (basis >> 8)
    tables = np.zeros((4, 256), dtype=np.uint32)
    for b in range(4):
        for bit in range(8):
            on = (np.arange(256) >> bit) & 1 == 1
            tables[b, on] ^= basis[8 * b + bit]
    return tables


def _raw_vector(crc: int, data: bytes | bytearray | memoryview) -> int:
    view = memoryview(data).cast("B")
    lane_len = len(view) // _LANES
    body = _LANES * lane_len
    lanes = np.frombuffer(view[:body], dtype=np.uint8).reshape(_LANES, lane_len).T.copy()
    regs = np.zeros(_LANES, dtype=np.uint32)  # [K], each lane's CRC from a zero register
    for column in lanes:  # column: [K], byte j of every lane
        regs = _NP_TABLE[(regs ^ column) & 0xFF] ^ (regs >> 8)
    t = _shift_tables(lane_len)
    for lane_crc in regs.tolist():  # crc(A + B) = shift_|B|(crc(A)) ^ crc0(B)
        crc = (
            int(t[0, crc & 0xFF])
            ^ int(t[1, (crc >> 8) & 0xFF])
            ^ int(t[2, (crc >> 16) & 0xFF])
            ^ int(t[3, crc >> 24])
        ) ^ lane_crc
    return _raw_loop(crc, view[body:])


def crc32c_python(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data``, continuing from ``crc`` (the CRC of what came before)."""
    register = (crc ^ _M32) & _M32
    if len(data) >= _VECTOR_MIN_BYTES:
        register = _raw_vector(register, data)
    else:
        register = _raw_loop(register, data)
    return register ^ _M32


def _find_extension() -> Callable[[bytes | bytearray | memoryview, int], int] | None:
    try:
        import crc32c as ext  # type: ignore[import-not-found]

        return lambda data, crc=0: ext.crc32c(bytes(data), crc)
    except ImportError:
        pass
    try:
        import google_crc32c as gext  # type: ignore[import-not-found]

        return lambda data, crc=0: gext.extend(crc, bytes(data))
    except ImportError:
        return None


_EXTENSION = _find_extension()


def crc32c(data: bytes | bytearray | memoryview, crc: int = 0) -> int:
    """CRC-32C of ``data`` (continuing from ``crc``), by the extension module if available."""
    if _EXTENSION is not None:
        return _EXTENSION(data, crc)
    return crc32c_python(data, crc)


def mask(crc: int) -> int:
    """TensorFlow/LevelDB's stored form of a CRC: rotate right by 15 bits, add a constant."""
    return ((((crc >> 15) | (crc << 17)) & _M32) + _MASK_DELTA) & _M32


def unmask(masked: int) -> int:
    rot = (masked - _MASK_DELTA) & _M32
    return ((rot >> 17) | (rot << 15)) & _M32
