"""Read TensorFlow-1 V2 checkpoints (``PREFIX.index`` + ``PREFIX.data-*``) without TensorFlow.

A V2 checkpoint is TensorFlow's "tensor bundle" (``tensorflow/core/util/tensor_bundle``):

    PREFIX.index                          a LevelDB-format sorted table ("SSTable"):
        [data block]...  [metaindex block]  [index block]  footer (48 bytes)
        footer   = metaindex BlockHandle, index BlockHandle (varint64 offset, size each), zero
                   padding to 40 bytes, magic 0xdb4775248b80fb57 (fixed64, little-endian)
        block    = entries, restart offsets (uint32 each), restart count (uint32), then a
                   5-byte trailer: compression type (0 = none) + masked crc32c(block + type)
        entry    = varint32 shared, varint32 non_shared, varint32 value_length,
                   key[shared:] (prefix-compressed against the previous key), value
        the index block maps a key >= each data block's last key to that block's BlockHandle
        key ""   -> BundleHeaderProto (num_shards, endianness, version)
        key name -> BundleEntryProto (dtype, shape, shard_id, offset, size, masked crc32c)
    PREFIX.data-SSSSS-of-NNNNN            raw little-endian tensor bytes, at offset/size

Both protos are decoded here from the protobuf wire format (no protobuf dependency). Every
length, offset and count read from the files is checked against the real file sizes before
anything is read or allocated, so a malformed or hostile checkpoint raises
``TF1CheckpointError`` with the file and what is wrong, and memory stays bounded by the actual
file sizes (a header that claims a 100 GB tensor in a 1 MB shard is an error, not an
allocation). Every tensor's bytes are checked against their crc32c before use.

Not supported (each a clear error): V1 checkpoints (TF < 0.12, one file without ``.index``),
snappy-compressed index blocks (TensorFlow never writes them for bundles), partitioned
("sliced") variables and string/variant/resource tensors (listed, but not readable).
"""

from __future__ import annotations

import os
import re
import struct
from collections.abc import Iterable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import numpy as np
import torch
from torch import Tensor

from rnnflow.interop._crc32c import crc32c, mask, unmask

__all__ = [
    "TF1Checkpoint",
    "TF1CheckpointError",
    "TF1ChecksumError",
    "TensorEntry",
    "resolve_prefix",
]

TABLE_MAGIC = 0xDB4775248B80FB57
FOOTER_SIZE = 48  # 2 * BlockHandle::kMaxEncodedLength (20) + 8-byte magic
BLOCK_TRAILER_SIZE = 5  # compression type (1) + masked crc32c (4)
MAX_INDEX_BYTES = 1 << 30  # an index holds ~60 bytes per variable: 1 GiB is far beyond real use
MAX_RANK = 254  # TensorShape::MaxDimensions()
MAX_SHARDS = 99_999  # shard numbers are printed with 5 digits
BUNDLE_VERSION = 1  # kTensorBundleVersion: the newest format this reader understands

# TF DataType enum -> (name, numpy little-endian dtype or None if not readable)
_DTYPES: dict[int, tuple[str, str | None]] = {
    1: ("float32", "<f4"),
    2: ("float64", "<f8"),
    3: ("int32", "<i4"),
    4: ("uint8", "|u1"),
    5: ("int16", "<i2"),
    6: ("int8", "|i1"),
    7: ("string", None),
    8: ("complex64", "<c8"),
    9: ("int64", "<i8"),
    10: ("bool", "|b1"),
    11: ("qint8", None),
    12: ("quint8", None),
    13: ("qint32", None),
    14: ("bfloat16", "<u2"),  # read as raw 16-bit words, then viewed as torch.bfloat16
    15: ("qint16", None),
    16: ("quint16", None),
    17: ("uint16", None),
    18: ("complex128", "<c16"),
    19: ("float16", "<f2"),
    20: ("resource", None),
    21: ("variant", None),
    22: ("uint32", None),
    23: ("uint64", None),
}

READABLE_DTYPES = frozenset(name for name, np_dtype in _DTYPES.values() if np_dtype is not None)


class TF1CheckpointError(ValueError):
    """A TF1 checkpoint that cannot be read: missing file, malformed or unsupported content."""


class TF1ChecksumError(TF1CheckpointError):
    """Bytes whose crc32c does not match the one stored for them: the file is corrupted."""


