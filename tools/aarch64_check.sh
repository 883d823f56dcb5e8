#!/usr/bin/env bash
# The aarch64 check (issue 17: "a scalar/portable fallback for other architectures"): on an
# x86-64 Debian machine, as root, with Debian's and PyPI's registries reachable,
#
#     bash tools/aarch64_check.sh                      # tests/recurrence tests/cells
#     bash tools/aarch64_check.sh tests/recurrence/test_fused_ext.py -x
#
# builds the compiled loops with Debian's cross compiler (aarch64-linux-gnu-g++: the build then
# has the generic variant only, NEON vectors) and runs the tests under an emulated aarch64
# CPython (qemu-user), so the float64 parity tests (1e-10 against the reference loop) and the
# float32-against-float64 ones run the aarch64 build of the kernels. Results in
# ${OUT:-aarch64_check_out}/: env.txt (versions, the built library's `file` line) and
# pytest.txt; exit status pytest's.
#
# What it sets up, under ${A64:-/opt/a64} (about 0.8 GB; reused by later runs):
#   root/  Debian bookworm's arm64 CPython 3.11 and the libraries it links, unpacked with
#          `dpkg -x` (not installed: Debian's python3.11 packages of two architectures conflict)
#   site/  PyPI's aarch64 wheels, installed by this machine's pip with --platform --target:
#          torch 2.9.1 (PyPI's aarch64 torch 2.13.0 is a CUDA build that pulls nvidia-* packages;
#          2.9.1's is CPU-only and inside the package's range torch>=2.3), numpy, pytest
#   ext/   TORCH_EXTENSIONS_DIR: the cross-built library
# and registers qemu-aarch64 with binfmt_misc (mounting it if needed), because tests start
# `sys.executable` in subprocesses. Emulation is ~20-50x slower than native: minutes, not a
# benchmark. Not part of CI (it needs root and apt); run it after changing csrc/.
set -euo pipefail

cd "$(dirname "${BASH_SOURCE[0]}")/.."
A64="${A64:-/opt/a64}"
OUT="${OUT:-aarch64_check_out}"
HOST_PYTHON="${HOST_PYTHON:-.venv/bin/python}"
TORCH_AARCH64="${TORCH_AARCH64:-2.9.1}"

codename="$(. /etc/os-release 2>/dev/null && echo "${VERSION_CODENAME:-}")"
if [ "$(uname -m)" != x86_64 ] || [ "$(id -u)" != 0 ] || [ "$codename" != bookworm ]; then
    echo "aarch64_check: needs root on x86-64 Debian 12 (bookworm: its arm64 python3.11" \
        "packages); here: $(uname -m), uid $(id -u), ${codename:-no VERSION_CODENAME}" >&2
    exit 2
fi

if ! command -v qemu-aarch64-static >/dev/null || ! command -v aarch64-linux-gnu-g++ >/dev/null ||
    ! command -v file >/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq qemu-user-static g++-aarch64-linux-gnu file
fi

if [ ! -x "$A64/root/usr/bin/python3.11" ]; then
    dpkg --print-foreign-architectures | grep -qx arm64 || dpkg --add-architecture arm64
    apt-get update -qq
    mkdir -p "$A64/debs" "$A64/root"
    (
        cd "$A64/debs"
        for p in python3.11-minimal libpython3.11-minimal libpython3.11-stdlib libc6 libgcc-s1 \
            libstdc++6 libgomp1 libexpat1 zlib1g libssl3 libffi8 libbz2-1.0 liblzma5 \
            libsqlite3-0 libncursesw6 libtinfo6 libreadline8 libuuid1 libcrypt1 libnsl2 \
            libtirpc3 libdb5.3 libgssapi-krb5-2 libkrb5-3 libk5crypto3 libkrb5support0 \
            libcom-err2 libkeyutils1; do
            apt-get download "$p:arm64"
        done
        for d in *.deb; do dpkg -x "$d" "$A64/root"; done
    )
fi

if [ ! -d "$A64/site/torch" ]; then
    wheels=(--target "$A64/site" --platform manylinux_2_28_aarch64 --platform manylinux2014_aarch64
        --platform manylinux_2_17_aarch64 --python-version 3.11 --implementation cp
        --only-binary=:all:)
    # torch without its dependency list: pip evaluates its markers for this x86-64 machine.
    "$HOST_PYTHON" -m pip install -q "${wheels[@]}" --no-deps "torch==$TORCH_AARCH64"
    "$HOST_PYTHON" -m pip install -q "${wheels[@]}" --upgrade numpy pytest setuptools \
        typing_extensions sympy networkx jinja2 fsspec filelock mpmath markupsafe
fi

if [ ! -e /proc/sys/fs/binfmt_misc/qemu-aarch64 ]; then
    [ -e /proc/sys/fs/binfmt_misc/register ] ||
        mount -t binfmt_misc binfmt_misc /proc/sys/fs/binfmt_misc
    cat /usr/lib/binfmt.d/qemu-aarch64.conf >/proc/sys/fs/binfmt_misc/register
fi

export QEMU_LD_PREFIX="$A64/root"
export PYTHONPATH="$A64/site:$PWD"
export CXX=aarch64-linux-gnu-g++
export TORCH_EXTENSIONS_DIR="$A64/ext"
export PYTHONDONTWRITEBYTECODE=1
PY=("$A64/root/usr/bin/python3.11")

mkdir -p "$OUT"
set +e  # a failure here is shown below, not an exit without a word
{
    echo "commit: $(git rev-parse HEAD 2>/dev/null || echo unknown)"
    "${PY[@]}" -c 'import platform, sys, torch; print("python", sys.version.split()[0],
platform.machine(), "torch", torch.__version__)'
    "${PY[@]}" -c 'from rnnflow.recurrence import _ext
print("compiled loops:", _ext.status(), "variant:", _ext.isa())'
    file "$TORCH_EXTENSIONS_DIR"/rnnflow_loops/*.so
} >"$OUT/env.txt" 2>&1
cat "$OUT/env.txt"

if [ "$#" -eq 0 ]; then set -- tests/recurrence tests/cells; fi
"${PY[@]}" -m pytest -q -p no:cacheprovider -rs "$@" >"$OUT/pytest.txt" 2>&1
status=$?
set -e
tail -n 3 "$OUT/pytest.txt"
exit "$status"
