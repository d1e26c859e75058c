#!/usr/bin/env bash
# Training speed of `drgnfly train-vae` against cryoDRGN's `train_vae` on the same simulated data with the same
# hyper-parameters (issue 5): one epoch each, timed as a whole command (wall and CPU seconds, so start-up and
# data loading are included for both) and by the epoch time each tool writes in its run.log.
#
# Usage: CRYODRGN=/path/to/venv/bin/cryodrgn bench/train_vs_cryodrgn.sh [workdir]
# Environment (defaults in brackets): CASES ["64:1000:256 64:200:1024 128:300:256"] as D:images:width (3 hidden
# layers in encoder and decoder), THREADS [1], ZDIM [8], BATCH [8], BIN [release build], DRGNFLY_FLAGS [] extra
# train-vae flags for drgnfly (e.g. --no-amp), ONLY_DRGNFLY [unset] to skip the cryoDRGN runs.
# With THREADS=1 the CPU seconds hardly depend on other load on the machine, which is why they are the
# column to compare on a shared machine; wall seconds are given too.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/drgnfly-bench-train}"
cases="${CASES:-64:1000:256 64:200:1024 128:300:256}"
threads="${THREADS:-1}" zdim="${ZDIM:-8}" batch="${BATCH:-8}"
read -r -a extra <<<"${DRGNFLY_FLAGS:-}"
[ -n "${ONLY_DRGNFLY:-}" ] || cryodrgn="${CRYODRGN:?set CRYODRGN to the cryodrgn executable of a virtualenv with cryodrgn 4.3}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p drgnfly
  BIN="${CARGO_TARGET_DIR:-target}/release/drgnfly"
fi
mkdir -p "$dir"
ratios=()

# timed LOG CMD… : runs CMD with its output in LOG; prints "wall cpu" in seconds.
timed() {
  local log="$1"
  shift
  /usr/bin/time -f "%e %U %S" -o "$log.time" "$@" >"$log" 2>&1
  awk '{printf "%.1f %.1f", $1, $2 + $3}' "$log.time"
}

# The epoch's "Finished in H:MM:SS.s" and total loss from a cryoDRGN-format run.log.
epoch_time() { grep -o 'Finished in [0-9:.]*' "$1/run.log" | tail -1 | awk -F'[ :]' '{printf "%.1f", $3 * 3600 + $4 * 60 + $5}'; }
loss() { grep -o 'total loss = [0-9.e-]*' "$1/run.log" | tail -1 | awk '{print $4}'; }

# The machine, as every row of BENCHMARKS.md should state it (issue 17): CPU model, caches, vector extensions.
model=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')
caches=$(for i in /sys/devices/system/cpu/cpu0/cache/index*; do echo "L$(cat "$i/level")$(cut -c1 "$i/type" | tr DIU diu) $(cat "$i/size")"; done | paste -sd, -)
flags=$(grep -m1 '^flags' /proc/cpuinfo | tr ' ' '\n' | grep -E '^(avx2|fma|avx512f|avx512_bf16|amx_bf16|amx_tile)$' | paste -sd' ' -)
echo "CPU: $model; $(nproc) cores; caches $caches; $flags; THREADS=$threads"
echo
echo "| D | images | network | tool | command wall s | epoch wall s | command CPU s | images/CPU-s | epoch-1 loss |"
echo "|---|---|---|---|---|---|---|---|---|"
for c in $cases; do
  IFS=: read -r d n w <<<"$c"
  sim="$dir/sim_${d}_$n"
  [ -f "$sim/particles.mrcs" ] || "$BIN" -q simulate --phantom hinge --states 2 -D "$d" -n "$n" --snr 0.1 \
    --seed 3 -o "$sim"
  net=(--zdim "$zdim" -b "$batch" --enc-layers 3 --enc-dim "$w" --dec-layers 3 --dec-dim "$w")
  out="$dir/drgnfly_${d}_${n}_$w"
  rm -rf "$out"
  read -r wall cpu < <(timed "$out.log" "$BIN" --threads "$threads" train-vae "$sim/particles.mrcs" \
    --poses "$sim/pose.pkl" --ctf "$sim/ctf.pkl" -n 1 "${net[@]}" "${extra[@]}" --no-analysis -o "$out"; echo)
  echo "| $d | $n | ${w}×3 | drgnfly ${extra[*]} | $wall | $(epoch_time "$out") | $cpu | $(echo "scale=1; $n / $cpu" | bc) | $(loss "$out") |"
  ours=$(epoch_time "$out")
  [ -z "${ONLY_DRGNFLY:-}" ] || continue
  out="$dir/cryodrgn_${d}_${n}_$w"
  rm -rf "$out"
  read -r wall cpu < <(OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" timed "$out.log" "$cryodrgn" \
    train_vae "$sim/particles.mrcs" --poses "$sim/pose.pkl" --ctf "$sim/ctf.pkl" -n 1 "${net[@]}" \
    --max-threads "$threads" --no-analysis -o "$out"; echo)
  echo "| $d | $n | ${w}×3 | cryoDRGN | $wall | $(epoch_time "$out") | $cpu | $(echo "scale=1; $n / $cpu" | bc) | $(loss "$out") |"
  ratios+=("D=$d ${w}×3: drgnfly/cryoDRGN epoch wall = $(echo "scale=2; $ours / $(epoch_time "$out")" | bc)")
done
echo
printf '%s\n' "${ratios[@]}"