@dataclass(frozen=True)
class TensorEntry:
    """What the index says about one tensor (a ``BundleEntryProto``)."""

    name: str
    dtype: str  # "float32", "bfloat16", ... ("dtype_<n>" for codes this reader does not know)
    shape: tuple[int, ...]
    shard_id: int
    offset: int
    size: int  # bytes in the data shard
    crc32c: int  # as stored (masked)
    sliced: bool  # a partitioned variable (its data lives in slice entries)

    @property
    def readable(self) -> bool:
        """Whether :meth:`TF1Checkpoint.read` can return it (a supported dtype, not sliced)."""
        return not self.sliced and self.dtype in READABLE_DTYPES

    @property
    def numel(self) -> int:
        n = 1
        for d in self.shape:
            n *= d
        return n


# ----------------------------------------------------------------------------- wire helpers
def _varint(buf: bytes, pos: int, end: int, *, what: str, limit_bits: int = 64) -> tuple[int, int]:
    """Decode a base-128 varint in ``buf[pos:end]``; returns (value, next position)."""
    result = 0
    shift = 0
    while True:
        if pos >= end:
            raise _Malformed(f"{what}: varint runs past the end of its field")
        byte = buf[pos]
        pos += 1
        result |= (byte & 0x7F) << shift
        if not byte & 0x80:
            break
        shift += 7
        if shift >= limit_bits + 7:
            raise _Malformed(f"{what}: varint longer than {limit_bits} bits")
    if result >> limit_bits:
        raise _Malformed(f"{what}: varint larger than {limit_bits} bits")
    return result, pos


class _Malformed(Exception):
    """Internal: a parse failure, re-raised as TF1CheckpointError with the file name."""


def _proto_fields(buf: bytes, *, what: str) -> Iterator[tuple[int, int, int | bytes]]:
    """Yield (field number, wire type, value) of a protobuf message; ints for varint/fixed."""
    pos, end = 0, len(buf)
    while pos < end:
        tag, pos = _varint(buf, pos, end, what=what)
        field, wire = tag >> 3, tag & 7
        if field == 0:
            raise _Malformed(f"{what}: field number 0")
        if wire == 0:
            value, pos = _varint(buf, pos, end, what=what)
            yield field, wire, value
        elif wire == 1:
            if pos + 8 > end:
                raise _Malformed(f"{what}: 64-bit field runs past the end")
            yield field, wire, struct.unpack_from("<Q", buf, pos)[0]
            pos += 8
        elif wire == 2:
            length, pos = _varint(buf, pos, end, what=what)
            if length > end - pos:
                raise _Malformed(
                    f"{what}: field {field} claims {length} bytes, only {end - pos} left"
                )
            yield field, wire, bytes(buf[pos : pos + length])
            pos += length
        elif wire == 5:
            if pos + 4 > end:
                raise _Malformed(f"{what}: 32-bit field runs past the end")
            yield field, wire, struct.unpack_from("<I", buf, pos)[0]
            pos += 4
        else:
            raise _Malformed(f"{what}: unsupported wire type {wire} (field {field})")


def _int64(value: int) -> int:
    return value - (1 << 64) if value >= 1 << 63 else value


def _expect(field: int, wire: int, expected_wire: int, *, what: str) -> None:
    if wire != expected_wire:
        raise _Malformed(f"{what}: field {field} has wire type {wire}, expected {expected_wire}")


def _parse_header(buf: bytes) -> tuple[int, int, int, int]:
    """BundleHeaderProto -> (num_shards, endianness, producer, min_consumer)."""
    what = "BundleHeaderProto"
    num_shards, endianness, producer, min_consumer = 0, 0, 0, 0
    for field, wire, value in _proto_fields(buf, what=what):
        if field == 1:
            _expect(field, wire, 0, what=what)
            num_shards = _int64(int(value))  # type: ignore[arg-type]
        elif field == 2:
            _expect(field, wire, 0, what=what)
            endianness = int(value)  # type: ignore[arg-type]
        elif field == 3:
            _expect(field, wire, 2, what=what)
            for vf, vw, vv in _proto_fields(value, what="VersionDef"):  # type: ignore[arg-type]
                if vf == 1 and vw == 0:
                    producer = _int64(int(vv))  # type: ignore[arg-type]
                elif vf == 2 and vw == 0:
                    min_consumer = _int64(int(vv))  # type: ignore[arg-type]
    return num_shards, endianness, producer, min_consumer


