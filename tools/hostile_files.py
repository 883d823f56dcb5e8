"""Run the CLI on hostile and corrupt files; measure each run's peak memory against a baseline.

Each case writes one hostile file (a checkpoint whose config lies, a TF1 index claiming a huge
model, a gzip bomb, a 30 GB sparse IDX file, ...), runs the real CLI command on it in a fresh
process, and records the exit status, whether stderr holds a Python traceback, whether a
signal ended it, the last stderr line and the peak resident memory (``ru_maxrss`` from
``os.wait4``). The baseline of each command is the same command on a good file. Every row must
end with a clear error (exit 1 or 2, no traceback, no signal) and at most ``--limit-mb``
(default 300) above its baseline; the script exits 1 otherwise.

    python tools/hostile_files.py [--json results.json] [--only NAME ...]

Needs Fashion-MNIST in /usr/share/datasets/fashion-mnist (``make data``) for the data cases and
the committed TF1 fixtures. Numbers in docs/RELIABILITY.md come from this script.
"""

from __future__ import annotations

import argparse
import gzip
import json
import os
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from safetensors import safe_open
from safetensors.torch import save_file

ROOT = Path(__file__).resolve().parent.parent
sys.path[:0] = [str(ROOT), str(ROOT / "tests")]

from interop._tf1_bundle import FIXTURES, entry_proto, write_bundle  # noqa: E402

from rnnflow.interop.tf1_checkpoint import TF1Checkpoint  # noqa: E402

FASHION = Path("/usr/share/datasets/fashion-mnist")


@dataclass
class Case:
    category: str
    name: str
    command: str  # baseline key: "predict", "resume", "import", "list", "evaluate"
    make: Callable[[Path], list[str]]  # writes the hostile file under a folder, returns argv


# --------------------------------------------------------------------------- file editing
def rewrite(path: Path, *, tensors=None, meta=None, progress=None, config=None) -> None:
    with safe_open(str(path), "pt") as f:
        old_meta = f.metadata()
        old = {k: f.get_tensor(k) for k in f.keys()}
    new_meta = old_meta | (meta or {})
    for key, edit in (("progress", progress), ("config", config)):
        if edit is not None:
            new_meta[key] = json.dumps(edit(json.loads(old_meta[key])))
    save_file(old | (tensors or {}), str(path), new_meta)


def set_value(path: Path, name: str, value: float) -> None:
    with safe_open(str(path), "pt") as f:
        tensor = f.get_tensor(name).clone()
    tensor.view(-1)[0] = value
    rewrite(path, tensors={name: tensor})


def gzip_stream(path: Path, head: bytes, zeros: int) -> None:
    """``head`` then ``zeros`` zero bytes, gzip-compressed in streaming (nothing big in memory)."""
    with open(path, "wb") as raw, gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) as f:
        f.write(head)
        chunk = bytes(1 << 24)
        while zeros > 0:
            f.write(chunk[: min(zeros, len(chunk))])
            zeros -= len(chunk)


class Workspace:
    """The good files every case starts from: a small trained run, an unfinished copy of it,
    a test image, the TF1 fixture."""

    def __init__(self, folder: Path, python: str) -> None:
        self.folder = folder
        self.python = python
        self.run = folder / "good-run"
        subprocess.run(
            [python, "-m", "rnnflow", "train", "--dataset", "fashion-mnist", "--out",
             str(self.run), "--train-examples", "512", "--num-units", "16", "--threads", "1"],
            check=True, capture_output=True, env=env(),
        )  # fmt: skip
        self.unfinished = folder / "good-unfinished"
        shutil.copytree(self.run, self.unfinished)
        progress = {"step": 1, "examples": 128, "batch_in_epoch": 1, "finished": False}
        rewrite(self.unfinished / "checkpoint.safetensors", progress=lambda p: p | progress)
        from PIL import Image

        canvas = np.zeros((28, 28), np.uint8)
        canvas[6:22, 12:16] = 255
        self.image = folder / "digit.png"
        Image.fromarray(canvas).save(self.image)

    def copy_run(self, to: Path, unfinished: bool = False) -> Path:
        shutil.copytree(self.unfinished if unfinished else self.run, to)
        return to


