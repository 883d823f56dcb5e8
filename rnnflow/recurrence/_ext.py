"""Builds and loads the compiled step loops (``csrc/loops.cpp``) at first use.

``loops()`` returns the ``torch.ops.rnnflow_loops`` namespace, or None when the compiled loops
are unavailable, in which case ``_fused_kernels`` runs its Python loops (the same function; the
parity tests run both). Unavailable means: ``RNNFLOW_NO_EXT=1`` is set (checked at every call),
no C++ compiler was found, or the build or the load failed; the reason is logged once (INFO) and
kept in ``status()``.

The build is one ``c++`` invocation (no ninja, no setuptools) against the installed torch's
headers and libraries, ``-O3`` for the baseline of the architecture (no ``-march=native``: a
library built on one machine runs on any other; ``-fopenmp`` on Linux), into the torch
extensions cache (``$TORCH_EXTENSIONS_DIR`` or ``~/.cache/torch_extensions``) under a name that
hashes the sources, torch's version, the compiler and its flags, so an edit or a torch upgrade
rebuilds. The shared library is written to a temporary name and renamed into place, so
concurrent first uses both succeed.

Kernel variants: the library carries the packed GEMM and the loops for AVX-512, AVX2 + FMA and
portable C++ ("generic": 128-bit generic vectors, SSE2 on x86-64, NEON on aarch64; x86 with GCC
gets all three, other builds the generic one only) and runs the widest the CPU supports
(cpuid). ``RNNFLOW_ISA=avx512|avx2|generic`` (read at every call, like
``RNNFLOW_NO_EXT``) forces one, so the narrower ones are tested on wide CPUs; an unknown name or
one the CPU lacks raises ``ValueError``. ``isa()`` names the variant running. The avx512
variant's LSTM loop also has a bfloat16 step GEMM (``csrc/bf16_gemm.h``, AVX512-BF16
``vdpbf16ps``, its functions under their own target attribute and run only where cpuid reports
AVX512-BF16: ``ops.bf16_supported()``); compilers without AVX512-BF16 support build stubs.
"""

from __future__ import annotations

import hashlib
import logging
import os
import platform
import shutil
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import torch

_log = logging.getLogger(__name__)
_CSRC = Path(__file__).resolve().parent / "csrc"
_SOURCE = _CSRC / "loops.cpp"  # includes loops_isa.h once per kernel variant
_NAMESPACE = "rnnflow_loops"
# -fno-trapping-math: without it GCC does not vectorise the gate maths' clamps (the exp's range
# reduction) for AVX2 or SSE2, only with AVX-512's masks (checked with -fopt-info-vec); the
# loops never rely on floating-point exceptions.
_FLAGS = ["-O3", "-fno-trapping-math", "-std=c++20", "-shared", "-fPIC", "-w"]
ISAS = ("avx512", "avx2", "generic")  # the kernel variants, widest first
# OpenMP lets the packed step GEMM split its panels over torch's threads (at::parallel_for is
# inline); torch's Linux wheels use GCC's libgomp, the runtime -fopenmp links.
if sys.platform.startswith("linux") and torch.backends.openmp.is_available():
    _FLAGS.append("-fopenmp")
_state: dict[str, Any] = {}


def disabled() -> bool:
    """Whether ``RNNFLOW_NO_EXT`` asks for the Python loops."""
    return os.environ.get("RNNFLOW_NO_EXT", "") not in ("", "0")


def loops() -> Any | None:
    """The compiled loops (``torch.ops.rnnflow_loops``), built on first use; None if unavailable.

    Raises:
        ValueError: ``RNNFLOW_ISA`` names no kernel variant, or one this CPU cannot run.
    """
    # Called several times per layer call (every buffer, GEMM and loop asks): the two reads of
    # the environment inline, and the variant set again only when RNNFLOW_ISA changed.
    environ = os.environ
    if environ.get("RNNFLOW_NO_EXT", "") not in ("", "0"):  # disabled()
        return None
    if "ops" not in _state:
        try:
            _state["ops"], _state["reason"] = _load(), ""
        except Exception as exc:  # any failure means: use the Python loops
            _state["ops"], _state["reason"] = None, f"{type(exc).__name__}: {exc}"
            _log.info("compiled step loops unavailable, using the Python loops (%s)", exc)
    ops = _state["ops"]
    if ops is not None:
        wanted = environ.get("RNNFLOW_ISA", "")
        if _state.get("isa_env") != wanted:
            _select_isa(ops, wanted)
    return ops