def _parse_shape(buf: bytes) -> tuple[int, ...]:
    what = "TensorShapeProto"
    dims: list[int] = []
    for field, wire, value in _proto_fields(buf, what=what):
        if field == 2:
            _expect(field, wire, 2, what=what)
            size = 0
            for df, dw, dv in _proto_fields(value, what="TensorShapeProto.Dim"):  # type: ignore[arg-type]
                if df == 1:
                    _expect(df, dw, 0, what="TensorShapeProto.Dim")
                    size = _int64(int(dv))  # type: ignore[arg-type]
            if size < 0:
                raise _Malformed(f"{what}: dimension {len(dims)} is {size} (unknown or negative)")
            dims.append(size)
            if len(dims) > MAX_RANK:
                raise _Malformed(f"{what}: more than {MAX_RANK} dimensions")
        elif field == 3 and value:
            raise _Malformed(f"{what}: unknown rank")
    return tuple(dims)


def _parse_entry(name: str, buf: bytes) -> TensorEntry:
    what = f"BundleEntryProto of {name!r}"
    dtype_code, shape, shard_id, offset, size, crc, sliced = 0, (), 0, 0, 0, 0, False
    seen_crc = False
    for field, wire, value in _proto_fields(buf, what=what):
        if field == 1:
            _expect(field, wire, 0, what=what)
            dtype_code = int(value)  # type: ignore[arg-type]
        elif field == 2:
            _expect(field, wire, 2, what=what)
            shape = _parse_shape(value)  # type: ignore[arg-type]
        elif field == 3:
            _expect(field, wire, 0, what=what)
            shard_id = _int64(int(value))  # type: ignore[arg-type]
        elif field == 4:
            _expect(field, wire, 0, what=what)
            offset = _int64(int(value))  # type: ignore[arg-type]
        elif field == 5:
            _expect(field, wire, 0, what=what)
            size = _int64(int(value))  # type: ignore[arg-type]
        elif field == 6:
            _expect(field, wire, 5, what=what)
            crc, seen_crc = int(value), True  # type: ignore[arg-type]
        elif field == 7:
            sliced = True
    if offset < 0 or size < 0:
        raise _Malformed(f"{what}: negative offset {offset} or size {size}")
    if not seen_crc and size > 0 and not sliced:
        raise _Malformed(f"{what}: no crc32c recorded")
    dtype_name = _DTYPES.get(dtype_code, (f"dtype_{dtype_code}", None))[0]
    return TensorEntry(name, dtype_name, shape, shard_id, offset, size, crc, sliced)


# ----------------------------------------------------------------------------- the table
def _decode_handle(buf: bytes, pos: int, end: int, *, what: str) -> tuple[int, int, int]:
    offset, pos = _varint(buf, pos, end, what=what)
    size, pos = _varint(buf, pos, end, what=what)
    return offset, size, pos


def _read_block(index: bytes, offset: int, size: int, *, what: str) -> bytes:
    """A block's contents after checking its bounds, trailer type and crc."""
    limit = len(index) - FOOTER_SIZE
    if offset > limit or size > limit - offset or offset + size + BLOCK_TRAILER_SIZE > limit:
        raise _Malformed(
            f"{what} claims bytes [{offset}, {offset + size + BLOCK_TRAILER_SIZE}) "
            f"but the table's blocks end at byte {limit}"
        )
    contents = index[offset : offset + size]
    kind = index[offset + size]
    (stored,) = struct.unpack_from("<I", index, offset + size + 1)
    actual = crc32c(index[offset : offset + size + 1])
    if unmask(stored) != actual:
        raise TF1ChecksumError(
            f"{what}: block crc32c mismatch (stored {unmask(stored):#010x}, computed "
            f"{actual:#010x}); the index file is corrupted"
        )
    if kind == 1:
        raise _Malformed(f"{what} is snappy-compressed, which this reader does not support")
    if kind != 0:
        raise _Malformed(f"{what} has unknown compression type {kind}")
    return contents


