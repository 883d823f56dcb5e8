"""The TF1 checkpoint reader: real TF files, every dtype, and broken or hostile files."""

from __future__ import annotations

import os
import shutil
import struct
import tracemalloc
from pathlib import Path

import numpy as np
import pytest
import torch
from interop._tf1_bundle import (
    FIXTURES,
    entry_proto,
    header_proto,
    load_expected,
    table,
)

from rnnflow.interop._crc32c import (
    _raw_loop,
    crc32c,
    crc32c_python,
    mask,
    unmask,
)
from rnnflow.interop.tf1_checkpoint import (
    TF1Checkpoint,
    TF1CheckpointError,
    TF1ChecksumError,
    resolve_prefix,
)

MODELS = ["basic_rnn", "basic_lstm", "gru", "multi_lstm"]


# ----------------------------------------------------------------------------- crc32c
def test_crc32c_known_values() -> None:
    assert crc32c_python(b"123456789") == 0xE3069283  # the CRC-32C check value
    assert crc32c_python(b"") == 0
    assert crc32c_python(bytes(32)) == 0x8A9136AA  # RFC 3720 B.4
    assert crc32c_python(b"\xff" * 32) == 0x62A8AB43
    assert crc32c(b"123456789") == 0xE3069283


@pytest.mark.parametrize("size", [0, 1, 4095, 65536, 65536 * 3 + 17, 1 << 20])
def test_crc32c_vectorised_equals_byte_loop(size: int) -> None:
    data = np.random.default_rng(size).integers(0, 256, size, dtype=np.uint8).tobytes()
    expected = _raw_loop(0xFFFFFFFF, data) ^ 0xFFFFFFFF
    assert crc32c_python(data) == expected
    half = size // 2
    assert crc32c_python(data[half:], crc32c_python(data[:half])) == expected


def test_mask_round_trip_and_leveldb_value() -> None:
    for value in (0, 1, 0xE3069283, 0xFFFFFFFF):
        assert unmask(mask(value)) == value
    assert mask(0) == 0xA282EAD8


# ----------------------------------------------------------------------------- real TF files
@pytest.mark.parametrize("model", MODELS)
def test_reads_every_tensor_of_the_tf_checkpoints(model: str) -> None:
    ckpt = TF1Checkpoint(FIXTURES / model / "model.ckpt")
    assert ckpt.num_shards == 1 and ckpt.endianness == "little"
    tensors = ckpt.read_all()
    assert set(tensors) == set(ckpt.entries)
    assert "beta1_power" in tensors and "Variable/Adam_1" in tensors
    for name, t in tensors.items():
        assert t.dtype == torch.float32, name
        assert tuple(t.shape) == ckpt.entries[name].shape


def test_tutorial_checkpoint_listing() -> None:
    ckpt = TF1Checkpoint(FIXTURES / "basic_rnn" / "model.ckpt")
    model_vars = {n: s for n, s in ckpt.shapes().items() if "Adam" not in n and "power" not in n}
    assert model_vars == {
        "Variable": (28, 128),
        "Variable_1": (128, 10),
        "Variable_2": (128,),
        "Variable_3": (10,),
        "rnn/basic_rnn_cell/kernel": (256, 128),
        "rnn/basic_rnn_cell/bias": (128,),
    }
    assert len(ckpt) == 20 and list(ckpt) == sorted(ckpt.entries)
    assert ckpt.shapes()["beta1_power"] == ()


