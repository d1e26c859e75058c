#!/usr/bin/env bash
# The CUDA build on a GPU against the CPU, same data and seeds (for the device machine: one short run):
# train-vae, train-nn and abinit-amortized (the CNN encoder), per-epoch losses and times from run.log.
#
# Usage: BIN=path/to/cuda/drgnfly OUT=dir bash bench/gpu_check.sh
# The CUDA libraries (cudart, cublas, curand, nvrtc) are looked up in the Python environment's nvidia wheels.
set -uo pipefail
BIN="${BIN:-target/release/drgnfly}" OUT="${OUT:-/tmp/drgnfly-gpu-check}" THREADS="${THREADS:-$(nproc)}"
mkdir -p "$OUT"
libs=$(find / -path '*site-packages/nvidia/*/lib' -type d 2>/dev/null | tr '\n' ':')
export LD_LIBRARY_PATH="${libs}${LD_LIBRARY_PATH:-}"
nvidia-smi -L || true
echo "== CPU: $(nproc) cores, drgnfly --threads $THREADS"

run() { # name, timeout s, args...
  local name="$1" limit="$2"
  shift 2
  local t0=$SECONDS
  timeout "$limit" "$BIN" -q --threads "$THREADS" "$@" -o "$OUT/$name" >"$OUT/$name.log" 2>&1
  echo "-- $name: exit $? after $((SECONDS - t0)) s"
  grep -h "Epoch\|error\|panicked" "$OUT/$name/run.log" "$OUT/$name.log" 2>/dev/null | sed 's/^/   /' | head -8
}

"$BIN" -q simulate --phantom hinge --states 2 -D 64 -n 2000 --snr 0.1 --max-shift 2 --seed 3 -o "$OUT/sim" \
  || { echo "simulate failed"; exit 1; }
data=("$OUT/sim/particles.mrcs" --poses "$OUT/sim/pose.pkl" --ctf "$OUT/sim/ctf.pkl" --seed 1)
for dev in cuda cpu; do
  run "vae_$dev" 150 train-vae "${data[@]}" -n 2 --zdim 8 -b 8 --no-analysis --device "$dev"
  run "nn_$dev" 150 train-nn "${data[@]}" -n 2 --layers 3 --dim 256 -b 8 --device "$dev"
done
for dev in cuda cpu; do
  run "amortized_$dev" 150 abinit-amortized "$OUT/sim/particles.mrcs" --ctf "$OUT/sim/ctf.pkl" --seed 1 -n 1 \
    -b 32 --layers 2 --dim 64 --device "$dev"
done