def check_isa_name(wanted: str | None = None) -> None:
    """Raise ``ValueError`` when ``wanted`` (default: ``RNNFLOW_ISA``) is set to no kernel
    variant's name, whether or not the compiled loops run (every recurrence entry point calls
    it: a bad value is refused the same way on every path, bfloat16 autocast and
    ``RNNFLOW_NO_EXT`` included; the CLI at its start)."""
    if wanted is None:
        wanted = os.environ.get("RNNFLOW_ISA", "")
    if wanted not in ("", *ISAS):
        raise ValueError(
            f"RNNFLOW_ISA must be one of {', '.join(ISAS)} (or unset: the widest the CPU "
            f"supports), got {wanted!r}"
        )


def _select_isa(ops: Any, wanted: str) -> None:
    """Run the variant ``RNNFLOW_ISA`` names (the widest the CPU supports when unset or empty)."""
    check_isa_name(wanted)
    name = wanted or next(isa for isa in ISAS if not ops.missing_flags(isa))
    lacks = ops.missing_flags(name)
    if lacks:
        raise ValueError(
            f"RNNFLOW_ISA={wanted}: this CPU cannot run the {wanted} kernels, it lacks "
            f"{' '.join(lacks)} (it runs: {', '.join(supported_isas())})"
        )
    ops.set_isa(name)
    _state["isa_env"] = wanted
    _log.info("compiled step loops: kernel variant %s (%s)", name, cpu_description())


def isa() -> str | None:
    """The kernel variant the compiled loops run (``"avx512"``, ``"avx2"`` or ``"generic"``),
    None when they are unavailable (the Python loops run)."""
    ops = loops()
    return None if ops is None else str(ops.isa())


def supported_isas() -> list[str]:
    """The kernel variants this build carries and this CPU can run, widest first (empty when
    the compiled loops are unavailable)."""
    ops = loops() if "ops" not in _state else _state["ops"]
    if ops is None:
        return []
    return [name for name in ISAS if not ops.missing_flags(name)]


def missing_flags(name: str) -> list[str]:
    """The CPU flags variant ``name`` needs and this CPU lacks (empty: it runs here)."""
    ops = loops() if "ops" not in _state else _state["ops"]
    if ops is None:
        return ["(compiled loops unavailable)"]
    return list(ops.missing_flags(name))


def cpu_description() -> str:
    """The CPU's model and the SIMD flags that matter here (for benchmark tables and logs)."""
    model, flags = platform.processor() or platform.machine(), set()
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            key, _, value = line.partition(":")
            if key.strip() == "model name":
                model = value.strip()
            elif key.strip() == "flags":
                flags = set(value.split())
    except OSError:
        pass
    wanted = (
        "avx2",
        "fma",
        "avx512f",
        "avx512vl",
        "avx512bw",
        "avx512dq",
        "avx512_bf16",
        "amx_bf16",
    )
    shown = [flag for flag in wanted if flag in flags]
    return f"{model}; flags: {' '.join(shown) or 'none of ' + ' '.join(wanted)}"


def status() -> tuple[bool, str]:
    """``(True, "")`` when the compiled loops are in use, else ``(False, why not)``."""
    if disabled():
        return False, "RNNFLOW_NO_EXT is set"
    ops = loops()
    return (ops is not None), _state.get("reason", "")


def _library_path(cxx: str) -> Path:
    key = hashlib.sha256()
    for source in sorted(_CSRC.iterdir()):
        key.update(source.name.encode() + source.read_bytes())
    for part in (torch.__version__, cxx, " ".join(_FLAGS), sys.version, platform.machine()):
        key.update(part.encode())
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