def test_every_dtype_tf_writes() -> None:
    ckpt = TF1Checkpoint(FIXTURES / "dtypes")  # a folder with one .index
    expected = load_expected("dtypes")
    assert set(ckpt.entries) == set(expected)
    torch_dtypes = {
        "float16": torch.float16,
        "bfloat16": torch.bfloat16,
        "float32": torch.float32,
        "float64": torch.float64,
        "int8": torch.int8,
        "uint8": torch.uint8,
        "int32": torch.int32,
        "int64": torch.int64,
        "bool": torch.bool,
    }
    for name, dtype in torch_dtypes.items():
        t = ckpt.read(name)
        assert t.dtype == dtype and ckpt.entries[name].dtype == name
        if dtype == torch.bfloat16:  # numpy has no bfloat16: compare the bit patterns
            assert np.array_equal(t.view(torch.int16).numpy().view(np.uint16), expected[name])
        else:
            assert np.array_equal(t.numpy(), expected[name]), name
    assert ckpt.read("scalar").item() == pytest.approx(np.pi, abs=0)
    assert tuple(ckpt.read("empty").shape) == (0, 3)


def test_resolve_prefix_variants(tmp_path: Path) -> None:
    prefix = FIXTURES / "gru" / "model.ckpt"
    assert resolve_prefix(f"{prefix}.index") == prefix
    assert resolve_prefix(f"{prefix}.data-00000-of-00001") == prefix
    assert resolve_prefix(FIXTURES / "gru") == prefix
    run = tmp_path / "run"
    shutil.copytree(FIXTURES / "gru", run)
    shutil.copy(run / "model.ckpt.index", run / "model.ckpt-5.index")
    with pytest.raises(TF1CheckpointError, match=r"has no 'checkpoint' file and 2 \*\.index"):
        resolve_prefix(run)
    (run / "checkpoint").write_text(
        'model_checkpoint_path: "model.ckpt"\nall_model_checkpoint_paths: "model.ckpt"\n'
    )
    assert resolve_prefix(run) == run / "model.ckpt"
    assert len(TF1Checkpoint(run)) == len(TF1Checkpoint(prefix))


def test_unknown_tensor_name() -> None:
    ckpt = TF1Checkpoint(FIXTURES / "gru" / "model.ckpt")
    # library code names its own API, not a command line (which the user may run otherwise)
    with pytest.raises(
        KeyError, match=r"no tensor 'rnn/gru_cell/kernel' in .*; TF1Checkpoint\.shapes\(\) lists"
    ):
        ckpt.read("rnn/gru_cell/kernel")


# ----------------------------------------------------------------------------- corrupted copies
def test_missing_index_and_v1_hint(tmp_path: Path) -> None:
    with pytest.raises(TF1CheckpointError, match=r"no index file .*nothing\.index"):
        TF1Checkpoint(tmp_path / "nothing")
    (tmp_path / "old.ckpt").write_bytes(b"\0" * 64)
    with pytest.raises(TF1CheckpointError, match=r"a V1 checkpoint \(TF < 0\.12\)"):
        TF1Checkpoint(tmp_path / "old.ckpt")


@pytest.mark.parametrize("path", [3, None, b"model.ckpt"])
def test_a_path_of_another_type_is_named(path) -> None:
    """It was os.fspath's "expected str, bytes or os.PathLike object, not int"."""
    with pytest.raises(
        TypeError,
        match=r"^TF1Checkpoint: path must be a str or an os\.PathLike \(a checkpoint prefix, its "
        rf"\.index file or its folder\), got {type(path).__name__}$",
    ):
        TF1Checkpoint(path)  # type: ignore[arg-type]


def test_truncated_data_shard(tf1_copy) -> None:
    prefix = tf1_copy("basic_rnn")
    data = Path(f"{prefix}.data-00000-of-00001")
    size = data.stat().st_size
    with open(data, "r+b") as f:
        f.truncate(size - 100)
    ckpt = TF1Checkpoint(prefix)  # the index alone is fine
    last = max(ckpt.entries.values(), key=lambda e: e.offset)
    with pytest.raises(
        TF1CheckpointError,
        match=rf"{data.name} is truncated or the index is wrong: tensor '{last.name}' claims "
        rf"bytes \[{last.offset}, {size}\) \({last.size} bytes\), but the file has only "
        rf"{size - 100} bytes",
    ):
        ckpt.read(last.name)
    ckpt.read("Variable")  # tensors before the cut are intact


