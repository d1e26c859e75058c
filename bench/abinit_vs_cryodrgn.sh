#!/usr/bin/env bash
# Homogeneous ab initio, one epoch of each tool on the same simulated data with cryoDRGN's abinit_homo_old
# defaults (3×256 Hartley decoder, base HEALPix 2, 4 refinement iterations, 8 kept poses, L 12→32, shifts ±10 px
# on a 7-point grid): pretraining on all images, one pose search over all images, one training pass. Prints the
# whole command's wall and CPU seconds and peak memory for each, and drgnfly's own search rate from run.log.
#
# Usage: CRYODRGN=/path/to/venv/bin/cryodrgn bench/abinit_vs_cryodrgn.sh [workdir]
# Environment: D [64], N [500], THREADS [2], BIN [release build], ONLY_DRGNFLY [unset] to skip cryoDRGN.
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/drgnfly-bench-abinit}"
d="${D:-64}" n="${N:-500}" threads="${THREADS:-2}"
[ -n "${ONLY_DRGNFLY:-}" ] || cryodrgn="${CRYODRGN:?set CRYODRGN to the cryodrgn executable of a virtualenv with cryodrgn 4.3}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p drgnfly
  BIN="${CARGO_TARGET_DIR:-target}/release/drgnfly"
fi
mkdir -p "$dir"
"$BIN" simulate --phantom hinge --states 1 -D "$d" -n "$n" --snr 0.1 --max-shift 4 --seed 0 -o "$dir/sim" >/dev/null 2>&1
echo "| tool | images | D | command wall s | command CPU s | peak RSS MB |"
echo "|---|---|---|---|---|---|"
rm -rf "$dir/drgnfly"
/usr/bin/time -f "%e %U %S %M" -o "$dir/drgnfly.time" "$BIN" --threads "$threads" abinit-homo "$dir/sim/particles.mrcs" \
  --ctf "$dir/sim/ctf.pkl" -o "$dir/drgnfly" -n 1 --pretrain "$n" --domain hartley --seed 1 >"$dir/drgnfly.log" 2>&1
awk -v n="$n" -v d="$d" '{printf "| drgnfly | %s | %s | %.1f | %.1f | %.0f |\n", n, d, $1, $2 + $3, $4 / 1024}' "$dir/drgnfly.time"
if [ -z "${ONLY_DRGNFLY:-}" ]; then
  rm -rf "$dir/cryodrgn"
  OMP_NUM_THREADS="$threads" MKL_NUM_THREADS="$threads" /usr/bin/time -f "%e %U %S %M" -o "$dir/cryodrgn.time" \
    "$cryodrgn" abinit_homo_old "$dir/sim/particles.mrcs" --ctf "$dir/sim/ctf.pkl" -o "$dir/cryodrgn" -n 1 \
    --pretrain "$n" --seed 1 >"$dir/cryodrgn.log" 2>&1
  awk -v n="$n" -v d="$d" '{printf "| cryoDRGN 4.3.1 | %s | %s | %.1f | %.1f | %.0f |\n", n, d, $1, $2 + $3, $4 / 1024}' "$dir/cryodrgn.time"
fi
grep "pose search" "$dir/drgnfly/run.log" || true
