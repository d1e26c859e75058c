#!/usr/bin/env bash
# Data-parallel scaling of `drgnfly train-vae` (issue 16): one epoch on one process against `mpirun -np 2`,
# one thread per process, the same global batch; plus what rank 0 exchanged (run.log's per-epoch line).
#
# Usage: bench/data_parallel.sh [workdir]   (builds with --features mpi; needs Open MPI's mpirun)
# Environment (defaults in brackets): CASES ["64:2000:256:8 64:2000:256:32 64:500:1024:8 64:500:1024:32"]
# as D:images:width:batch (3 hidden layers in encoder and decoder), RANKS [2], ZDIM [8], BIN [release build];
# ABINIT_CASES ["64:1000"] as D:images: one epoch of `abinit-homo` with pose search (decoder 256×3, -b 8,
# pretraining on 1000 images, the default search grid; CASES="" or ABINIT_CASES="" skips a table).
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/drgnfly-bench-dp}"
cases="${CASES-64:2000:256:8 64:2000:256:32 64:500:1024:8 64:500:1024:32}"
ranks="${RANKS:-2}" zdim="${ZDIM:-8}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p drgnfly --features mpi
  BIN="${CARGO_TARGET_DIR:-target}/release/drgnfly"
fi
export OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1
mkdir -p "$dir"

epoch_time() { grep -o 'Finished in [0-9:.]*' "$1/run.log" | tail -1 | awk -F'[ :]' '{printf "%.2f", $3 * 3600 + $4 * 60 + $5}'; }
loss() { grep -o 'loss = [0-9.e-]*' "$1/run.log" | tail -1 | awk '{print $NF}'; }
params() { grep -o '[0-9]* parameters' "$1/run.log" | head -1 | awk '{print $1}'; }
# "MB calls seconds" of the last epoch's exchange line.
exchanged() { grep -o 'exchanged [0-9.]* MB in [0-9]* all-reduces, [0-9.]* s' "$1/run.log" | tail -1 | awk '{print $2, $5, $7}'; }

echo "| D | images | network | batch | parameters | 1 process epoch s | $ranks processes epoch s | speed-up | efficiency | MB per step (rank 0) | all-reduce s per step | loss 1 / $ranks |"
echo "|---|---|---|---|---|---|---|---|---|---|---|---|"
for c in $cases; do
  IFS=: read -r d n w b <<<"$c"
  sim="$dir/sim_${d}_$n"
  [ -f "$sim/particles.mrcs" ] || "$BIN" -q simulate --phantom hinge --states 2 -D "$d" -n "$n" --snr 0.1 \
    --seed 3 -o "$sim"
  args=(train-vae "$sim/particles.mrcs" --poses "$sim/pose.pkl" --ctf "$sim/ctf.pkl" -n 1 --zdim "$zdim" -b "$b"
    --enc-layers 3 --enc-dim "$w" --dec-layers 3 --dec-dim "$w" --seed 1 --no-analysis)
  one="$dir/one_${d}_${n}_${w}_$b" many="$dir/many_${d}_${n}_${w}_$b"
  rm -rf "$one" "$many"
  "$BIN" -q --threads 1 "${args[@]}" -o "$one"
  mpirun -np "$ranks" --oversubscribe --bind-to core "$BIN" -q --threads 1 "${args[@]}" -o "$many"
  t1=$(epoch_time "$one") tn=$(epoch_time "$many")
  read -r mb calls secs < <(exchanged "$many")
  steps=$(( (n + b - 1) / b ))
  echo "| $d | $n | ${w}×3 | $b | $(params "$one") | $t1 | $tn | $(echo "scale=2; $t1 / $tn" | bc) | $(echo "scale=2; $t1 / $tn / $ranks" | bc) | $(echo "scale=3; $mb / $steps" | bc) | $(echo "scale=4; $secs / $steps" | bc) | $(loss "$one") / $(loss "$many") |"
done

echo
echo "| abinit-homo D | images | 1 process epoch s | $ranks processes epoch s | speed-up | search images/s, 1 / $ranks | loss 1 / $ranks |"
echo "|---|---|---|---|---|---|---|"
searched() { grep -o '([0-9.]* images/s' "$1/run.log" | tail -1 | tr -d '(' | awk '{print $1}'; }
for c in ${ABINIT_CASES-64:1000}; do
  IFS=: read -r d n <<<"$c"
  sim="$dir/sim_${d}_$n"
  [ -f "$sim/particles.mrcs" ] || "$BIN" -q simulate --phantom hinge --states 1 -D "$d" -n "$n" --snr 0.1 \
    --seed 3 -o "$sim"
  args=(abinit-homo "$sim/particles.mrcs" --ctf "$sim/ctf.pkl" -n 1 -b 8 --layers 3 --dim 256 --pretrain 1000
    --ps-freq 1 --seed 1)
  one="$dir/abinit_one_${d}_$n" many="$dir/abinit_many_${d}_$n"
  rm -rf "$one" "$many"
  "$BIN" -q --threads 1 "${args[@]}" -o "$one"
  mpirun -np "$ranks" --oversubscribe --bind-to core "$BIN" -q --threads 1 "${args[@]}" -o "$many"
  t1=$(epoch_time "$one") tn=$(epoch_time "$many")
  echo "| $d | $n | $t1 | $tn | $(echo "scale=2; $t1 / $tn" | bc) | $(searched "$one") / $(searched "$many") | $(loss "$one") / $(loss "$many") |"
done
