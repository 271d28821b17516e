#!/usr/bin/env bash
# Everything the GPU needs to do for eva9, as one command on one GPU machine, with its logs and results in OUT:
#
#     . .gpu-kit/setup.sh && bash benchmarks/gpu_runs.sh OUT
#
# 1. the CUDA tests (skipped on a CPU), 2. the seed run, 3. the fast run (each: results/<profile>.json and the
# float16 weights in results/weights/, see full_runs.py), 4. where an epoch's time goes (bench_epoch.py).
# Each step has a time limit (seconds, from the environment: TESTS_LIMIT, SEED_LIMIT, FAST_LIMIT, EPOCH_LIMIT), so a
# slow step cannot starve the packing at the end; run the same command again on the same machine and the runs
# continue where they stopped (--resume). RUN_ARGS adds options to full_runs.py and bench_epoch.py: a CPU dry run of
# this script is RUN_ARGS="--epochs 1 --train-per-class 60 --test-per-class 10" PYTHON=.venv/bin/python (60 per
# class, as fast's batch of 512 needs more than 500 training images).
# The results travel back as OUT/bundle.tar.NN, parts of at most 15 MiB:
#     cat OUT/bundle.tar.* | tar -x     # in the checkout: results/, benchmarks/results/epoch.json, gpu-logs/
set -uo pipefail
out=${1:?usage: bash benchmarks/gpu_runs.sh OUT}
python=${PYTHON:-python3}
logs=$(mktemp -d)/gpu-logs  # bundled with the results, never left in the checkout
mkdir -p "$out" "$logs"
export PYTHONUNBUFFERED=1
: "${EVA9_DATA_DIR:?set EVA9_DATA_DIR (. .gpu-kit/setup.sh does)}"

step() {  # step NAME LIMIT COMMAND...: run with a time limit, log to gpu-logs/NAME.log, say how it ended
  local name=$1 limit=$2 started=$SECONDS status
  shift 2
  echo "=== $name (limit ${limit}s): $*"
  timeout --kill-after=10 "$limit" "$@" 2>&1 | tee "$logs/$name.log"
  status=${PIPESTATUS[0]}
  echo "=== $name: exit $status after $((SECONDS - started)) s" | tee -a "$logs/steps.log"
}

{ nvidia-smi --query-gpu=name,memory.total,driver_version,clocks.max.sm --format=csv; nproc; } > "$logs/machine.txt" 2>&1
step cuda-tests "${TESTS_LIMIT:-60}" "$python" -m pytest tests --ignore=tests/html -k cuda -rs -q -p no:cacheprovider
step seed "${SEED_LIMIT:-290}" "$python" benchmarks/full_runs.py --profile seed --resume --out results ${RUN_ARGS:-}
step fast "${FAST_LIMIT:-110}" "$python" benchmarks/full_runs.py --profile fast --resume --out results ${RUN_ARGS:-}
step epoch "${EPOCH_LIMIT:-80}" "$python" benchmarks/bench_epoch.py --out benchmarks/results \
  $(echo "${RUN_ARGS:-}" | sed 's/--epochs [0-9]*//')

for run in runs/full-*; do  # the small files of each run folder (the checkpoint stays behind)
  [ -d "$run" ] && mkdir -p "$logs/$(basename "$run")" && cp "$run"/*.json "$logs/$(basename "$run")/"
done
tar -cf - results $(ls benchmarks/results/epoch.json 2>/dev/null) -C "$(dirname "$logs")" gpu-logs \
  | split -b 15m -d - "$out/bundle.tar."
ls -l "$out"
cat "$logs/steps.log"
