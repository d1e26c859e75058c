#!/usr/bin/env bash
# Heterogeneity recovery of train-vae on simulated adenylate kinase (issue 5, "Done when").
#
#   discrete: closed (1AKE) and open (4AKE) states, 50/50 → train-vae → eval-simulation (k-means(2)
#             accuracy on z) → analyze --ksample 2 (maps at the particles nearest the two k-means centres)
#             → FSC of each map against its state's ground truth. Bars: accuracy ≥ 0.995, FSC=0.5 < 4 px.
#   traj:     the 98-frame DIMS closed→open path, frames drawn uniformly → train-vae → eval-simulation
#             --frames. Bar: |Spearman(PC1 of z, frame)| ≥ 0.9.
#
# Usage: bench/heterogeneity.sh [discrete|traj|all] [workdir]
# Environment (defaults in brackets): N [5000] images, D [64], APIX [1.5] Å/px, SNR [0.1], SHIFT [4] px,
# EPOCHS [20], CHECKPOINT [5], ZDIM [8], NET ["--enc-layers 3 --enc-dim 256 --dec-layers 3 --dec-dim 256"], BATCH [8],
# LR [1e-4], THREADS [2], SEED [1], DATA [../shared/data/mdanalysis_adk], BIN [release build].
# Prints a Markdown row per benchmark and writes everything under the workdir.
set -euo pipefail
cd "$(dirname "$0")/.."
what="${1:-all}"
dir="${2:-/tmp/drgnfly-bench-het}"
n="${N:-5000}" d="${D:-64}" apix="${APIX:-1.5}" snr="${SNR:-0.1}" shift_px="${SHIFT:-4}"
epochs="${EPOCHS:-20}" zdim="${ZDIM:-8}" batch="${BATCH:-8}" lr="${LR:-1e-4}" threads="${THREADS:-2}"
seed="${SEED:-1}" checkpoint="${CHECKPOINT:-5}" data="${DATA:-../shared/data/mdanalysis_adk}"
read -r -a net <<<"${NET:---enc-layers 3 --enc-dim 256 --dec-layers 3 --dec-dim 256}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p drgnfly
  BIN="${CARGO_TARGET_DIR:-target}/release/drgnfly"
fi
bin="$BIN"
mkdir -p "$dir"

# train-vae with the shared settings; prints the wall time in seconds.
train() { # train SIMDIR OUTDIR
  local t0 t1
  t0=$(date +%s.%N)
  "$bin" --threads "$threads" train-vae "$1/particles.mrcs" --poses "$1/pose.pkl" --ctf "$1/ctf.pkl" \
    --zdim "$zdim" -n "$epochs" -b "$batch" --lr "$lr" --seed "$seed" --checkpoint "$checkpoint" "${net[@]}" \
    -o "$2" >"$2.log" 2>&1
  t1=$(date +%s.%N)
  echo "$t1 - $t0" | bc
}

# FSC=0.5 resolution in pixels of two maps ("none" when below 0.5 from the first shell).
fsc_px() {
  "$bin" -q --threads "$threads" fsc "$1" "$2" | sed -n 's/.*FSC=0.5: [0-9.]* Å (\([0-9.]*\) px).*/\1/p' |
    grep . || echo none
}

if [ "$what" = discrete ] || [ "$what" = all ]; then
  sim="$dir/adk2_sim" out="$dir/adk2_vae"
  # One file with the two states as MODEL 1 (closed) and MODEL 2 (open): labels 0 = closed, 1 = open.
  {
    echo "MODEL        1"; grep '^ATOM' "$data/adk_closed.pdb"; echo "ENDMDL"
    echo "MODEL        2"; grep '^ATOM' "$data/adk_open.pdb"; echo "ENDMDL"; echo "END"
  } >"$dir/adk_closed_open.pdb"
  [ -f "$sim/particles.mrcs" ] || "$bin" -q --threads "$threads" simulate --pdb "$dir/adk_closed_open.pdb" \
    -D "$d" --Apix "$apix" -n "$n" --snr "$snr" --max-shift "$shift_px" --seed "$seed" -o "$sim"
  rm -rf "$out"
  secs=$(train "$sim" "$out")
  "$bin" -q eval-simulation "$out" "$epochs" --labels "$sim/labels.pkl" -o "$out/metrics.json" >/dev/null
  acc=$(jq -r '.kmeans_accuracy' "$out/metrics.json")
  "$bin" -q --threads "$threads" analyze "$out" "$epochs" --ksample 2 --skip-umap --pc 1 --n-per-pc 2 \
    -o "$out/analyze" >"$out/analyze.log" 2>&1
  # Each k-means class map against both ground truths: its own state is the one it matches better.
  res=()
  for k in 0 1; do
    vol="$out/analyze/kmeans2/vol_00$((k + 1)).mrc"
    r0=$(fsc_px "$vol" "$sim/gt_volumes/vol_000.mrc") r1=$(fsc_px "$vol" "$sim/gt_volumes/vol_001.mrc")
    res+=("class $k: closed ${r0} px, open ${r1} px")
  done
  echo "| adk closed/open | $n | $d | $snr | $epochs | $secs | $acc | ${res[0]}; ${res[1]} |"
fi

if [ "$what" = traj ] || [ "$what" = all ]; then
  sim="$dir/adktraj_sim" out="$dir/adktraj_vae"
  [ -f "$sim/particles.mrcs" ] || "$bin" -q --threads "$threads" simulate --traj "$data/adk_dims_heavy_xyz.npy" \
    --elements "$data/adk_heavy_atoms.tsv" -D "$d" --Apix "$apix" -n "$n" --snr "$snr" --max-shift "$shift_px" \
    --seed "$seed" -o "$sim"
  rm -rf "$out"
  secs=$(train "$sim" "$out")
  "$bin" -q eval-simulation "$out" "$epochs" --labels "$sim/labels.pkl" --frames "$sim/labels.pkl" \
    -o "$out/metrics.json" >/dev/null
  rho=$(jq -r '.spearman_pc1 | fabs' "$out/metrics.json")
  echo "| adk DIMS trajectory (98 frames) | $n | $d | $snr | $epochs | $secs | | \|Spearman(PC1, frame)\| $rho |"
fi
