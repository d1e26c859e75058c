#!/usr/bin/env bash
# `drgnfly analyze` at scale (issue 4, "Done when": 10⁵ particles, zdim 8, minutes on 2 cores).
#
# Builds a training directory the way train-vae leaves it, in cryoDRGN's layout:
#   z.50.pkl     N×8 float32 z_mu then z_logvar (two pickles), synthetic: 12 Gaussian clusters of
#                unequal size and width plus 20% of the particles spread along a curved 1D path;
#   weights.50.pkl + config.yaml   cryoDRGN's zdim-8 test model (../shared/data/cryodrgn/het_*, D = 64);
#   run.log      50 epochs in drgnfly's log format (one NaN epoch, which analyze must survive).
# then times `drgnfly analyze WORKDIR 50` with its defaults (K = 20, 2 PCs × 10, UMAP, volumes at full
# size) and prints the per-stage breakdown from analyze's own step timings as a Markdown table, with the
# CPU time and peak memory (GNU time).
#
# Usage: bench/analyze.sh [workdir]
# Environment (defaults in brackets): N [100000] particles, THREADS [2], SEED [0],
# PYTHON [/work/venv-cryodrgn/bin/python, else python3] (needs numpy, only to write z.50.pkl),
# DATA [../shared/data/cryodrgn], BIN [release build], ARGS [extra analyze flags, e.g. "-d 32"].
set -euo pipefail
cd "$(dirname "$0")/.."
dir="${1:-/tmp/drgnfly-bench-analyze}"
n="${N:-100000}" threads="${THREADS:-2}" seed="${SEED:-0}" data="${DATA:-../shared/data/cryodrgn}"
python="${PYTHON:-/work/venv-cryodrgn/bin/python}"
[ -x "$python" ] || python=python3
read -r -a extra <<<"${ARGS:-}"
if [ -z "${BIN:-}" ]; then
  cargo build --release -q -p drgnfly
  BIN="${CARGO_TARGET_DIR:-target}/release/drgnfly"
fi
bin="$BIN"
wd="$dir/train"
mkdir -p "$wd"

"$python" - "$wd/z.50.pkl" "$n" "$seed" <<'EOF'
import pickle, sys
import numpy as np
path, n, seed = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
rng = np.random.default_rng(seed)
zdim, k = 8, 12
n_path = n // 5
centres = rng.normal(0.0, 2.0, (k, zdim))
weights = rng.dirichlet(np.full(k, 2.0))
sizes = rng.multinomial(n - n_path, weights)
sigmas = rng.uniform(0.2, 0.6, k)
blobs = [c + s * rng.standard_normal((m, zdim)) for c, s, m in zip(centres, sigmas, sizes)]
t = rng.uniform(0.0, 1.0, n_path)
a, b = rng.normal(0.0, 2.0, (2, zdim))
curve = a + np.outer(t, b - a) + np.outer(np.sin(np.pi * t), rng.normal(0.0, 1.5, zdim))
curve += 0.15 * rng.standard_normal((n_path, zdim))
z = np.concatenate(blobs + [curve])[rng.permutation(n)].astype(np.float32)
with open(path, "wb") as f:
    pickle.dump(z, f)
    pickle.dump(np.full_like(z, -3.0), f)
EOF
cp "$data/het_weights.pkl" "$wd/weights.50.pkl"
cp "$data/het_config.yaml" "$wd/config.yaml"
{
  echo "# synthetic run.log for bench/analyze.sh"
  for e in $(seq 1 50); do
    loss=$(echo "scale=6; 0.9 / (1 + 0.1 * $e)" | bc)
    [ "$e" = 7 ] && loss=nan
    echo "# =====> Epoch: $e Average gen loss = 0$loss, KLD = 1.5, total loss = 0$loss; Finished in 0:00:10.0"
  done
} >"$wd/run.log"
rm -rf "$wd/analyze.50"

log="$dir/analyze.log"
load_before=$(cut -d' ' -f1-3 /proc/loadavg)
t0=$(date +%s.%N)
/usr/bin/time -f "cpu %U %S %M" -o "$dir/time.txt" "$bin" --threads "$threads" analyze "$wd" 50 "${extra[@]}" 2>"$log"
t1=$(date +%s.%N)
total=$(echo "$t1 - $t0" | bc)
load_after=$(cut -d' ' -f1-3 /proc/loadavg)

# Sum analyze's "[analyze] STEP: done in S s" lines by stage.
read -r _ user sys rss <"$dir/time.txt"
cpu=$(echo "$user + $sys" | bc)
awk -v total="$total" -v n="$n" -v load="$load_before → $load_after" -v cpu="$cpu" -v rss="$rss" '
  /^\[analyze\] .*: done in [0-9.]+ s$/ {
    s = $(NF - 1); line = $0
    if (line ~ /PCA/) st = "PCA"
    else if (line ~ /k-means/) st = "k-means"
    else if (line ~ /UMAP/) st = "UMAP"
    else if (line ~ /volumes in/) st = "volumes"
    else if (line ~ /report/) st = "report"
    else st = "plots"
    t[st] += s; sum += s
  }
  END {
    printf "| N | stage | seconds |\n|---|---|---|\n"
    split("PCA k-means UMAP volumes plots report", order, " ")
    for (i = 1; i <= 6; i++) printf "| %d | %s | %.1f |\n", n, order[i], t[order[i]]
    printf "| %d | other (loading, text files) | %.1f |\n", n, total - sum
    printf "| %d | **total (wall)** | **%.1f** |\n", n, total
    printf "\nCPU time (user + sys): %.1f s; peak RSS: %.0f MB\n", cpu, rss / 1024
    printf "load average (1, 5, 15 min) before → after: %s\n", load
  }' "$log"
echo "analyze output: $wd/analyze.50 (stderr in $log)"