def _block_entries(block: bytes, *, what: str) -> Iterator[tuple[bytes, bytes]]:
    n = len(block)
    if n < 4:
        raise _Malformed(f"{what}: {n} bytes, too short for a block")
    (num_restarts,) = struct.unpack_from("<I", block, n - 4)
    if num_restarts > (n - 4) // 4:
        raise _Malformed(f"{what}: {num_restarts} restart points cannot fit in {n} bytes")
    data_end = n - 4 - 4 * num_restarts
    restarts = struct.unpack_from(f"<{num_restarts}I", block, data_end)
    if any(r >= max(data_end, 1) for r in restarts):
        raise _Malformed(f"{what}: restart point beyond the entries")
    key = b""
    pos = 0
    while pos < data_end:
        shared, pos = _varint(block, pos, data_end, what=what, limit_bits=32)
        non_shared, pos = _varint(block, pos, data_end, what=what, limit_bits=32)
        value_len, pos = _varint(block, pos, data_end, what=what, limit_bits=32)
        if shared > len(key):
            raise _Malformed(f"{what}: entry shares {shared} bytes of a {len(key)}-byte key")
        if non_shared > data_end - pos or value_len > data_end - pos - non_shared:
            raise _Malformed(f"{what}: entry runs past the end of the block")
        key = key[:shared] + block[pos : pos + non_shared]
        pos += non_shared
        yield key, block[pos : pos + value_len]
        pos += value_len


def _table_entries(index: bytes) -> Iterator[tuple[bytes, bytes]]:
    if len(index) < FOOTER_SIZE:
        raise _Malformed(f"{len(index)} bytes, shorter than a table footer ({FOOTER_SIZE})")
    footer_at = len(index) - FOOTER_SIZE
    (magic,) = struct.unpack_from("<Q", index, len(index) - 8)
    if magic != TABLE_MAGIC:
        raise _Malformed(
            f"bad magic number {magic:#018x} (expected {TABLE_MAGIC:#018x}): not the .index "
            "of a TensorFlow V2 checkpoint"
        )
    _, _, pos = _decode_handle(index, footer_at, footer_at + 40, what="footer metaindex handle")
    idx_off, idx_size, _ = _decode_handle(index, pos, footer_at + 40, what="footer index handle")
    index_block = _read_block(index, idx_off, idx_size, what="index block")
    for _, handle in _block_entries(index_block, what="index block"):
        off, size, _ = _decode_handle(handle, 0, len(handle), what="index block handle")
        yield from _block_entries(
            _read_block(index, off, size, what=f"data block at {off}"),
            what=f"data block at {off}",
        )


# ----------------------------------------------------------------------------- the reader
def resolve_prefix(path: str | os.PathLike[str]) -> Path:
    """The checkpoint prefix for ``path``: a prefix, its ``.index`` or ``.data-*`` file, or a
    folder holding a ``checkpoint`` file (``tf.train.Saver``'s, naming the latest prefix) or
    exactly one ``*.index``, or that ``checkpoint`` state file itself. Raises
    :class:`TF1CheckpointError` for a folder that names no single prefix, and for a
    ``checkpoint`` state file that names none (``model_checkpoint_path``), ``TypeError`` for
    a ``path`` that is not a str or an ``os.PathLike``."""
    if not isinstance(path, (str, os.PathLike)):
        raise TypeError(
            f"TF1Checkpoint: path must be a str or an os.PathLike (a checkpoint prefix, its "
            f".index file or its folder), got {type(path).__name__}"
        )
    p = Path(path)
    if p.is_file() and p.name == "checkpoint" and not Path(f"{p}.index").exists():
        latest = _latest_in_state_file(p)
        if latest is None:
            raise TF1CheckpointError(
                f"TF1Checkpoint: {p} is tf.train.Saver's checkpoint state file but names no "
                'checkpoint (no line model_checkpoint_path: "PREFIX"); pass the prefix (e.g. '
                f"{p.parent / 'model.ckpt'})"
            )
        return latest
    if p.is_dir():
        state = p / "checkpoint"
        if state.is_file():
            latest = _latest_in_state_file(state)
            if latest is not None:
                return latest
        indexes = sorted(p.glob("*.index"))
        if len(indexes) == 1:
            return indexes[0].with_suffix("")
        raise TF1CheckpointError(
            f"TF1Checkpoint: folder {p} has no 'checkpoint' file and "
            f"{len(indexes)} *.index files; pass the prefix (e.g. {p / 'model.ckpt'})"
        )
    if p.suffix == ".index":
        return p.with_suffix("")
    m = re.fullmatch(r"(.*)\.data-\d{5}-of-\d{5}", p.name)
    if m:
        return p.with_name(m.group(1))
    return p


def _latest_in_state_file(state: Path) -> Path | None:
    """The prefix the ``checkpoint`` state file ``state`` names as the latest (relative to its
    folder), or None when it names none."""
    text = state.read_text(encoding="utf-8", errors="replace")
    m = re.search(r'^model_checkpoint_path:\s*"(.*)"\s*$', text, re.M)
    if m is None:
        return None
    latest = Path(m.group(1))
    return latest if latest.is_absolute() else state.parent / latest


