#!/usr/bin/env bash
# Train the shipped CIFAR weights on the generated data set (no download, CPU, deterministic by seed):
# resnet20, resnet32, resnet44, resnet56 and resnet110, each residual and plain (every shortcut gate 0), into models/weights/.
# Writes <model>-residual.pt / <model>-plain.pt (float16 state dicts) and a .log.json beside each.
#
#   scripts/make_weights.sh                    # all ten, one after the other
#   scripts/make_weights.sh resnet110          # only the named models (residual and plain)
#   LOG_DIR=/tmp scripts/make_weights.sh       # also keep each run's progress in $LOG_DIR/train-<stem>.log
#
# ResNet-110 gets a longer warmup (60 steps instead of the default 5 %): with 15 steps to lr 0.05 the
# residual net blew up (loss 8.8 at step 15) and spent its 300 steps near chance, much as He et al.
# (Section 4.2) warm ResNet-110 up at a lower rate. The plain twin gets the same recipe.
#
# One thread is the default: on a small shared machine two OpenMP threads ran 2-4x slower per step
# than one once other jobs competed for the cores. Set OMP_NUM_THREADS to override.
set -euo pipefail
cd "$(dirname "$0")/.."

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY="${PY:-.venv/bin/python}"
OUT=models/weights
SEED=0

ONLY=("$@")
for m in "${ONLY[@]}"; do
  case $m in resnet20 | resnet32 | resnet44 | resnet56 | resnet110) ;; *) echo "make_weights.sh: unknown model '$m' (resnet20, resnet32, resnet44, resnet56, resnet110)" >&2; exit 2 ;; esac
done

run() {  # run MODEL STEPS [--plain] [more train options]
  local model=$1 steps=$2 variant=residual
  shift 2
  if [[ ${#ONLY[@]} -gt 0 && ! " ${ONLY[*]} " =~ " $model " ]]; then return 0; fi
  if [[ "${1:-}" == "--plain" ]]; then variant=plain; fi
  local cmd=("$PY" -m app.nets.train "$model" "$@" --steps "$steps" --seed "$SEED" --out "$OUT")
  echo "+ OMP_NUM_THREADS=$OMP_NUM_THREADS ${cmd[*]}"
  if [[ -n "${LOG_DIR:-}" ]]; then
    "${cmd[@]}" 2>&1 | tee "$LOG_DIR/train-$model-$variant.log"
  else
    "${cmd[@]}"
  fi
}

run resnet20 400
run resnet20 400 --plain
run resnet32 400
run resnet32 400 --plain
run resnet44 400
run resnet44 400 --plain
run resnet56 400
run resnet56 400 --plain
run resnet110 300 --warmup 60
run resnet110 300 --plain --warmup 60
