"""Builds and loads the compiled step loops (``csrc/loops.cpp``) at first use.

``loops()`` returns the ``torch.ops.rnnflow_loops`` namespace, or None when the compiled loops
are unavailable, in which case ``_fused_kernels`` runs its Python loops (the same function; the
parity tests run both). Unavailable means: ``RNNFLOW_NO_EXT=1`` is set (checked at every call),
no C++ compiler was found, or the build or the load failed; the reason is logged once (INFO) and
kept in ``status()``.

The build is one ``c++`` invocation (no ninja, no setuptools) against the installed torch's
headers and libraries, ``-O3 -march=native`` (and ``-fopenmp`` on Linux), into the torch
extensions cache (``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``) under a name that
hashes the source, torch's version, the compiler, its flags and the CPU model, so an edit, a
torch upgrade or another machine sharing the cache rebuilds. The shared library is written to a
temporary name and renamed into place, so concurrent first uses both succeed. Build time here:
10-12 s, once.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

_log = logging.getLogger(__name__)
_SOURCE = Path(__file__).resolve().parent / "csrc" / "loops.cpp"
_NAMESPACE = "rnnflow_loops"
_FLAGS = ["-O3", "-march=native", "-std=c++20", "-shared", "-fPIC", "-w"]
# OpenMP lets the packed step GEMM split its panels over torch's threads (at::parallel_for is
# inline); torch's Linux wheels use GCC's libgomp, the runtime -fopenmp links.
if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
    _FLAGS.append("-fopenmp")
_state: dict[str, Any] = {}


def disabled() -> bool:
    """Whether ``RNNFLOW_NO_EXT`` asks for the Python loops."""
    return os.environ.get("RNNFLOW_NO_EXT", "") not in ("", "0")


def loops() -> Any | None:
    """The compiled loops (``torch.ops.rnnflow_loops``), built on first use; None if unavailable."""
    if disabled():
        return None
    if "ops" not in _state:
        try:
            _state["ops"], _state["reason"] = _load(), ""
        except Exception as exc:  # any failure means: use the Python loops
            _state["ops"], _state["reason"] = None, f"{type(exc).__name__}: {exc}"
            _log.info("compiled step loops unavailable, using the Python loops (%s)", exc)
    return _state["ops"]


def status() -> tuple[bool, str]:
    """``(True, "")`` when the compiled loops are in use, else ``(False, why not)``."""
    if disabled():
        return False, "RNNFLOW_NO_EXT is set"
    ops = loops()
    return (ops is not None), _state.get("reason", "")


def _cpu_model() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith(("model name", "flags")):
                return line
    except OSError:
        pass
    import platform

    return platform.processor()


def _library_path(cxx: str) -> Path:
    key = hashlib.sha256()
    for part in (_SOURCE.read_bytes(), torch.__version__.encode(), cxx.encode()):
        key.update(part)
    key.update(" ".join(_FLAGS).encode())
    key.update(_cpu_model().encode())
    key.update(sys.version.encode())
    root = os.environ.get("TORCH_EXTENSIONS_DIR") or Path.home() / ".cache" / "torch_extensions"
    return Path(root) / "rnnflow_loops" / f"loops_{key.hexdigest()[:16]}.so"


def _build(cxx: str, target: Path) -> None:
    from torch.utils import cpp_extension

    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = target.with_name(f"{target.stem}.{os.getpid()}.tmp.so")
    abi = int(torch._C._GLIBCXX_USE_CXX11_ABI)
    cmd = [cxx, *_FLAGS, f"-D_GLIBCXX_USE_CXX11_ABI={abi}"]
    cmd += [f"-I{p}" for p in cpp_extension.include_paths()]
    cmd += [str(_SOURCE), "-o", str(tmp)]
    cmd += [f"-L{p}" for p in cpp_extension.library_paths()]
    cmd += [f"-Wl,-rpath,{p}" for p in cpp_extension.library_paths()]
    cmd += ["-lc10", "-ltorch_cpu"]
    start = time.perf_counter()
    done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode != 0:
        tmp.unlink(missing_ok=True)
        raise RuntimeError(f"{cxx} failed ({done.returncode}): {done.stderr.strip()[-2000:]}")
    os.replace(tmp, target)
    _log.info("built %s in %.1f s", target, time.perf_counter() - start)


def _load() -> Any:
    cxx = os.environ.get("CXX", "c++")
    if shutil.which(cxx) is None:
        raise RuntimeError(f"no C++ compiler ({cxx!r} not found)")
    target = _library_path(cxx)
    if not target.exists():
        _build(cxx, target)
    torch.ops.load_library(str(target))
    return getattr(torch.ops, _NAMESPACE)
