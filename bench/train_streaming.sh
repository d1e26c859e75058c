#!/usr/bin/env bash
# Streaming vs in-memory training (issue 5: "reading from disk within 1.2× of in-memory"). train-vae reads its
# particles through a memory map, so an epoch whose stack is already in the page cache is the in-memory case
# and one whose stack was just evicted (posix_fadvise DONTNEED) reads every image from disk. Runs one epoch of
# each, twice, on the same simulated stack and prints both epoch times.
#
# Usage: bench/train_streaming.sh [workdir]. Environment: D [128], N [600] images, WIDTH [256], THREADS [2],
# BIN [release build].
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/drgnfly-bench-stream-train}"
d="${D:-128}" n="${N:-600}" w="${WIDTH:-256}" threads="${THREADS:-2}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p drgnfly
  BIN="${CARGO_TARGET_DIR:-target}/release/drgnfly"
fi
mkdir -p "$dir"
sim="$dir/sim_${d}_$n"
[ -f "$sim/particles.mrcs" ] || "$BIN" -q simulate --phantom hinge --states 2 -D "$d" -n "$n" --snr 0.1 \
  --seed 3 -o "$sim"
stack="$sim/particles.mrcs"

evict() { python3 -c 'import os, sys; fd = os.open(sys.argv[1], os.O_RDONLY); os.posix_fadvise(fd, 0, 0, os.POSIX_FADV_DONTNEED)' "$1"; }
warm() { cat "$1" >/dev/null; }
# The epoch's "Finished in H:MM:SS.s" from run.log, in seconds.
epoch_time() { grep -o 'Finished in [0-9:.]*' "$1/run.log" | tail -1 | awk -F'[ :]' '{printf "%.1f", $3 * 3600 + $4 * 60 + $5}'; }

echo "stack: $(du -h "$stack" | cut -f1), $n images at D=$d, ${w}×3, $threads threads"
echo "| run | page cache | epoch s |"
echo "|---|---|---|"
for rep in 1 2; do
  for mode in cold warm; do
    if [ "$mode" = cold ]; then evict "$stack"; else warm "$stack"; fi
    out="$dir/out_$mode"
    rm -rf "$out"
    "$BIN" -q --threads "$threads" train-vae "$stack" --poses "$sim/pose.pkl" --ctf "$sim/ctf.pkl" -n 1 \
      --zdim 8 -b 8 --enc-dim "$w" --dec-dim "$w" --no-analysis -o "$out" >"$out.log" 2>&1
    echo "| $rep | $mode (read from $([ "$mode" = cold ] && echo disk || echo memory)) | $(epoch_time "$out") |"
  done
done
