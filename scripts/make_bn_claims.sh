#!/usr/bin/env bash
# The training logs behind the lab's batch-norm views (GET /api/lab/bn-claims, docs/batchnorm.md), into models/weights/:
#
#   <model>-<variant>-nobn.log.json  the same network with every batch norm replaced by the identity: same data,
#                                    seed and schedule (400 steps, batch 64, SGD momentum 0.9, warmup + cosine, peak
#                                    lr 0.05). A run that diverges or ends at chance (train loss > ln 10 - 0.1) is
#                                    retried once at peak lr 0.01; the log records both attempts ("attempts").
#   <model>-<variant>-bn.log.json    the shipped BN run again with the same seed (no weights written), recording
#                                    ||dL/dW|| of every conv layer; "reproduces" says whether its loss curve equals
#                                    the shipped <model>-<variant>.log.json step for step.
#
# Both record the conv gradient norms at steps 0, 10, 50, 100, 200 and 399. No state dict is written.
#
#   scripts/make_bn_claims.sh                 # ResNet-20 and ResNet-56, residual and plain: 8 runs, one at a time
#   JOBS=2 scripts/make_bn_claims.sh          # residual and plain runs in two queues side by side
#   scripts/make_bn_claims.sh resnet20        # only the named models
#   LOG_DIR=/tmp scripts/make_bn_claims.sh    # also keep each run's progress in $LOG_DIR/bnclaims-<stem>.log
#
# Every run has one torch thread and nice 10 (the machine is shared).
set -euo pipefail
cd "$(dirname "$0")/.."

export OMP_NUM_THREADS="${OMP_NUM_THREADS:-1}"
PY="${PY:-.venv/bin/python}"
OUT=models/weights
JOBS="${JOBS:-1}"
MODELS=("$@")
if [[ ${#MODELS[@]} -eq 0 ]]; then MODELS=(resnet56 resnet20); fi
for m in "${MODELS[@]}"; do
  case $m in resnet20 | resnet32 | resnet44 | resnet56 | resnet110) ;; *) echo "make_bn_claims.sh: unknown model '$m'" >&2; exit 2 ;; esac
done

run() {  # run MODEL VARIANT nobn|bn
  local model=$1 variant=$2 kind=$3
  local args=("$model" --steps 400 --seed 0 --grad-norms-at default --out "$OUT")
  if [[ $variant == plain ]]; then args+=(--plain); fi
  if [[ $kind == nobn ]]; then
    args+=(--no-bn --retry-lr 0.01)
  else
    args+=(--no-weights --tag bn --compare-log "$OUT/$model-$variant.log.json")
  fi
  local cmd=(nice -n 10 "$PY" -m app.nets.train "${args[@]}")
  echo "+ OMP_NUM_THREADS=$OMP_NUM_THREADS ${cmd[*]}"
  if [[ -n "${LOG_DIR:-}" ]]; then
    "${cmd[@]}" 2>&1 | tee "$LOG_DIR/bnclaims-$model-$variant-$kind.log"
  else
    "${cmd[@]}"
  fi
}

queue() {  # queue VARIANT...: every model's no-BN run, then its BN rerun
  for model in "${MODELS[@]}"; do
    for variant in "$@"; do
      run "$model" "$variant" nobn
      run "$model" "$variant" bn
    done
  done
}

if [[ $JOBS -ge 2 ]]; then
  queue residual &
  first=$!
  queue plain &
  second=$!
  wait "$first"
  wait "$second"
else
  queue residual plain
fi
