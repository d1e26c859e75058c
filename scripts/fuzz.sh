#!/usr/bin/env bash
# Fuzz every reader of user files with cargo-fuzz (libFuzzer + AddressSanitizer) for a bounded time.
#
#   scripts/fuzz.sh            600 s per target
#   scripts/fuzz.sh 60         60 s per target
#   scripts/fuzz.sh 60 mrc     one target
#
# Needs the nightly toolchain; installs cargo-fuzz when missing. Each target's corpus is seeded from the
# real files of the shared data (DRGNFLY_TEST_DATA, default ../shared/data) and grows in fuzz/corpus/;
# crashing inputs land in fuzz/artifacts/<target>/ (reproduce: cargo +nightly fuzz run <target> <file>).
# The summary prints executions, coverage and crashes per target. CI runs the fast mutation property tests
# instead (crates/drgnfly-io/tests/mutations.rs, crates/drgnfly-nn/tests/mutations.rs).
set -euo pipefail
cd "$(dirname "$0")/.."
EACH="${1:-600}"
ONLY="${2:-}"
DATA="${DRGNFLY_TEST_DATA:-$(cd .. && pwd)/shared/data}"

command -v cargo-fuzz >/dev/null 2>&1 || cargo install cargo-fuzz --locked

# seed TARGET [--cut] FILES…: copy the files into the target's corpus; --cut keeps the first 64 kB of each
# (text models: whole 500 kB PDB/mmCIF files made `atoms` run at ~28 executions/s, and the first records
# exercise all of the reader; binary seeds must stay whole to stay valid).
seed() {
    local target=$1
    shift
    local bytes=""
    if [[ "${1:-}" == --cut ]]; then bytes=65536; shift; fi
    mkdir -p "fuzz/corpus/$target"
    for f in "$@"; do
        local out
        out="fuzz/corpus/$target/$(basename "$f")"
        [[ -f "$DATA/$f" && ! -e "$out" ]] || continue
        if [[ -n "$bytes" ]]; then head -c "$bytes" "$DATA/$f" > "$out"; else cp "$DATA/$f" "$out"; fi
    done
}
seed mrc cryodrgn/hand.5.mrcs cryodrgn/toymodel_small_nocenter.mrc cryodrgn/spike-vol.mrc
seed star cryodrgn/relion31.star cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star starfile/postprocess.star \
    starfile/rln3.1_data_style.star cryodrgn/toy_projections.txt
seed cs_npy cryodrgn/cryosparc_P12_J24_001_particles.cs cryodrgn/im_shifted.npy
seed pickle cryodrgn/ctf1.pkl cryodrgn/hand_rot_trans.pkl cryodrgn/ind100.pkl cryodrgn/zvals_het-2_1k.pkl
seed atoms --cut biopython/7DDO.pdb mdanalysis_adk/adk_closed.pdb cryojax/8zpm.cif mdanalysis_adk/adk_heavy_atoms.tsv
seed checkpoint cryodrgn/het_weights.pkl
seed config cryodrgn/het_config.yaml

targets=(mrc star cs_npy pickle atoms checkpoint config)
[[ -n "$ONLY" ]] && targets=("$ONLY")
summary=()
for t in "${targets[@]}"; do
    echo "== fuzz $t for $EACH s"
    log="fuzz/$t.log"
    # -rss_limit_mb: a reader that allocates beyond 4 GB on a small input is a finding too.
    if cargo +nightly fuzz run --release "$t" -- -max_total_time="$EACH" -rss_limit_mb=4096 -timeout=20 \
        -max_len=1048576 2>"$log"; then
        status=ok
    else
        status="CRASH (see fuzz/artifacts/$t/)"
    fi
    runs=$(grep -oE 'Done [0-9]+ runs' "$log" | grep -oE '[0-9]+' || echo "?")
    cov=$(grep -oE 'cov: [0-9]+' "$log" | tail -1 | grep -oE '[0-9]+' || echo "?")
    summary+=("$t: $runs runs, coverage $cov edges, $status")
done
echo "== summary"
printf '%s\n' "${summary[@]}"
