#!/usr/bin/env bash
# Heterogeneous ab initio on adk closed/open (BENCHMARKS.md "Heterogeneous ab initio"): simulate, run
# `abinit-het` (or, with TOOL=abinit, cryoDRGN-AI's schedule) without poses, and score every checkpoint: pose
# error after one global alignment and after aligning each state on its own, and k-means(2) accuracy of the
# latents. SET=traj: the 98-frame DIMS closed→open trajectory instead, scored by the pose error and
# |Spearman(PC1 of z, frame)|.
#
#   BIN=target/release/drgnfly PY=/path/to/python-with-numpy [TOOL=abinit [SEARCH_EPOCHS=5] [SGD_EPOCHS=7]] \
#     [ALL_MAPS_EPOCHS=K] [SET=traj] bash bench/abinit_het.sh WORKDIR [N] [EXTRA…]
#
# N images (default 4000), D = 64, 1.5 Å/px, SNR 0.1, CTF, shifts ±6 px; EXTRA flags go to the tool.
# ALL_MAPS_EPOCHS=K: then K more epochs, resumed, searching every conformation's map.
set -euo pipefail
dir=${1:?usage: bench/abinit_het.sh WORKDIR [N] [EXTRA…]}
n=${2:-4000}
shift $(( $# >= 2 ? 2 : 1 ))
bin=${BIN:-target/release/drgnfly}
py=${PY:-python3}
data=${DRGNFLY_TEST_DATA:-$(cd "$(dirname "$0")/../.." && pwd)/shared/data}/mdanalysis_adk
mkdir -p "$dir"
bin=$(realpath "$bin")
cd "$dir"
if [ "${SET:-states}" = traj ]; then
  [ -f sim/particles.mrcs ] || "$bin" -q simulate --traj "$data/adk_dims_heavy_xyz.npy" \
    --elements "$data/adk_heavy_atoms.tsv" -D 64 --Apix 1.5 -n "$n" --snr 0.1 --max-shift 6 --seed 1 -o sim
else
  # adk_open.pdb is not superposed on adk_closed.pdb as distributed (22° and 4 Å apart on the CA atoms), so a
  # simulation from the two files as they are puts the states in frames no reconstruction could know. The open
  # state is first superposed on the closed one (Kabsch on the CA atoms of the CORE domain, residues 1–29,
  # 61–121, 161–214), as any reconstruction would place them.
  "$py" - "$data" <<'PY'
import sys, numpy as np
data = sys.argv[1]
def atoms(f):
    return [l for l in open(f"{data}/{f}") if l.startswith("ATOM")]
closed, opened = atoms("adk_closed.pdb"), atoms("adk_open.pdb")
xyz = lambda ls: np.array([[float(l[30:38]), float(l[38:46]), float(l[46:54])] for l in ls])
core = lambda ls: [i for i, l in enumerate(ls) if l[12:16].strip() == "CA" and
                   (int(l[22:26]) <= 29 or 61 <= int(l[22:26]) <= 121 or int(l[22:26]) >= 161)]
a, b = xyz(closed)[core(closed)], xyz(opened)[core(opened)]
ca, cb = a.mean(0), b.mean(0)
u, _, vt = np.linalg.svd((b - cb).T @ (a - ca))
r = u @ np.diag([1, 1, np.sign(np.linalg.det(u @ vt))]) @ vt
moved = (xyz(opened) - cb) @ r + ca
with open("adk_closed_open.pdb", "w") as out:
    out.write("MODEL        1\n" + "".join(closed) + "ENDMDL\nMODEL        2\n")
    for l, p in zip(opened, moved):
        out.write(f"{l[:30]}{p[0]:8.3f}{p[1]:8.3f}{p[2]:8.3f}{l[54:]}")
    out.write("ENDMDL\nEND\n")
PY
  [ -f sim/particles.mrcs ] || "$bin" -q simulate --pdb adk_closed_open.pdb -D 64 --Apix 1.5 -n "$n" --snr 0.1 \
    --max-shift 6 --seed 1 -o sim
fi
rm -rf het
case ${TOOL:-abinit-het} in
  abinit-het) epochs=6; set -- --ps-freq 1 --l-ramp-epochs 5 --pretrain "$n" "$@" ;;
  # cryoDRGN-AI's defaults but for the search epochs (its 500 000 searched images would be 125 epochs here):
  # SEARCH_EPOCHS (default 5), then SGD_EPOCHS (default 7) SGD epochs.
  abinit) search=${SEARCH_EPOCHS:-5}; epochs=$((search + ${SGD_EPOCHS:-7}))
    set -- --epochs-pose-search "$search" --n-imgs-pretrain "$n" "$@" ;;
  *) echo "TOOL must be abinit-het or abinit" >&2; exit 2 ;;
esac
# The tool on the simulated set with the flags every run shares: run_tool LOG FLAGS…
run_tool() {
  local log=$1; shift
  /usr/bin/time -v "$bin" --threads 2 "${TOOL:-abinit-het}" sim/particles.mrcs --ctf sim/ctf.pkl --zdim 8 -o het \
    --l-start 12 --l-end 32 --t-extent 8 --lr 1e-3 --checkpoint 1 --seed 1 --no-analysis "$@" 2>"$log"
  grep -E "Elapsed|Maximum resident" "$log"
}
run_tool time.log -n $epochs "$@"
if [ "${ALL_MAPS_EPOCHS:-0}" -gt 0 ]; then
  epochs=$((epochs + ALL_MAPS_EPOCHS))
  run_tool time-all.log "$@" -n $epochs --load latest --search-all-conformations
fi
# Median angular error of POSES against TRUTH after one global alignment (both hands).
angle() {
  "$bin" eval-poses "$1" --truth "$2" -D 64 2>&1 | sed -n 's/.*angle median \([0-9.]*°\).*/\1/p'
}
if [ "${SET:-states}" = traj ]; then
  for e in $(seq 1 $epochs); do
    rho=$("$bin" eval-simulation het "$e" --labels sim/labels.pkl --frames sim/labels.pkl -o "metrics.$e.json" 2>&1 |
      sed -n 's/.*|Spearman(PC1, frame)| *//p')
    echo "epoch $e: global $(angle "het/pose.$e.pkl" sim/pose.pkl), |Spearman(PC1, frame)| $rho"
  done
  exit 0
fi
"$py" -c "
import pickle, numpy as np
l = pickle.load(open('sim/labels.pkl', 'rb'))
for s in (0, 1):
    np.savetxt(f'ind{s}.txt', np.where(l == s)[0], fmt='%d')
"
for s in 0 1; do "$bin" -q filter-pkl sim/pose.pkl --ind "ind$s.txt" -o "truth$s.pkl" >/dev/null 2>&1; done
for e in $(seq 1 $epochs); do
  line="epoch $e: global $(angle "het/pose.$e.pkl" sim/pose.pkl)"
  for s in 0 1; do
    "$bin" -q filter-pkl "het/pose.$e.pkl" --ind "ind$s.txt" -o "found$s.pkl" >/dev/null 2>&1
    line="$line, state $s $(angle "found$s.pkl" "truth$s.pkl")"
  done
  acc=$("$bin" eval-simulation het "$e" --labels sim/labels.pkl -o "metrics.$e.json" 2>&1 |
    sed -n 's/.*k-means accuracy *//p')
  echo "$line, k-means accuracy $acc"
done