def test_flipped_byte_in_data_is_a_crc_mismatch(tf1_copy) -> None:
    prefix = tf1_copy("basic_rnn")
    ckpt = TF1Checkpoint(prefix)
    entry = ckpt.entries["rnn/basic_rnn_cell/kernel"]
    data = Path(f"{prefix}.data-00000-of-00001")
    with open(data, "r+b") as f:
        f.seek(entry.offset + 1234)
        byte = f.read(1)
        f.seek(entry.offset + 1234)
        f.write(bytes([byte[0] ^ 0x10]))
    with pytest.raises(
        TF1ChecksumError,
        match=r"crc32c mismatch for 'rnn/basic_rnn_cell/kernel' in .*data-00000-of-00001 "
        r"\(bytes \[\d+, \d+\)\): stored 0x[0-9a-f]{8}, computed 0x[0-9a-f]{8}; the data file "
        r"is corrupted",
    ):
        ckpt.read("rnn/basic_rnn_cell/kernel")
    ckpt.read("rnn/basic_rnn_cell/bias")
    ckpt.read("rnn/basic_rnn_cell/kernel", verify=False)  # explicitly unchecked: readable


def test_wrong_magic(tf1_copy) -> None:
    prefix = tf1_copy("gru")
    index = Path(f"{prefix}.index")
    raw = bytearray(index.read_bytes())
    raw[-1] ^= 0xFF
    index.write_bytes(bytes(raw))
    with pytest.raises(
        TF1CheckpointError,
        match=r"model\.ckpt\.index: bad magic number 0x244775248b80fb57 \(expected "
        r"0xdb4775248b80fb57\): not the \.index of a TensorFlow V2 checkpoint",
    ):
        TF1Checkpoint(prefix)


def test_not_an_index_at_all(tmp_path: Path) -> None:
    (tmp_path / "x.index").write_bytes(b"PK\x03\x04" + b"\0" * 100)
    with pytest.raises(TF1CheckpointError, match=r"bad magic number 0x0000000000000000"):
        TF1Checkpoint(tmp_path / "x")
    (tmp_path / "y.index").write_bytes(b"short")
    with pytest.raises(TF1CheckpointError, match=r"5 bytes, shorter than a table footer \(48\)"):
        TF1Checkpoint(tmp_path / "y")


def test_flipped_byte_in_index_is_a_block_crc_mismatch(tf1_copy) -> None:
    prefix = tf1_copy("gru")
    index = Path(f"{prefix}.index")
    raw = bytearray(index.read_bytes())
    raw[20] ^= 0x01  # inside the data block
    index.write_bytes(bytes(raw))
    with pytest.raises(TF1ChecksumError, match=r"data block at 0: block crc32c mismatch"):
        TF1Checkpoint(prefix)


def test_missing_shard(tf1_copy) -> None:
    prefix = tf1_copy("gru")
    os.remove(f"{prefix}.data-00000-of-00001")
    ckpt = TF1Checkpoint(prefix)
    with pytest.raises(
        TF1CheckpointError,
        match=r"missing data shard .*model\.ckpt\.data-00000-of-00001 \(tensor 'Variable'; "
        r"the index .* lists 1 shard\(s\)\)",
    ):
        ckpt.read("Variable")


def test_absurd_size_is_an_error_not_an_allocation(tmp_path: Path, bundle_writer) -> None:
    huge = (100_000, 100_000, 10)  # 4e11 bytes of float32: 400 GB
    nbytes = 4 * 100_000 * 100_000 * 10
    prefix = bundle_writer(
        tmp_path / "hostile",
        {"small": np.arange(4, dtype=np.float32)},
        entries={"huge": entry_proto(dtype=1, shape=huge, size=nbytes, crc=0)},
    )
    ckpt = TF1Checkpoint(prefix)
    assert ckpt.entries["huge"].size == nbytes
    tracemalloc.start()
    try:
        with pytest.raises(
            TF1CheckpointError,
            match=rf"tensor 'huge' claims bytes \[0, {nbytes}\) \({nbytes} bytes\), but the file "
            r"has only 16 bytes",
        ):
            ckpt.read("huge")
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < 1 << 20
    assert torch.equal(ckpt.read("small"), torch.arange(4, dtype=torch.float32))


