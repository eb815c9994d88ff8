#!/usr/bin/env bash
# Recompute the shipped loss landscapes (models/landscapes/*.json, Li et al. 2018): ResNet-20/56/110 and their
# plain twins around their shipped weights, one `resviz landscape` run each (app/nets/landscape.py).
#
#   scripts/landscapes.sh                      # all six, one after the other, at the shipped resolution
#   scripts/landscapes.sh resnet56             # only the named models (residual and plain)
#   GRID=21 IMAGES=128 scripts/landscapes.sh   # another resolution (the cost grows with GRID^2 x IMAGES)
#
# The shipped resolution (grid 17 x 17, span 1, 64 training images, seed 0) took 30 minutes of wall time for all
# six (1777 s; each file's wall_time_s, the table in docs/landscapes.md) on the project's 2-core machine at NICE=10
# while other jobs kept it busy (load average 6-9): within an hour on such a machine. Each point runs through
# ONNX Runtime on every core torch sees (OMP_NUM_THREADS, else all); NICE=10 runs the set at a lower priority.
set -euo pipefail
cd "$(dirname "$0")/.."

PY="${PY:-.venv/bin/python}"
OUT=models/landscapes
GRID="${GRID:-17}"
SPAN="${SPAN:-1.0}"
IMAGES="${IMAGES:-64}"
SEED="${SEED:-0}"
NICE="${NICE:-0}"

ONLY=("$@")
for m in "${ONLY[@]}"; do
  case $m in resnet20 | resnet56 | resnet110) ;; *) echo "landscapes.sh: unknown model '$m' (resnet20, resnet56, resnet110)" >&2; exit 2 ;; esac
done

run() {  # run MODEL WEIGHTS
  local model=$1 weights=$2 stem=residual
  if [[ ${#ONLY[@]} -gt 0 && ! " ${ONLY[*]} " =~ " $model " ]]; then return 0; fi
  if [[ "$weights" == plain ]]; then stem=plain; fi
  local cmd=(nice -n "$NICE" "$PY" -m app.cli landscape "$model" --weights "$weights" --grid "$GRID" --span "$SPAN"
    --images "$IMAGES" --seed "$SEED" --out "$OUT/$model-$stem.json")
  echo "+ ${cmd[*]}"
  "${cmd[@]}"
}

for model in resnet20 resnet56 resnet110; do
  run "$model" trained
  run "$model" plain
done
