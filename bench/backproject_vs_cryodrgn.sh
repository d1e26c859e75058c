#!/usr/bin/env bash
# Backprojection throughput, drgnfly vs cryoDRGN's backproject_voxel, on the same simulated data (issue 3).
# Usage: bench/backproject_vs_cryodrgn.sh [workdir]   (CRYODRGN=path/to/cryodrgn, default: `cryodrgn` on PATH)
# Prints images/s for each tool and the FSC resolution each reaches, per box size.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/drgnfly-bench-bp}"
cryodrgn="${CRYODRGN:-cryodrgn}"
mkdir -p "$dir"
cargo build --release -q -p drgnfly
bin="${CARGO_TARGET_DIR:-target}/release/drgnfly"
echo "| D | images | tool | seconds | images/s | first shell with half-map FSC < 0.5 (1/px) |"
echo "|---|---|---|---|---|---|"
for spec in "64 5000" "128 2000"; do
  set -- $spec; d=$1; n=$2
  data="$dir/sim_$d"
  [ -f "$data/particles.mrcs" ] || "$bin" -q simulate --phantom hinge --states 2 -D "$d" -n "$n" --snr 0.1 --seed 1 -o "$data"
  t0=$(date +%s.%N)
  "$bin" -q backproject "$data/particles.mrcs" --poses "$data/pose.pkl" --ctf "$data/ctf.pkl" -o "$dir/ours_$d" >/dev/null 2>&1
  t1=$(date +%s.%N)
  ours=$(echo "$t1 - $t0" | bc)
  res_ours=$(awk 'NR>3 && $2<0.5 {print $1; exit}' "$dir/ours_$d/fsc-vals.txt")
  echo "| $d | $n | drgnfly | $ours | $(echo "$n / $ours" | bc) | ${res_ours:-none} |"
  t0=$(date +%s.%N)
  "$cryodrgn" backproject_voxel "$data/particles.mrcs" --poses "$data/pose.pkl" --ctf "$data/ctf.pkl" -o "$dir/cryodrgn_$d" >/dev/null 2>&1
  t1=$(date +%s.%N)
  theirs=$(echo "$t1 - $t0" | bc)
  res_theirs=$(awk 'NR>3 && $2<0.5 {print $1; exit}' "$dir/cryodrgn_$d/fsc-vals.txt" 2>/dev/null || true)
  echo "| $d | $n | cryoDRGN backproject_voxel | $theirs | $(echo "$n / $theirs" | bc) | ${res_theirs:-none} |"
done