def test_absurd_sizes_in_the_index_itself(tmp_path: Path, bundle_writer) -> None:
    ok = {"a": np.zeros(3, np.float32)}
    bad_size = entry_proto(dtype=1, shape=(3,), size=4, crc=0)
    bundle_writer(tmp_path / "s", ok, entries={"b": bad_size})
    with pytest.raises(TF1CheckpointError, match=r"tensor 'b': float32\[3\] needs 12 bytes, "):
        TF1Checkpoint(tmp_path / "s")
    bundle_writer(tmp_path / "h", ok, header=header_proto(num_shards=10**9))
    with pytest.raises(TF1CheckpointError, match=r"header claims 1000000000 data shards"):
        TF1Checkpoint(tmp_path / "h")
    bad_shard = entry_proto(dtype=1, shape=(1,), shard_id=7, size=4, crc=0)
    bundle_writer(tmp_path / "i", ok, entries={"b": bad_shard})
    with pytest.raises(TF1CheckpointError, match=r"tensor 'b' is in shard 7, but the checkpoint "):
        TF1Checkpoint(tmp_path / "i")
    negative = entry_proto(dtype=1, shape=(-1, 3), size=0, crc=0)
    bundle_writer(tmp_path / "n", ok, entries={"b": negative})
    with pytest.raises(TF1CheckpointError, match=r"dimension 0 is -1 \(unknown or negative\)"):
        TF1Checkpoint(tmp_path / "n")
    deep = entry_proto(dtype=1, shape=(1,) * 300, size=4, crc=0)
    bundle_writer(tmp_path / "d", ok, entries={"b": deep})
    with pytest.raises(TF1CheckpointError, match=r"more than 254 dimensions"):
        TF1Checkpoint(tmp_path / "d")
    overlong = b"\x2a" + b"\xff" * 12 + b"\x01"  # field 5 (size): a 14-byte varint
    bundle_writer(tmp_path / "v", ok, entries={"b": overlong})
    with pytest.raises(TF1CheckpointError, match=r"varint longer than 64 bits"):
        TF1Checkpoint(tmp_path / "v")
    cut = b"\x12\x7f\x12"  # field 2 (shape) claims 127 bytes, 1 follows
    bundle_writer(tmp_path / "c", ok, entries={"b": cut})
    with pytest.raises(TF1CheckpointError, match=r"field 2 claims 127 bytes, only 1 left"):
        TF1Checkpoint(tmp_path / "c")


def test_hostile_table_structure(tmp_path: Path) -> None:
    def index_with_block(contents: bytes) -> Path:
        handle_at = 0
        crc = mask(crc32c(contents + b"\0"))
        raw = contents + b"\0" + struct.pack("<I", crc)
        handle = bytes([handle_at, len(contents)]) if len(contents) < 128 else None
        assert handle is not None
        footer = (b"\0\0" + handle).ljust(40, b"\0") + struct.pack("<Q", 0xDB4775248B80FB57)
        path = tmp_path / "t.index"
        path.write_bytes(raw + footer)
        return tmp_path / "t"

    many_restarts = struct.pack("<I", 0) + struct.pack("<I", 1_000_000)
    with pytest.raises(
        TF1CheckpointError, match=r"index block: 1000000 restart points cannot fit in 8 bytes"
    ):
        TF1Checkpoint(index_with_block(many_restarts))
    # an index entry whose key shares 5 bytes with a previous key that does not exist
    bad_entry = bytes([5, 1, 0]) + b"k" + struct.pack("<II", 0, 1)
    with pytest.raises(TF1CheckpointError, match=r"entry shares 5 bytes of a 0-byte key"):
        TF1Checkpoint(index_with_block(bad_entry))
    # a block handle pointing far outside the file
    handle = b"\x80\x80\x80\x80\x10" + b"\x10"  # offset 2**32
    entry = bytes([0, 1, len(handle)]) + b"k" + handle + struct.pack("<II", 0, 1)
    with pytest.raises(
        TF1CheckpointError, match=r"data block at 4294967296 claims bytes \[4294967296, "
    ):
        TF1Checkpoint(index_with_block(entry))


