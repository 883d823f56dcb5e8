"""Fuzzing rnnflow's file readers: seed files written by rnnflow (or by TensorFlow, for the TF1
fixtures), hypothesis strategies that mutate them (bytes, and the fields each format declares),
and a persistent worker subprocess (``_worker.py``) that runs the readers under an address-space
limit. Used by ``test_fuzz_readers.py`` (a short run in the suite) and ``tools/fuzz_readers.py``
(a long run with a case count).
"""

from __future__ import annotations

import gzip
import io
import json
import os
import select
import subprocess
import sys
from collections import Counter
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any

import numpy as np
from hypothesis import strategies as st

TESTS = Path(__file__).resolve().parent.parent
ROOT = TESTS.parent
KINDS = ("checkpoint", "idx", "tf1", "image", "metrics")
CASE_TIMEOUT = 120.0  # seconds one case may take before it counts as a hang

# Integers that break readers: zero, one, sign and width boundaries, "huge".
INTERESTING_INTS = [0, 1, 2, 3, 7, 28, 255, 256, 65535, 2**31 - 1, 2**31, 2**32 - 1, 2**32,
                    10**6, 10**9, 2**53, 2**63 - 1, 2**64 - 1, -1, -(2**31), -(2**63)]  # fmt: skip
interesting_int = st.sampled_from(INTERESTING_INTS) | st.integers(-1000, 10**6)
json_leaf = (
    st.none()
    | st.booleans()
    | interesting_int
    | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8)
)
json_value = st.recursive(
    json_leaf,
    lambda inner: (
        st.lists(inner, max_size=3) | st.dictionaries(st.text(max_size=6), inner, max_size=3)
    ),
    max_leaves=6,
)

# --------------------------------------------------------------------------- byte mutations
byte_op = st.one_of(
    st.tuples(st.just("flip"), st.floats(0, 1, exclude_max=True), st.integers(0, 7)),
    st.tuples(st.just("set"), st.floats(0, 1, exclude_max=True), st.integers(0, 255)),
    st.tuples(st.just("truncate"), st.floats(0, 1, exclude_max=True), st.just(0)),
    st.tuples(st.just("insert"), st.floats(0, 1), st.binary(min_size=1, max_size=16)),
    st.tuples(
        st.just("int"),
        st.floats(0, 1, exclude_max=True),
        st.tuples(st.sampled_from([4, 8]), st.sampled_from(["little", "big"]), interesting_int),
    ),
)


def apply_bytes(data: bytes, ops: list[tuple[str, float, Any]]) -> bytes:
    out = bytearray(data)
    for op, where, arg in ops:
        at = min(int(where * len(out)), max(len(out) - 1, 0))
        if op == "flip" and out:
            out[at] ^= 1 << arg
        elif op == "set" and out:
            out[at] = arg
        elif op == "truncate":
            del out[at:]
        elif op == "insert":
            out[at:at] = arg
        elif op == "int":
            width, order, value = arg
            out[at : at + width] = (value % 2 ** (8 * width)).to_bytes(width, order)
    return bytes(out)


# --------------------------------------------------------------------------- seeds
@dataclass
class Seeds:
    """The files every mutation starts from, written once into ``folder``."""

    folder: Path
    files: dict[str, dict[str, bytes]] = field(default_factory=dict)  # kind -> name -> bytes
    tf1_tensors: dict[str, dict[str, np.ndarray]] = field(default_factory=dict)


