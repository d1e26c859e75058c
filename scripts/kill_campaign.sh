#!/usr/bin/env bash
# Kill -9 training runs at random moments, then check that nothing is lost or mixed (issue 14):
# every `--load latest` resumes from a complete checkpoint, `analyze` works on every epoch that has weights,
# and no temporary file survives the resumed run.
#
#   BIN=target/release/drgnfly scripts/kill_campaign.sh [runs=20] [workdir]
set -euo pipefail
RUNS="${1:-20}"
WORK="${2:-$(mktemp -d)/kill}"
BIN="${BIN:-target/release/drgnfly}"
mkdir -p "$WORK"
"$BIN" -q simulate --phantom hinge --states 2 -D 24 -n 1600 --snr 1 --seed 0 -o "$WORK/sim"
train=(train-vae "$WORK/sim/particles.mrcs" --poses "$WORK/sim/pose.pkl" --ctf "$WORK/sim/ctf.pkl" --zdim 1
       -n 12 --enc-dim 32 --dec-dim 32 --enc-layers 2 --dec-layers 2 --seed 1 --no-analysis --threads 1)
failures=0
for r in $(seq 1 "$RUNS"); do
    out="$WORK/run$r"
    rm -rf "$out"
    # A random moment within the run (a full run takes a few seconds).
    delay=$(awk -v s="$r" 'BEGIN { srand(s); printf "%.2f", 0.3 + rand() * 11.0 }')
    "$BIN" -q "${train[@]}" -o "$out" >/dev/null 2>&1 &
    pid=$!
    sleep "$delay"
    kill -9 "$pid" 2>/dev/null || true
    wait "$pid" 2>/dev/null || true
    before=$(ls "$out" 2>/dev/null | grep -c '^weights\.' || true)
    # Resume (or start, when the kill came before the first checkpoint).
    if ls "$out"/weights.*.safetensors >/dev/null 2>&1; then
        "$BIN" -q "${train[@]}" -o "$out" --load latest >/dev/null 2>"$out.resume.err" || { echo "run $r: resume failed"; cat "$out.resume.err"; failures=$((failures + 1)); continue; }
    else
        rm -rf "$out"
        "$BIN" -q "${train[@]}" -o "$out" >/dev/null 2>"$out.resume.err" || { echo "run $r: restart failed"; failures=$((failures + 1)); continue; }
    fi
    temps=$(find "$out" -name '*.tmp' | wc -l)
    complete=yes
    [[ -f "$out/weights.12.safetensors" && -f "$out/z.12.pkl" ]] || complete=no
    bad_epochs=0
    for w in "$out"/weights.*.safetensors; do
        e=$(basename "$w" | cut -d. -f2)
        "$BIN" -q analyze "$out" "$e" --skip-umap --ksample 2 -o "$out/an$e" >/dev/null 2>&1 || bad_epochs=$((bad_epochs + 1))
    done
    echo "run $r: killed after ${delay}s with $before checkpoint file(s); finished epoch 12: $complete; temp files left: $temps; epochs analyze failed on: $bad_epochs"
    if [[ "$temps" != 0 || "$bad_epochs" != 0 || "$complete" != yes ]]; then failures=$((failures + 1)); fi
done
echo "== $RUNS runs, $failures failures"
[[ "$failures" == 0 ]]