def test_out_of_order_keys_and_missing_header(tmp_path: Path) -> None:
    ok_entry = entry_proto(dtype=1, shape=(), size=0, crc=None)
    (tmp_path / "o.index").write_bytes(
        table([(b"", header_proto()), (b"b", ok_entry), (b"a", ok_entry)])
    )
    with pytest.raises(TF1CheckpointError, match=r"keys out of order: b'a' after b'b'"):
        TF1Checkpoint(tmp_path / "o")
    (tmp_path / "m.index").write_bytes(table([(b"a", ok_entry)]))
    with pytest.raises(TF1CheckpointError, match=r"no header entry \(key ''\)"):
        TF1Checkpoint(tmp_path / "m")


def test_newer_format_and_compression_are_refused(tmp_path: Path, bundle_writer) -> None:
    ok = {"a": np.zeros(3, np.float32)}
    bundle_writer(tmp_path / "n", ok, header=header_proto(min_consumer=2))
    with pytest.raises(TF1CheckpointError, match=r"written by a newer TensorFlow"):
        TF1Checkpoint(tmp_path / "n")
    bundle_writer(tmp_path / "z", ok, compression=1)
    with pytest.raises(TF1CheckpointError, match=r"is snappy-compressed, which this reader does"):
        TF1Checkpoint(tmp_path / "z")


def test_unsupported_tensors_are_listed_but_not_read(tmp_path: Path, bundle_writer) -> None:
    entries = {
        "names": entry_proto(dtype=7, shape=(2,), size=10, crc=0),
        "part": entry_proto(dtype=1, shape=(4,), size=0, crc=None, sliced=True),
    }
    prefix = bundle_writer(tmp_path / "u", {"a": np.zeros(3, np.float32)}, entries=entries)
    ckpt = TF1Checkpoint(prefix)
    assert ckpt.entries["names"].dtype == "string" and ckpt.entries["part"].sliced
    assert [n for n, e in ckpt.entries.items() if e.readable] == ["a"]
    with pytest.raises(TF1CheckpointError, match=r"'names' has dtype string, which this reader"):
        ckpt.read("names")
    with pytest.raises(TF1CheckpointError, match=r"'part' is a partitioned \(sliced\) variable"):
        ckpt.read("part")


# ----------------------------------------------------------------------------- writer round trips
def test_written_bundles_round_trip_many_shards_and_big_endian(
    tmp_path: Path, bundle_writer
) -> None:
    rng = np.random.default_rng(0)
    tensors = {
        f"layer_{k:02d}/kernel": rng.standard_normal((k + 1, 3)).astype(np.float64)
        for k in range(40)  # enough keys for several restart points and shared prefixes
    }
    tensors["step"] = np.array(12345678901, dtype=np.int64)
    tensors["mask"] = np.array([True, False, True])
    tensors["half"] = np.array([1.5, -2.0], dtype=np.float16)
    bf16 = np.array([0x3FC0, 0xC000], dtype=np.uint16)  # 1.5, -2.0 as bfloat16 bits
    for big_endian in (False, True):
        prefix = bundle_writer(
            tmp_path / f"be{big_endian}" / "m",
            {**tensors, "bf": bf16},
            num_shards=3,
            big_endian=big_endian,
            dtypes={"bf": "bfloat16"},
        )
        ckpt = TF1Checkpoint(prefix)
        assert ckpt.num_shards == 3 and ckpt.endianness == ("big" if big_endian else "little")
        for name, value in tensors.items():
            assert np.array_equal(ckpt.read(name).numpy(), value), name
        assert ckpt.read("bf").tolist() == [1.5, -2.0]