def make_seeds(folder: Path) -> Seeds:
    import torch
    from PIL import Image

    from rnnflow.tasks.image import build_model
    from rnnflow.training import save_checkpoint
    from rnnflow.training.config import TrainConfig

    folder.mkdir(parents=True, exist_ok=True)
    seeds = Seeds(folder)
    torch.manual_seed(0)
    ckpts: dict[str, bytes] = {}
    for cell in ("lstm", "gru"):
        config = replace(TrainConfig(), cell=cell, num_units=4, batch_size=4, train_examples=8)
        model = build_model(config)
        opt = torch.optim.Adam(model.parameters())
        model(torch.rand(2, 28, 28)).sum().backward()
        opt.step()
        rng = {"torch": torch.get_rng_state(), "augment": torch.Generator().get_state()}
        progress = {"step": 1, "examples": 4, "epoch": 0, "batch_in_epoch": 1}
        for name, extra in (("checkpoint", {"optimizer": opt, "rng": rng}), ("best", {})):
            path = folder / f"{cell}-{name}.safetensors"
            save_checkpoint(path, model=model, config=config, progress=progress, **extra)
            ckpts[path.name] = path.read_bytes()
    seeds.files["checkpoint"] = ckpts

    def idx(array: np.ndarray, code: int) -> bytes:
        dims = b"".join(d.to_bytes(4, "big") for d in array.shape)
        return (
            bytes([0, 0, code, array.ndim])
            + dims
            + array.astype(array.dtype.newbyteorder(">")).tobytes()
        )

    images = np.random.default_rng(0).integers(0, 256, (5, 4, 3), dtype=np.uint8)
    raw = {"images-idx3": idx(images, 0x08), "labels-idx1": idx(np.arange(6, dtype=np.uint8), 0x08)}
    raw["floats-idx2"] = idx(np.linspace(0, 1, 6, dtype=np.float32).reshape(2, 3), 0x0D)
    seeds.files["idx"] = raw | {f"{k}.gz": gzip.compress(v, mtime=0) for k, v in raw.items()}

    from interop._tf1_bundle import FIXTURES

    from rnnflow.interop.tf1_checkpoint import TF1Checkpoint

    for model in ("basic_rnn", "gru"):
        source = TF1Checkpoint(FIXTURES / model / "model.ckpt")
        seeds.tf1_tensors[model] = {n: source.read(n).numpy() for n in source}

    canvas = np.zeros((28, 28), np.uint8)
    canvas[6:22, 12:16] = 255  # a "1"
    pictures = {}
    for fmt in ("PNG", "JPEG", "GIF", "BMP"):
        buf = io.BytesIO()
        Image.fromarray(255 - canvas).save(buf, format=fmt)
        pictures[f"digit.{fmt.lower()}"] = buf.getvalue()
    seeds.files["image"] = pictures

    lines = []
    for step in range(1, 6):
        lines.append({"kind": "train", "step": step, "examples": 4 * step, "loss": 2.3 / step,
                      "accuracy": 0.1 * step, "lr": 1e-3})  # fmt: skip
        lines.append({"kind": "val", "step": step, "examples": 4 * step, "loss": 2.0 / step,
                      "accuracy": 0.1 * step})  # fmt: skip
    lines.append({"kind": "test", "accuracy": 0.5, "loss": 1.0})
    seeds.files["metrics"] = {
        "metrics.jsonl": "".join(json.dumps(r) + "\n" for r in lines).encode()
    }
    return seeds


# --------------------------------------------------------------------------- per-format mutations
def _safetensors_parts(data: bytes) -> tuple[dict[str, Any], bytes]:
    n = int.from_bytes(data[:8], "little")
    return json.loads(data[8 : 8 + n]), data[8 + n :]


def _safetensors_join(header: dict[str, Any], body: bytes) -> bytes:
    text = json.dumps(header, allow_nan=True).encode()
    return len(text).to_bytes(8, "little") + text + body


CONFIG_KEYS = ["cell", "num_units", "num_layers", "bidirectional", "projection_size", "dropout",
               "lr", "batch_size", "steps", "forget_bias", "init", "ema_decay", "grad_clip",
               "weight_decay", "dataset", "seed"]  # fmt: skip
PROGRESS_KEYS = ["step", "examples", "epoch", "batch_in_epoch", "best_step", "finished"]

checkpoint_field = st.one_of(
    st.tuples(st.just("meta"), st.sampled_from(["config", "progress", "optimizer"]),
              st.sampled_from([*CONFIG_KEYS, *PROGRESS_KEYS, "param_groups", "scalars"]),
              json_value),
    st.tuples(st.just("tensor"), st.integers(0, 40),
              st.sampled_from(["dtype", "shape", "data_offsets"]),
              st.sampled_from(["F32", "I32", "F16", "U8", "BOOL", "F64", "X"])
              | st.lists(interesting_int, max_size=3)),
    st.tuples(st.just("value"), st.integers(0, 40), st.integers(0, 10**6),
              st.sampled_from([float("nan"), float("inf"), -1.0, 1e30, 0.0])),
    st.tuples(st.just("meta-raw"), st.sampled_from(["config", "progress", "optimizer", "format",
                                                    "format_version"]), st.just(""), json_value),
)  # fmt: skip