def env() -> dict[str, str]:
    return dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")


# --------------------------------------------------------------------------- the cases
def cases(ws: Workspace) -> list[Case]:
    out: list[Case] = []

    def predict_case(name: str, edit: Callable[[Path], None]) -> None:
        def make(folder: Path) -> list[str]:
            run = ws.copy_run(folder / "run")
            edit(run / "best.safetensors")
            return ["predict", str(run), str(ws.image)]

        out.append(Case("checkpoint (predict)", name, "predict", make))

    predict_case(
        "6 KB best.safetensors, config num_units=20000",
        lambda p: rewrite(p, config=lambda c: c | {"num_units": 20000}),
    )
    predict_case(
        "config num_layers=10**6", lambda p: rewrite(p, config=lambda c: c | {"num_layers": 10**6})
    )
    predict_case(
        "config num_units=10**9", lambda p: rewrite(p, config=lambda c: c | {"num_units": 10**9})
    )

    def relabel(p: Path) -> None:
        data = p.read_bytes()
        entry = b'"model.cell.kernel":{"dtype":"F32"'
        p.write_bytes(data.replace(entry, entry.replace(b"F32", b"I32")))

    predict_case("float32 kernel relabelled int32 in the header", relabel)

    def nested(p: Path) -> None:
        header = b'{"a":' + b"[" * 200_000 + b"]" * 200_000 + b"}"
        p.write_bytes(len(header).to_bytes(8, "little") + header)

    predict_case("header nested 200,000 levels deep", nested)

    def sparse_tail(p: Path) -> None:
        with open(p, "r+b") as f:
            f.truncate(p.stat().st_size + (30 << 30))

    predict_case("30 GB sparse tail after the tensors", sparse_tail)
    predict_case("NaN in a weight", lambda p: set_value(p, "model.cell.bias", float("nan")))
    predict_case(
        "truncated to half", lambda p: p.write_bytes(p.read_bytes()[: p.stat().st_size // 2])
    )

    def resume_case(name: str, edit: Callable[[Path], None]) -> None:
        def make(folder: Path) -> list[str]:
            run = ws.copy_run(folder / "run", unfinished=True)
            edit(run / "checkpoint.safetensors")
            return ["train", "--resume", str(run), "--threads", "1"]

        out.append(Case("checkpoint (train --resume)", name, "resume", make))

    resume_case(
        "progress without 'step'",
        lambda p: rewrite(p, progress=lambda q: {k: v for k, v in q.items() if k != "step"}),
    )
    resume_case(
        "garbage in rng.torch",
        lambda p: rewrite(p, tensors={"rng.torch": torch.full((5056,), 7, dtype=torch.uint8)}),
    )
    resume_case(
        "exp_avg of the wrong shape",
        lambda p: rewrite(p, tensors={"optimizer.0.exp_avg": torch.zeros(3)}),
    )
    resume_case("negative exp_avg_sq", lambda p: set_value(p, "optimizer.0.exp_avg_sq", -1.0))
    resume_case(
        "config num_units=20000", lambda p: rewrite(p, config=lambda c: c | {"num_units": 20000})
    )

    def tf1_liar(units: int) -> Callable[[Path], list[str]]:
        def make(folder: Path) -> list[str]:
            claims = {"Variable": (28, units), "Variable_1": (units, 10), "Variable_2": (units,),
                      "Variable_3": (10,), "rnn/basic_rnn_cell/kernel": (2 * units, units),
                      "rnn/basic_rnn_cell/bias": (units,)}  # fmt: skip
            entries = {n: entry_proto(dtype=1, shape=s, size=4 * int(np.prod(s)), crc=0)
                       for n, s in claims.items()}  # fmt: skip
            prefix = write_bundle(folder / "liar" / "model.ckpt", {"pad": np.zeros(10, np.float32)},
                                  entries=entries)  # fmt: skip
            return ["import-tf1", str(prefix), "--preset", "tutorial", "--out", str(folder / "o"),
                    "--ignore", "pad"]  # fmt: skip

        return make

    out.append(
        Case("TF1 import", "index claims H=20000, data file 40 bytes", "import", tf1_liar(20000))
    )
    out.append(
        Case("TF1 import", "index claims H=10**6, data file 40 bytes", "import", tf1_liar(10**6))
    )

    def tf1_values(name: str, value: float) -> Callable[[Path], list[str]]:
        def make(folder: Path) -> list[str]:
            source = TF1Checkpoint(FIXTURES / "basic_rnn" / "model.ckpt")
            tensors = {n: source.read(n).numpy().copy() for n in source}
            tensors[name].reshape(-1)[0] = value
            prefix = write_bundle(folder / "bad" / "model.ckpt", tensors)
            return ["import-tf1", str(prefix), "--preset", "tutorial", "--out", str(folder / "o")]

        return make

    out.append(Case("TF1 import", "negative Adam_1", "import", tf1_values("Variable/Adam_1", -1.0)))
    out.append(
        Case("TF1 import", "NaN Adam slot", "import", tf1_values("Variable/Adam", float("nan")))
    )

    def tf1_flip(folder: Path) -> list[str]:
        target = folder / "flip"
        shutil.copytree(FIXTURES / "basic_rnn", target)
        data = target / "model.ckpt.data-00000-of-00001"
        raw = bytearray(data.read_bytes())
        raw[len(raw) // 2] ^= 1
        data.write_bytes(bytes(raw))
        return [
            "import-tf1",
            str(target / "model.ckpt"),
            "--preset",
            "tutorial",
            "--out",
            str(folder / "o"),
        ]

    out.append(Case("TF1 import", "one flipped bit in the data file", "import", tf1_flip))

    def tf1_huge(folder: Path) -> list[str]:
        huge = entry_proto(dtype=1, shape=(100_000, 100_000, 10), size=4 * 10**11, crc=0)
        prefix = write_bundle(folder / "h" / "model.ckpt", {"small": np.zeros(4, np.float32)},
                              entries={"huge": huge})  # fmt: skip
        return ["import-tf1", str(prefix), "--list", "--check"]

    out.append(
        Case("TF1 import", "index claims a 400 GB tensor (--list --check)", "list", tf1_huge)
    )

    def data_case(name: str, write: Callable[[Path], None]) -> None:
        def make(folder: Path) -> list[str]:
            data = folder / "data"
            data.mkdir()
            for f in (
                "t10k-labels-idx1-ubyte.gz",
                "train-images-idx3-ubyte.gz",
                "train-labels-idx1-ubyte.gz",
            ):
                os.symlink(FASHION / f, data / f)
            write(data)
            return ["evaluate", str(ws.run), "--data-dir", str(data)]

        out.append(Case("dataset files (evaluate)", name, "evaluate", make))

    def header(n: int) -> bytes:
        return bytes([0, 0, 8, 3]) + b"".join(d.to_bytes(4, "big") for d in (n, 28, 28))

    data_case(
        "gzip bomb: header declares 2,600,000 images (2 GB), 2 GB of zeros",
        lambda d: gzip_stream(d / "t10k-images-idx3-ubyte.gz", header(2_600_000), 2_600_000 * 784),
    )
    data_case(
        "gzip bomb: the real header, then 2 GB of trailing zeros",
        lambda d: gzip_stream(d / "t10k-images-idx3-ubyte.gz", header(10_000), 2 << 30),
    )

    def sparse_idx(d: Path) -> None:
        path = d / "t10k-images-idx3-ubyte"
        with gzip.open(FASHION / "t10k-images-idx3-ubyte.gz") as f:
            path.write_bytes(f.read())
        with open(path, "r+b") as f:
            f.truncate(30 << 30)

    data_case("30 GB sparse IDX file (the real header)", sparse_idx)
    data_case(
        "truncated .gz",
        lambda d: (d / "t10k-images-idx3-ubyte.gz").write_bytes(
            (FASHION / "t10k-images-idx3-ubyte.gz").read_bytes()[:100_000]
        ),
    )
    return out


BASELINES: dict[str, Callable[[Workspace, Path], list[str]]] = {
    "predict": lambda ws, f: ["predict", str(ws.run), str(ws.image)],
    "resume": lambda ws, f: ["train", "--resume", str(ws.copy_run(f / "run", unfinished=True)),
                             "--threads", "1"],
    "import": lambda ws, f: ["import-tf1", str(FIXTURES / "basic_rnn" / "model.ckpt"), "--preset",
                             "tutorial", "--out", str(f / "o")],
    "list": lambda ws, f: ["import-tf1", str(FIXTURES / "basic_rnn" / "model.ckpt"), "--list",
                           "--check"],
    "evaluate": lambda ws, f: ["evaluate", str(ws.run), "--data-dir", str(FASHION)],
}  # fmt: skip


def measure(python: str, argv: list[str], timeout: float = 600) -> dict[str, object]:
    """Run ``python -m rnnflow argv``; exit status, signal, traceback, last line, peak RSS."""
    with tempfile.TemporaryFile() as err:
        process = subprocess.Popen([python, "-m", "rnnflow", *argv], stdout=subprocess.DEVNULL,
                                   stderr=err, env=env())  # fmt: skip
        try:
            _, status, usage = os.wait4(process.pid, 0)
        finally:
            process.returncode = 0  # reaped by wait4
        err.seek(0)
        text = err.read().decode(errors="replace")
    signal = os.WTERMSIG(status) if os.WIFSIGNALED(status) else None
    code = os.WEXITSTATUS(status) if os.WIFEXITED(status) else None
    lines = [line for line in text.splitlines() if line.strip() and "\r" not in line]
    return {
        "exit": code,
        "signal": signal,
        "traceback": "Traceback (most recent call last)" in text,
        "message": (lines[-1] if lines else "")[:300],
        "peak_mb": usage.ru_maxrss / 1024,
    }


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--json", help="write the results here")
    parser.add_argument("--only", nargs="*", help="run the cases whose name contains one of these")
    parser.add_argument("--limit-mb", type=float, default=300.0)
    args = parser.parse_args()
    python = sys.executable
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        ws = Workspace(root / "ws", python)
        rows, baselines = [], {}
        for index, case in enumerate(cases(ws)):
            if args.only and not any(s in case.name for s in args.only):
                continue
            if case.command not in baselines:
                folder = root / f"base-{case.command}"
                folder.mkdir()
                baselines[case.command] = measure(python, BASELINES[case.command](ws, folder))
            folder = root / f"case-{index}"
            folder.mkdir()
            result = measure(python, case.make(folder))
            shutil.rmtree(folder, ignore_errors=True)  # sparse and bomb files go at once
            base = baselines[case.command]
            result |= {"category": case.category, "case": case.name, "command": case.command,
                       "baseline_mb": base["peak_mb"]}  # fmt: skip
            result["over_baseline_mb"] = result["peak_mb"] - base["peak_mb"]  # type: ignore[operator]
            result["pass"] = (result["exit"] in (1, 2) and not result["traceback"]
                              and result["signal"] is None
                              and result["over_baseline_mb"] <= args.limit_mb)  # fmt: skip
            rows.append(result)
            print(json.dumps(result), flush=True)
    print("\n| category | case | exit | peak MB (baseline) | message |\n|---|---|---|---|---|")
    for r in rows:
        print(f"| {r['category']} | {r['case']} | {r['exit']} | {r['peak_mb']:.0f} "
              f"({r['baseline_mb']:.0f}) | {str(r['message'])[:160]} |")  # fmt: skip
    if args.json:
        Path(args.json).write_text(json.dumps({"baselines": baselines, "cases": rows}, indent=2))
    failed = [r for r in rows if not r["pass"]]
    print(f"\n{len(rows) - len(failed)}/{len(rows)} cases passed (limit {args.limit_mb:g} MB)")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
