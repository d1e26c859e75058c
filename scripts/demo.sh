#!/usr/bin/env bash
# drgnfly demo: simulate a two-state dataset from the built-in hinge phantom, reconstruct it by
# backprojection with the true poses and CTF, train a heterogeneous VAE on it, analyze the latent space
# (maps at the k-means centres, pictures, report) and score the latent against the ground truth.
#
#   scripts/demo.sh           D=32, 3000 particles, 10 epochs (a few minutes on 2 cores after the build)
#   scripts/demo.sh --quick   800 particles, 3 epochs, tiny networks (CI smoke run)
#
# Everything is written to demo-out/ (override with DEMO_OUT=dir).
set -euo pipefail
cd "$(dirname "$0")/.."

D=32
N=3000
SNR=0.5
EPOCHS=10
DIM=128
if [[ "${1:-}" == "--quick" ]]; then
    N=800
    EPOCHS=3
    DIM=32
fi
OUT="${DEMO_OUT:-demo-out}"

# DRGNFLY_BIN=path uses an already built binary (CI reuses the one its tests built).
if [[ -n "${DRGNFLY_BIN:-}" ]]; then
    BIN="$DRGNFLY_BIN"
else
    echo "== build (release; about 6 minutes on 2 cores the first time, the tests then reuse it)"
    cargo build --release -p drgnfly
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

echo "== train-vae: heterogeneous reconstruction of the two states (1-D latent)"
"$BIN" --threads 1 train-vae "$OUT/sim/particles.mrcs" --poses "$OUT/sim/pose.pkl" --ctf "$OUT/sim/ctf.pkl" \
    --zdim 1 -n "$EPOCHS" --enc-layers 2 --enc-dim "$DIM" --dec-layers 2 --dec-dim "$DIM" --lr 1e-3 --seed 0 \
    -o "$OUT/train" --no-analysis

echo "== analyze: latent plots, k-means volumes, pictures and report"
"$BIN" analyze "$OUT/train" "$EPOCHS" --ksample 2 --skip-umap
echo "== how well does the latent separate the two simulated states?"
"$BIN" eval-simulation "$OUT/train" "$EPOCHS" --labels "$OUT/sim/labels.pkl"

echo "== maps written"
ls -l "$OUT"/backproject/*.mrc "$OUT"/sim/gt_volumes/*.mrc "$OUT"/train/analyze."$EPOCHS"/kmeans2/*.mrc
echo "report: $OUT/train/analyze.$EPOCHS/report.html (open in a browser)"