def mutate_checkpoint(data: bytes, fields: list[tuple], ops: list[tuple]) -> bytes:
    header, body = _safetensors_parts(data)
    body = bytearray(body)
    meta = header["__metadata__"]
    names = sorted(k for k in header if k != "__metadata__")
    for kind, a, b, c in fields:
        if kind == "meta":
            if a not in meta:
                continue
            value = json.loads(meta[a])
            if isinstance(value, dict):
                value[b] = c
            meta[a] = json.dumps(value, allow_nan=True)
        elif kind == "meta-raw":
            meta[a] = json.dumps(c, allow_nan=True)
        elif kind == "tensor":
            header[names[a % len(names)]][b] = c
        elif kind == "value":
            info = header[names[a % len(names)]]
            offsets = info.get("data_offsets")
            if not (isinstance(offsets, list) and len(offsets) == 2
                    and all(type(o) is int for o in offsets)):  # fmt: skip
                continue  # an earlier edit broke it
            start, end = offsets
            if info.get("dtype") == "F32" and len(body) >= end > start >= 0:
                at = start + 4 * (b % ((end - start) // 4))
                body[at : at + 4] = np.float32(c).tobytes()
    return apply_bytes(_safetensors_join(header, bytes(body)), ops)


idx_field = st.tuples(
    st.sampled_from(["magic0", "magic1", "code", "ndim", "dim0", "dim1", "payload", "gzip"]),
    interesting_int,
)


def mutate_idx(data: bytes, fields: list[tuple[str, int]], ops: list[tuple]) -> bytes:
    compressed = data[:2] == b"\x1f\x8b"
    raw = bytearray(gzip.decompress(data) if compressed else data)
    for name, value in fields:
        if name in ("magic0", "magic1", "code", "ndim"):
            at = ["magic0", "magic1", "code", "ndim"].index(name)
            if at < len(raw):
                raw[at] = value % 256
        elif name in ("dim0", "dim1"):
            at = 4 + 4 * (name == "dim1")
            raw[at : at + 4] = (value % 2**32).to_bytes(4, "big")
        elif name == "payload":  # grow or cut the payload
            raw = raw[: max(value, 0)] if value < len(raw) else raw + bytes(min(value, 1 << 16))
        elif name == "gzip":
            compressed = not compressed
    out = bytes(raw)
    if compressed:
        out = gzip.compress(out, mtime=0)
    return apply_bytes(out, ops)


tf1_field = st.one_of(
    st.tuples(st.just("entry"), st.integers(0, 40),
              st.sampled_from(["dtype", "shape", "shard_id", "offset", "size", "crc"]),
              st.lists(interesting_int, min_size=1, max_size=3)),
    st.tuples(st.just("value"), st.integers(0, 40), st.integers(0, 10**6),
              st.sampled_from([float("nan"), float("inf"), -1.0, 1e30, 0.0])),
    st.tuples(st.just("header"), st.sampled_from(["num_shards", "endianness", "min_consumer"]),
              st.just(""), st.lists(interesting_int, min_size=1, max_size=1)),
    st.tuples(st.just("drop"), st.integers(0, 40), st.just(""), st.just([])),
)  # fmt: skip


def write_tf1(prefix: Path, tensors: dict[str, np.ndarray], fields: list[tuple], ops: list[tuple],
              where: str) -> Path:  # fmt: skip
    """A bundle of ``tensors`` with its entries/header/values mutated (crc32c kept right for the
    values, so the reader's own checks run), then ``ops`` applied to the index or data file."""
    from interop._tf1_bundle import DTYPE_CODES, entry_proto, header_proto, write_bundle

    from rnnflow.interop._crc32c import crc32c, mask

    tensors = {k: v.copy() for k, v in tensors.items()}
    names = sorted(tensors)
    entries: dict[str, bytes] = {}
    header = None
    layout: dict[str, dict[str, Any]] = {}
    offset = 0
    for name in sorted(tensors):
        array = tensors[name]
        layout[name] = {"dtype": DTYPE_CODES[str(array.dtype)], "shape": array.shape,
                        "offset": offset, "size": array.nbytes, "shard_id": 0}  # fmt: skip
        offset += array.nbytes
    for kind, a, b, c in fields:
        if kind == "value":
            array = tensors.get(names[a % len(names)], np.zeros(0))  # dropped: nothing to do
            if array.size and array.dtype == np.float32:
                array.reshape(-1)[b % array.size] = c
        elif kind == "drop" and len(tensors) > 1:
            name = names[a % len(names)]
            if name in tensors:
                del tensors[name]
        elif kind == "entry":
            name = names[a % len(names)]
            fields_now = layout[name]
            if b == "shape":
                fields_now["shape"] = tuple(abs(v) % 2**40 for v in c)
            else:
                fields_now[b] = c[0]
            entries[name] = name
        elif kind == "header":
            value = c[0]
            kwargs = {"num_shards": 1, "endianness": 0, "min_consumer": 0} | {a: value % 2**63}
            header = header_proto(**kwargs)
    # write in the bundle's own order (sorted names), as write_bundle does
    protos = {}
    for name in entries:
        if name not in tensors:
            continue
        f = layout[name]
        raw = tensors[name].astype(tensors[name].dtype.newbyteorder("<")).tobytes()
        protos[name] = entry_proto(
            dtype=f["dtype"] % 2**31, shape=f["shape"], shard_id=f["shard_id"] % 2**63,
            offset=f["offset"] % 2**63, size=f["size"] % 2**63,
            crc=f.get("crc", mask(crc32c(raw))) % 2**32,
        )  # fmt: skip
    ordered = {k: tensors[k] for k in sorted(tensors)}
    prefix = write_bundle(prefix, ordered, entries=protos, header=header)
    target = Path(f"{prefix}.index") if where == "index" else Path(f"{prefix}.data-00000-of-00001")
    if ops:
        target.write_bytes(apply_bytes(target.read_bytes(), ops))
    return prefix


metrics_field = st.tuples(st.integers(0, 20), st.sampled_from(["replace", "edit", "raw"]),
                          st.sampled_from(["step", "examples", "loss", "accuracy", "kind"]),
                          json_value)  # fmt: skip


def mutate_metrics(data: bytes, fields: list[tuple], ops: list[tuple]) -> bytes:
    lines = data.decode().splitlines()
    for index, how, key, value in fields:
        i = index % len(lines)
        if how == "replace":
            lines[i] = json.dumps(value, allow_nan=True)
        elif how == "edit":
            try:
                record = json.loads(lines[i])
            except ValueError:  # an earlier raw edit
                continue
            if isinstance(record, dict):
                record[key] = value
                lines[i] = json.dumps(record, allow_nan=True)
        else:
            lines[i] = str(value)
    return apply_bytes(("\n".join(lines) + "\n").encode(), ops)


# One case = (seed name, structured fields, byte ops): a strategy per kind.
def case_strategy(kind: str, seeds: Seeds) -> st.SearchStrategy:
    ops = st.lists(byte_op, max_size=2)
    if kind == "tf1":
        return st.tuples(
            st.sampled_from(sorted(seeds.tf1_tensors)),
            st.lists(tf1_field, max_size=3),
            st.lists(byte_op, max_size=1),
            st.sampled_from(["index", "data"]),
        )
    fields = {"checkpoint": checkpoint_field, "idx": idx_field, "metrics": metrics_field}
    return st.tuples(
        st.sampled_from(sorted(seeds.files[kind])),
        st.lists(fields[kind], max_size=3) if kind in fields else st.just([]),
        ops if kind != "image" else st.lists(byte_op, min_size=1, max_size=3),
    )


def write_case(kind: str, seeds: Seeds, case: tuple, folder: Path, index: int) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    if kind == "tf1":
        model, fields, ops, where = case
        return write_tf1(folder / f"c{index}" / "model.ckpt", seeds.tf1_tensors[model], fields,
                         ops, where)  # fmt: skip
    name, fields, ops = case
    data = seeds.files[kind][name]
    if kind == "checkpoint":
        data = mutate_checkpoint(data, fields, ops)
    elif kind == "idx":
        data = mutate_idx(data, fields, ops)
    elif kind == "metrics":
        data = mutate_metrics(data, fields, ops)
    else:
        data = apply_bytes(data, ops)
    path = folder / f"c{index}-{name}"
    path.write_bytes(data)
    return path


# --------------------------------------------------------------------------- the worker
class Worker:
    """A long-lived ``_worker.py`` subprocess; restarted after a crash."""

    def __init__(self, limit_mb: int = 1024) -> None:
        self.limit_mb = limit_mb
        self.process: subprocess.Popen[str] | None = None

    def start(self) -> None:
        env = dict(os.environ, PYTHONPATH=os.pathsep.join([str(ROOT), str(TESTS)]),
                   OMP_NUM_THREADS="1", MPLBACKEND="Agg")  # fmt: skip
        self.process = subprocess.Popen(
            [sys.executable, str(Path(__file__).with_name("_worker.py")), "--limit-mb",
             str(self.limit_mb)],
            stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
            env=env,
        )  # fmt: skip
        ready = self._line(timeout=300)
        if ready is None or not json.loads(ready).get("ready"):
            raise RuntimeError(f"fuzz worker did not start: {self._stderr()}")

    def _line(self, timeout: float) -> str | None:
        assert self.process is not None and self.process.stdout is not None
        ready, _, _ = select.select([self.process.stdout], [], [], timeout)
        if not ready:
            return None
        line = self.process.stdout.readline()
        return line or None

    def _stderr(self) -> str:
        if self.process is None or self.process.stderr is None:
            return ""
        try:
            return self.process.stderr.read()[-2000:]
        except (OSError, ValueError):
            return ""

    def run(self, kind: str, path: Path) -> dict[str, Any]:
        if self.process is None or self.process.poll() is not None:
            self.start()
        assert self.process is not None and self.process.stdin is not None
        self.process.stdin.write(json.dumps({"kind": kind, "path": str(path)}) + "\n")
        self.process.stdin.flush()
        line = self._line(CASE_TIMEOUT)
        if line is None:
            self.process.kill()
            code = self.process.wait()
            what = "hang" if code == -9 else "crash"
            outcome = {"outcome": "bug", "type": what, "message": f"exit status {code}"}
            outcome["traceback"] = self._stderr()
            self.close()
            return outcome
        return json.loads(line)

    def close(self) -> None:
        process, self.process = self.process, None
        if process is None:
            return
        if process.poll() is None:
            process.stdin.close()  # type: ignore[union-attr]
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                process.kill()
                process.wait()
        for pipe in (process.stdin, process.stdout, process.stderr):
            if pipe is not None:
                pipe.close()


def run_batch(worker: Worker, kind: str, seeds: Seeds, cases: list[tuple], folder: Path, *,
              tally: Counter[str] | None = None) -> list[tuple[tuple, dict[str, Any]]]:  # fmt: skip
    """Write and read every case; returns (case, outcome) for each outcome that is a bug.
    ``tally`` counts outcomes: ``ok``, ``error`` (a clear rnnflow error) and ``bug``."""
    bugs = []
    for index, case in enumerate(cases):
        path = write_case(kind, seeds, case, folder, index)
        outcome = worker.run(kind, path)
        if tally is not None:
            tally[outcome["outcome"]] += 1
        if outcome["outcome"] == "bug":
            bugs.append((case, outcome))
    return bugs


def describe(bugs: list[tuple[tuple, dict[str, Any]]]) -> str:
    return "\n".join(
        f"- case {case!r}:\n  {o['type']}: {o.get('message', '')}\n  at {o.get('where', '?')}\n"
        + o.get("traceback", "")[-800:]
        for case, o in bugs
    )


__all__ = ["KINDS", "Seeds", "Worker", "case_strategy", "describe", "make_seeds", "run_batch"]