class TF1Checkpoint:
    """A TF1 V2 checkpoint opened for reading: the index is parsed and checked at once,
    tensors are read (and their crc32c verified) on demand.

        ckpt = TF1Checkpoint("run/model.ckpt")        # or the .index file, or its folder
        ckpt.entries["rnn/basic_rnn_cell/kernel"]      # TensorEntry(dtype, shape, ...)
        kernel = ckpt.read("rnn/basic_rnn_cell/kernel")   # torch.Tensor [256, 128] float32

    Tensors come back as CPU ``torch.Tensor`` of the stored dtype: float16/32/64, bfloat16,
    int8/16/32/64, uint8, bool, complex64/128.
    """

    def __init__(
        self, path: str | os.PathLike[str], *, max_index_bytes: int = MAX_INDEX_BYTES
    ) -> None:
        self.prefix = resolve_prefix(path)
        self.index_path = Path(f"{self.prefix}.index")
        if not self.index_path.is_file():
            hint = ""
            if self.prefix.is_file():
                hint = (
                    f"; {self.prefix} itself exists: a V1 checkpoint (TF < 0.12), which this "
                    "reader does not support (convert it with TF's checkpoint_convert)"
                )
            raise TF1CheckpointError(
                f"TF1Checkpoint: no index file {self.index_path} (pass the checkpoint prefix, "
                f"e.g. 'model.ckpt' for model.ckpt.index){hint}"
            )
        size = self.index_path.stat().st_size
        if size > max_index_bytes:
            raise TF1CheckpointError(
                f"TF1Checkpoint: {self.index_path} is {size} bytes, more than max_index_bytes="
                f"{max_index_bytes}; not a checkpoint index, or pass a larger max_index_bytes"
            )
        index = self.index_path.read_bytes()
        self.entries: dict[str, TensorEntry] = {}
        try:
            self._parse(index)
        except _Malformed as exc:
            raise TF1CheckpointError(f"TF1Checkpoint: {self.index_path}: {exc}") from None
        except TF1ChecksumError as exc:
            raise TF1ChecksumError(f"TF1Checkpoint: {self.index_path}: {exc}") from None

    def _parse(self, index: bytes) -> None:
        previous: bytes | None = None
        header: tuple[int, int, int, int] | None = None
        for key, value in _table_entries(index):
            if previous is not None and key <= previous:
                raise _Malformed(f"keys out of order: {key!r} after {previous!r}")
            previous = key
            if key == b"":
                header = _parse_header(value)
                continue
            try:
                name = key.decode("utf-8")
            except UnicodeDecodeError:
                raise _Malformed(f"key {key!r} is not UTF-8") from None
            self.entries[name] = _parse_entry(name, value)
        if header is None:
            raise _Malformed("no header entry (key ''): not a tensor bundle index")
        num_shards, endianness, producer, min_consumer = header
        if not 1 <= num_shards <= MAX_SHARDS:
            raise _Malformed(f"header claims {num_shards} data shards (expected 1..{MAX_SHARDS})")
        if endianness not in (0, 1):
            raise _Malformed(f"header has unknown endianness {endianness}")
        if min_consumer > BUNDLE_VERSION:
            raise _Malformed(
                f"written by a newer TensorFlow (bundle version {producer}, needs a reader of "
                f"version >= {min_consumer}; this one is {BUNDLE_VERSION})"
            )
        self.num_shards = num_shards
        self.endianness: Literal["little", "big"] = "little" if endianness == 0 else "big"
        self.version = producer
        for entry in self.entries.values():
            if not entry.sliced and not 0 <= entry.shard_id < num_shards:
                raise _Malformed(
                    f"tensor {entry.name!r} is in shard {entry.shard_id}, but the checkpoint "
                    f"has {num_shards} shard(s)"
                )
            np_dtype = _DTYPES.get(_dtype_code(entry.dtype), ("", None))[1]
            if np_dtype is not None and not entry.sliced:
                expected = entry.numel * np.dtype(np_dtype).itemsize
                if entry.size != expected:
                    raise _Malformed(
                        f"tensor {entry.name!r}: {entry.dtype}{list(entry.shape)} needs "
                        f"{expected} bytes, the index says {entry.size}"
                    )

    # ------------------------------------------------------------------ queries
    def __contains__(self, name: object) -> bool:
        return name in self.entries

    def __iter__(self) -> Iterator[str]:
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def shard_path(self, shard_id: int) -> Path:
        return Path(f"{self.prefix}.data-{shard_id:05d}-of-{self.num_shards:05d}")

    def shapes(self) -> dict[str, tuple[int, ...]]:
        return {name: e.shape for name, e in self.entries.items()}

    def read(self, name: str, *, verify: bool = True) -> Tensor:
        """The tensor ``name`` as a CPU ``torch.Tensor``; ``verify`` checks its crc32c."""
        if name not in self.entries:
            raise KeyError(
                f"TF1Checkpoint.read: no tensor {name!r} in {self.index_path} "
                f"({len(self.entries)} tensors; TF1Checkpoint.shapes() lists them)"
            )
        entry = self.entries[name]
        if entry.sliced:
            raise TF1CheckpointError(
                f"TF1Checkpoint.read: {name!r} is a partitioned (sliced) variable, which this "
                "reader does not support"
            )
        np_dtype = _DTYPES.get(_dtype_code(entry.dtype), ("", None))[1]
        if np_dtype is None:
            raise TF1CheckpointError(
                f"TF1Checkpoint.read: {name!r} has dtype {entry.dtype}, which this reader "
                "does not support (float16/32/64, bfloat16, int8/16/32/64, uint8, bool, complex)"
            )
        raw = self._read_bytes(entry)
        if verify:
            actual = crc32c(raw)
            if unmask(entry.crc32c) != actual:
                raise TF1ChecksumError(
                    f"TF1Checkpoint.read: crc32c mismatch for {name!r} in "
                    f"{self.shard_path(entry.shard_id)} (bytes [{entry.offset}, "
                    f"{entry.offset + entry.size})): stored {unmask(entry.crc32c):#010x}, "
                    f"computed {actual:#010x}; the data file is corrupted"
                )
        order = "<" if self.endianness == "little" else ">"
        array = np.frombuffer(raw, dtype=np.dtype(np_dtype).newbyteorder(order))
        if self.endianness == "big":
            array = array.astype(array.dtype.newbyteorder("="))
        array = array.reshape(entry.shape)
        if entry.dtype == "bfloat16":
            return torch.from_numpy(array.view(np.int16)).view(torch.bfloat16)
        return torch.from_numpy(array)

    def read_all(self, *, verify: bool = True) -> dict[str, Tensor]:
        return {name: self.read(name, verify=verify) for name in self.entries}

    def check_data(self, names: Iterable[str]) -> None:
        """Check that the data shards hold the bytes the index claims for ``names`` (each shard
        exists and is long enough), reading nothing: run it before allocating anything sized by
        the index. Raises :class:`TF1CheckpointError` naming the shard and the tensor."""
        for name in names:
            entry = self.entries[name]
            if not entry.sliced:
                self._check_extent(entry, self.shard_path(entry.shard_id))

    def _check_extent(self, entry: TensorEntry, path: Path) -> None:
        if not path.is_file():
            raise TF1CheckpointError(
                f"TF1Checkpoint.read: missing data shard {path} (tensor {entry.name!r}; the "
                f"index {self.index_path} lists {self.num_shards} shard(s))"
            )
        available = path.stat().st_size
        if entry.offset > available or entry.size > available - entry.offset:
            raise TF1CheckpointError(
                f"TF1Checkpoint.read: {path} is truncated or the index is wrong: tensor "
                f"{entry.name!r} claims bytes [{entry.offset}, {entry.offset + entry.size}) "
                f"({entry.size} bytes), but the file has only {available} bytes"
            )

    def _read_bytes(self, entry: TensorEntry) -> bytearray:
        path = self.shard_path(entry.shard_id)
        self._check_extent(entry, path)
        with open(path, "rb") as f:
            f.seek(entry.offset)
            buf = bytearray(entry.size)
            got = f.readinto(buf)
        if got != entry.size:
            raise TF1CheckpointError(
                f"TF1Checkpoint.read: {path}: short read for {entry.name!r} "
                f"({got} of {entry.size} bytes)"
            )
        return buf

    def __repr__(self) -> str:
        return f"TF1Checkpoint({str(self.prefix)!r}, {len(self.entries)} tensors)"


def _dtype_code(name: str) -> int:
    for code, (dtype_name, _) in _DTYPES.items():
        if dtype_name == name:
            return code
    return -1


def masked_crc32c(data: bytes | bytearray | memoryview) -> int:
    """The crc32c of ``data`` in the masked form a ``BundleEntryProto`` stores."""
    return mask(crc32c(data))
