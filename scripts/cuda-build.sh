#!/usr/bin/env bash
# Build drgnfly with candle's CUDA backend (`--features cuda`) on a machine WITHOUT a CUDA toolkit or GPU.
#
#   scripts/cuda-build.sh                                   # venv in .cuda-venv/, binary in target/release/
#   CARGO_TARGET_DIR=/tmp/t nice -n 19 scripts/cuda-build.sh
#
# Everything candle needs at build time comes from NVIDIA's PyPI wheels (CUDA 13.0, the GPU machines' driver
# version): nvcc + cicc + ptxas, the headers, libcudart, libcublas(Lt), libcurand and libnvrtc. The driver library
# libcuda.so.1 comes with the NVIDIA driver and is not on PyPI, so we link against a generated stub instead; the
# real driver replaces it at run time. The script is idempotent: a second run re-checks each step and only
# rebuilds what changed (the first build takes 30-40 min on 2 cores, about 12 of them in nvcc compiling
# candle's kernels; later builds recompile only the changed crates).
#
# Environment knobs: CUDA_VENV (venv folder, default .cuda-venv), CUDA_COMPUTE_CAP (default 90 = H100/H200;
# the kernels are compiled for exactly this architecture), CUDAFORGE_THREADS (parallel nvcc jobs, default 2),
# CARGO_TARGET_DIR (cargo's usual meaning), FEATURES (default cuda; "cuda nccl" adds MPI and NCCL for data-parallel
# training between GPUs, and then needs an MPI library and libnccl, e.g. the nvidia-nccl-cu13 wheel in the venv
# on the library path: not built or run by the project yet).
set -euo pipefail
REPO_ROOT="$(cd "$(dirname "$0")/.." && pwd)"
cd "$REPO_ROOT"

VENV="${CUDA_VENV:-$REPO_ROOT/.cuda-venv}"

# 1. A private Python venv holds the wheels, so nothing is installed system-wide.
if [[ ! -x "$VENV/bin/python" ]]; then
    echo "== creating venv $VENV"
    python3 -m venv "$VENV"
fi

# 2. The CUDA 13.0 wheels, pinned to one toolkit release so nvcc, headers and libraries match. Since CUDA 13
#    the packages are unsuffixed (the *-cu13 names are deprecated placeholders); they all unpack into one
#    toolkit-shaped tree site-packages/nvidia/cu13/{bin,include,lib,nvvm}. nvidia-cuda-cccl provides
#    <nv/target> and <cuda/std/...>, which cuda_fp16.h includes. pip skips what is already installed.
echo "== installing CUDA 13.0 wheels into $VENV"
"$VENV/bin/python" -m pip install --quiet --disable-pip-version-check \
    nvidia-cuda-nvcc==13.0.88 \
    nvidia-nvvm==13.0.88 \
    nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-cccl==13.0.85 \
    nvidia-cuda-runtime==13.0.96 \
    nvidia-cuda-nvrtc==13.0.88 \
    nvidia-cublas==13.0.2.14 \
    nvidia-curand==10.4.0.35

# 3. Make the wheel tree look like a toolkit install to the build scripts:
#    - cudaforge (candle-kernels' builder) takes nvcc from PATH and the toolkit root as nvcc's grandparent,
#      with libraries in lib64/;
#    - cudarc (candle's CUDA bindings, linked dynamically) searches $CUDA_ROOT/lib and lib/stubs and links
#      -lcuda -lcublas -lcublasLt -lcurand -lnvrtc, and candle-kernels links -lcudart: the linker needs the
#      unversioned lib*.so names, which the wheels do not ship (only lib*.so.13 / .so.10).
SITE="$("$VENV/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["purelib"])')"
CUDA_ROOT="$SITE/nvidia/cu13"
if [[ ! -x "$CUDA_ROOT/bin/nvcc" ]]; then
    echo "error: $CUDA_ROOT/bin/nvcc missing after pip install; delete $VENV and run again" >&2
    exit 1
fi
echo "== laying out toolkit at $CUDA_ROOT"
ln -sfn lib "$CUDA_ROOT/lib64"
for lib in cudart cublas cublasLt curand nvrtc; do
    versioned=""
    for candidate in "$CUDA_ROOT/lib/lib$lib.so."*; do
        # the ABI name lib$lib.so.N, not lib$lib.so.N.M (nvrtc-builtins) or an .alt variant
        if [[ "$(basename "$candidate")" =~ ^lib$lib\.so\.[0-9]+$ ]]; then
            versioned="$(basename "$candidate")"
        fi
    done
    if [[ -z "$versioned" ]]; then
        echo "error: lib$lib.so.N not found in $CUDA_ROOT/lib" >&2
        exit 1
    fi
    ln -sfn "$versioned" "$CUDA_ROOT/lib/lib$lib.so"
done

