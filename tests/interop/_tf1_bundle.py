"""Helpers for the TF1 interop tests: the committed TF checkpoints, and a minimal writer of
tensor bundles for building malformed or hostile ones (TensorFlow itself writes only good files).

The writer follows tensorflow/core/util/tensor_bundle and tensorflow/core/lib/io/table: one data
block (prefix-compressed keys, a restart point every 16 entries), an empty metaindex block, an
index block, the 48-byte footer; blocks carry a type byte and a masked crc32c. Everything can be
overridden to produce broken files whose block checksums are still right, so that the reader's
own checks (not only the crc) are exercised.
"""

from __future__ import annotations

import struct
from pathlib import Path
from typing import Any

import numpy as np

from rnnflow.interop._crc32c import crc32c, mask

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures" / "tf1_ckpt"
MAGIC = 0xDB4775248B80FB57
DTYPE_CODES = {
    "float32": 1,
    "float64": 2,
    "int32": 3,
    "uint8": 4,
    "int16": 5,
    "int8": 6,
    "string": 7,
    "int64": 9,
    "bool": 10,
    "bfloat16": 14,
    "float16": 19,
}


def varint(n: int) -> bytes:
    if n < 0:
        n += 1 << 64
    out = bytearray()
    while True:
        byte = n & 0x7F
        n >>= 7
        if n:
            out.append(byte | 0x80)
        else:
            out.append(byte)
            return bytes(out)


def field_varint(field: int, value: int) -> bytes:
    return varint(field << 3) + varint(value)


def field_bytes(field: int, value: bytes) -> bytes:
    return varint(field << 3 | 2) + varint(len(value)) + value


def field_fixed32(field: int, value: int) -> bytes:
    return varint(field << 3 | 5) + struct.pack("<I", value)


def header_proto(num_shards: int = 1, endianness: int = 0, min_consumer: int = 0) -> bytes:
    version = field_varint(1, 1) + (field_varint(2, min_consumer) if min_consumer else b"")
    out = field_varint(1, num_shards)
    if endianness:
        out += field_varint(2, endianness)
    return out + field_bytes(3, version)


def entry_proto(
    *,
    dtype: int,
    shape: tuple[int, ...],
    shard_id: int = 0,
    offset: int = 0,
    size: int,
    crc: int | None,
    sliced: bool = False,
) -> bytes:
    shape_msg = b"".join(field_bytes(2, field_varint(1, d)) for d in shape)
    out = field_varint(1, dtype) + field_bytes(2, shape_msg)
    if shard_id:
        out += field_varint(3, shard_id)
    if offset:
        out += field_varint(4, offset)
    if size:
        out += field_varint(5, size)
    if crc is not None:
        out += field_fixed32(6, crc)
    if sliced:
        out += field_bytes(7, b"")
    return out


def block(entries: list[tuple[bytes, bytes]], restart_interval: int = 16) -> bytes:
    out = bytearray()
    restarts = []
    previous = b""
    for k, (key, value) in enumerate(entries):
        shared = 0
        if k % restart_interval == 0:
            restarts.append(len(out))
        else:
            while shared < min(len(key), len(previous)) and key[shared] == previous[shared]:
                shared += 1
        out += varint(shared) + varint(len(key) - shared) + varint(len(value))
        out += key[shared:] + value
        previous = key
    if not restarts:
        restarts = [0]
    out += b"".join(struct.pack("<I", r) for r in restarts) + struct.pack("<I", len(restarts))
    return bytes(out)


def table(entries: list[tuple[bytes, bytes]], *, compression: int = 0) -> bytes:
    out = bytearray()

    def put(contents: bytes) -> bytes:
        handle = varint(len(out)) + varint(len(contents))
        trailer_type = bytes([compression])
        crc = mask(crc32c(contents + trailer_type))
        out.extend(contents + trailer_type + struct.pack("<I", crc))
        return handle

    data_handle = put(block(entries))
    meta_handle = put(block([]))
    last_key = entries[-1][0] if entries else b""
    index_handle = put(block([(last_key, data_handle)], restart_interval=1))
    footer = (meta_handle + index_handle).ljust(40, b"\0") + struct.pack("<Q", MAGIC)
    return bytes(out + footer)


def write_bundle(
    prefix: Path,
    tensors: dict[str, np.ndarray],
    *,
    num_shards: int = 1,
    big_endian: bool = False,
    header: bytes | None = None,
    entries: dict[str, bytes] | None = None,
    dtypes: dict[str, str] | None = None,
    compression: int = 0,
) -> Path:
    """Write ``tensors`` as a bundle at ``prefix``: tensor k goes to shard k % num_shards.

    ``entries`` replaces the BundleEntryProto of named tensors (or adds raw extra keys);
    ``header`` replaces the BundleHeaderProto; ``dtypes`` overrides the recorded dtype names
    (e.g. "bfloat16" for uint16 bit patterns).
    """
    prefix.parent.mkdir(parents=True, exist_ok=True)
    shards = [bytearray() for _ in range(num_shards)]
    records: dict[bytes, bytes] = {}
    for k, (name, array) in enumerate(tensors.items()):
        shard = k % num_shards
        array = np.asarray(array)
        raw = array.astype(array.dtype.newbyteorder(">" if big_endian else "<")).tobytes()
        dtype = (dtypes or {}).get(name, str(array.dtype))
        records[name.encode()] = entry_proto(
            dtype=DTYPE_CODES[dtype],
            shape=array.shape,
            shard_id=shard,
            offset=len(shards[shard]),
            size=len(raw),
            crc=mask(crc32c(raw)),
        )
        shards[shard] += raw
    for name, value in (entries or {}).items():
        records[name.encode()] = value
    records[b""] = (
        header if header is not None else header_proto(num_shards, 1 if big_endian else 0)
    )
    Path(f"{prefix}.index").write_bytes(table(sorted(records.items()), compression=compression))
    for k, data in enumerate(shards):
        Path(f"{prefix}.data-{k:05d}-of-{num_shards:05d}").write_bytes(bytes(data))
    return prefix


def load_expected(model: str) -> dict[str, Any]:
    with np.load(FIXTURES / model / "expected.npz") as data:
        return {k: data[k] for k in data.files}
