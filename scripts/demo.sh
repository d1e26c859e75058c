#!/usr/bin/env bash
# drgnfly demo: simulate a two-state dataset from the built-in hinge phantom, reconstruct it by
# backprojection with the true poses and CTF, and report the resolution.
#
#   scripts/demo.sh           D=64, 5000 particles, SNR 0.3 (a few minutes on 2 cores, most of it the build)
#   scripts/demo.sh --quick   D=32, 1000 particles (CI: seconds after the build)
#
# Everything is written to demo-out/ (override with DEMO_OUT=dir).
set -euo pipefail
cd "$(dirname "$0")/.."

D=64
N=5000
SNR=0.3
if [[ "${1:-}" == "--quick" ]]; then
    D=32
    N=1000
fi
OUT="${DEMO_OUT:-demo-out}"

# DRGNFLY_BIN=path uses an already built binary (CI reuses the one its tests built).
if [[ -n "${DRGNFLY_BIN:-}" ]]; then
    BIN="$DRGNFLY_BIN"
else
    echo "== build (release)"
    cargo build --release -q -p drgnfly
    BIN="${CARGO_TARGET_DIR:-target}/release/drgnfly"
fi
"$BIN" --version

rm -rf "$OUT"
mkdir -p "$OUT"

echo "== simulate: hinge phantom, 2 discrete states, D=$D, $N particles, SNR $SNR, CTF, shifts ≤ 2 px"
"$BIN" simulate --phantom hinge --states 2 -D "$D" -n "$N" --snr "$SNR" --max-shift 2 \
    --defocus-min 8000 --defocus-max 20000 --seed 0 -o "$OUT/sim"

echo "== backproject with the true poses and CTF"
"$BIN" backproject "$OUT/sim/particles.mrcs" --poses "$OUT/sim/pose.pkl" --ctf "$OUT/sim/ctf.pkl" \
    -o "$OUT/backproject"

echo "== resolution of the consensus map against each ground-truth state (a mixture of two states)"
for vol in "$OUT"/sim/gt_volumes/vol_*.mrc; do
    echo "   $(basename "$vol"): $("$BIN" fsc "$OUT/backproject/backproject.mrc" "$vol" -o "$OUT/backproject/fsc_$(basename "$vol" .mrc).txt")"
done

# == training (to be added): heterogeneous reconstruction of the two states, e.g.
#    "$BIN" train-vae "$OUT/sim/particles.mrcs" --poses "$OUT/sim/pose.pkl" --ctf "$OUT/sim/ctf.pkl" \
#        --zdim 1 -n 20 -o "$OUT/train"
#    then analyze and eval-simulation against "$OUT/sim/labels.pkl".

echo "== maps written"
ls -l "$OUT"/backproject/*.mrc "$OUT"/sim/gt_volumes/*.mrc