# 4. Link stub for the driver library. candle 0.11.1 turns on cudarc's `dynamic-linking` feature (not
#    `dynamic-loading`), so the binary links -lcuda and the linker must see every cu* symbol cudarc binds.
#    We take the symbol names from cudarc's own bindings (located through cargo metadata, so the stub follows
#    the cudarc version in Cargo.lock), and every stub function returns CUDA_ERROR_STUB_LIBRARY (34), as
#    NVIDIA's own stub does. Its SONAME is libcuda.so.1, so the binary asks for the real driver's name at run
#    time. The stub lives in lib/stubs/, which is NOT on the binary's run path: on a GPU machine the driver's
#    libcuda.so.1 is used; on a machine without one, LD_LIBRARY_PATH=$CUDA_ROOT/lib/stubs lets the binary start
#    and report that no GPU is usable.
echo "== generating the libcuda link stub"
CUDARC_DIR="$(cargo metadata --format-version 1 --features drgnfly/cuda --manifest-path "$REPO_ROOT/Cargo.toml" |
    "$VENV/bin/python" -c '
import json, os, sys
pkgs = [p for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"]
if len(pkgs) != 1:
    sys.exit("expected exactly one cudarc package in the cuda build, found %d" % len(pkgs))
print(os.path.dirname(pkgs[0]["manifest_path"]))
')"
STUB_DIR="$CUDA_ROOT/lib/stubs"
mkdir -p "$STUB_DIR"
"$VENV/bin/python" - "$CUDARC_DIR/src/driver/sys/mod.rs" "$STUB_DIR/libcuda_stub.c.new" <<'PY'
import re, sys
src, out = sys.argv[1], sys.argv[2]
# In the bindings every driver entry point is declared as `fn cuXxx(...) -> CUresult;` in an extern "C" block.
names = sorted(set(re.findall(r"^\s+fn (cu\w+)\(.*\) -> CUresult;$", open(src).read(), re.M)))
if len(names) < 100:
    sys.exit(f"only {len(names)} driver symbols found in {src}: has cudarc's layout changed?")
special = {"cuGetErrorString", "cuGetErrorName"}
lines = [
    "/* Generated by scripts/cuda-build.sh: link stub for libcuda.so.1 (the NVIDIA driver), never for running on a GPU. */",
    "#define STUB_LIBRARY 34 /* CUDA_ERROR_STUB_LIBRARY */",
    "static const char *message = \"CUDA driver stub: no NVIDIA driver (libcuda.so.1) on this machine\";",
    "int cuGetErrorString(int error, const char **text) { (void)error; *text = message; return 0; }",
    "int cuGetErrorName(int error, const char **text) { (void)error; *text = \"CUDA_ERROR_STUB_LIBRARY\"; return 0; }",
]
# Arguments are ignored; with the C calling convention a caller may pass any arguments to a function that
# takes none.
lines += [f"int {n}(void) {{ return STUB_LIBRARY; }}" for n in names if n not in special]
open(out, "w").write("\n".join(lines) + "\n")
PY
if ! cmp -s "$STUB_DIR/libcuda_stub.c.new" "$STUB_DIR/libcuda_stub.c" || [[ ! -f "$STUB_DIR/libcuda.so" ]]; then
    mv "$STUB_DIR/libcuda_stub.c.new" "$STUB_DIR/libcuda_stub.c"
    gcc -shared -fPIC -O1 -Wl,-soname,libcuda.so.1 -o "$STUB_DIR/libcuda.so" "$STUB_DIR/libcuda_stub.c"
else
    rm -f "$STUB_DIR/libcuda_stub.c.new"
fi
ln -sfn libcuda.so "$STUB_DIR/libcuda.so.1"

# 5. Point the build scripts at the toolkit. CUDA_ROOT/CUDA_PATH/CUDA_HOME: cudarc's link search; nvcc on PATH:
#    cudaforge and cudarc's version probe; CUDARC_CUDA_VERSION pins the bindings to 13.0 whatever nvcc says;
#    CUDA_COMPUTE_CAP replaces the nvidia-smi query (there is no GPU here): 90 compiles for sm_90a, i.e.
#    H100/H200 only. The run path (DT_RUNPATH) lets the binary find cudart/cublas/curand/nvrtc in the venv
#    without LD_LIBRARY_PATH; copy the binary elsewhere and those libraries must be found another way.
export CUDA_ROOT CUDA_PATH="$CUDA_ROOT" CUDA_HOME="$CUDA_ROOT"
export PATH="$CUDA_ROOT/bin:$PATH"
export NVCC="$CUDA_ROOT/bin/nvcc"
export CUDARC_CUDA_VERSION=13000
export CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
export CUDAFORGE_THREADS="${CUDAFORGE_THREADS:-2}"
export RUSTFLAGS="${RUSTFLAGS:-} -C link-arg=-Wl,-rpath,$CUDA_ROOT/lib"

# 6. The build itself (only the binary and what it depends on).
FEATURES="${FEATURES:-cuda}"
echo "== cargo build --release -p drgnfly --features $FEATURES (compute capability $CUDA_COMPUTE_CAP)"
start=$SECONDS
cargo build --release -p drgnfly --features "$FEATURES"
echo "== built in $((SECONDS - start)) s"

TARGET_DIR="${CARGO_TARGET_DIR:-$REPO_ROOT/target}"
BIN="$TARGET_DIR/release/drgnfly"
echo
echo "binary: $BIN"
echo "run on a GPU machine: $BIN train-vae --device cuda ..."
echo "   (needs the NVIDIA driver's libcuda.so.1; the CUDA libraries are found in $CUDA_ROOT/lib)"
echo "smoke test without a GPU: LD_LIBRARY_PATH=$STUB_DIR $BIN --version"
