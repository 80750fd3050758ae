#!/usr/bin/env bash
# The GPU runs the GPU-backend issue owes, as one script for a lent GPU machine
# (under 10 minutes; the steps run in order of importance, each under its own
# time limit and all under one deadline, so a slow step costs only what comes after it).
# From a checkout, with the CIFAR-10 subset copied into an ignored folder that travels:
#     echo /.data/ >> .git/info/exclude; mkdir -p .data; cp ../shared/data/cifar-10-subset-*.tar.gz .data/
#     device run (carry: [".data"]):  bash benchmarks/gpu_session.sh
# Everything goes to $OUT/session.log, plus the two runs' metrics and curves.
set -uo pipefail
OUT=${OUT:-/tmp/minires-gpu}
BUDGET=${BUDGET:-570}                 # seconds for the whole script
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
export MINIRES_TEST_DATA=$PWD/.data   # the tests' real-data cases read the subset from here
LOG="$OUT/session.log"
START=$SECONDS
log() { echo "== [$((SECONDS - START)) s] $*" | tee -a "$LOG"; }
# step LIMIT CMD...: run CMD under min(LIMIT, time left), output into the log.
step() {
  local limit=$1; shift
  local left=$((BUDGET - (SECONDS - START)))
  (( left < limit )) && limit=$left
  if (( limit < 10 )); then log "skipped (out of time): $*"; return; fi
  timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "exit $rc$( ((rc == 124)) && echo ' (timed out)')"
}

log "$(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2 | tee -a "$LOG"
if ! python3 -c "import minires.kernels.cuda" 2>>"$LOG"; then   # no install: run from the tree
  log "pip install -e failed; using the source tree"
  ln -sfn ../kernels minires/kernels; export PYTHONPATH=$PWD
fi
step 60 python3 -c "import minires, cupy, numba, torch; print('minires', minires.__version__, 'cupy',
      cupy.__version__, 'numba', numba.__version__, 'torch', torch.__version__,
      'cuda available:', minires.backend.cuda_is_available())"

log "1. every CUDA kernel compiles and loads"
step 90 python3 -c "from minires.kernels import cuda; cuda.load_all(); print('loaded')"

log "2. the GPU tests (marker gpu)"
step 200 python3 -m pytest -q -m gpu tests -p no:cacheprovider --maxfail=20 -rfE

log "3. ResNet-20, 30 epochs on the CIFAR-10 subset, on the GPU"
step 150 python3 -m minires train --model resnet20 --dataset cifar10 --data-dir .data --no-download \
    --epochs 30 --milestones 15 22 --batch-size 128 --device gpu --seed 0 --out /tmp/run-minires \
    --no-progress
cp /tmp/run-minires/metrics.jsonl "$OUT/minires-metrics.jsonl" 2>/dev/null
cp /tmp/run-minires/curves.png "$OUT/minires-curves.png" 2>/dev/null

log "4. benchmarks: the training step (minires vs PyTorch), time shares, conv layers"
step 60 python3 benchmarks/resnet20_step.py --device cuda --repeats 30
step 45 python3 benchmarks/profile_step.py --device cuda
step 45 python3 -c "
import minires.kernels.cuda as K; K.GEMM = 'own'; print('GEMM = own')
import runpy, sys; sys.argv = ['profile_step.py', '--device', 'cuda']
runpy.run_path('benchmarks/profile_step.py', run_name='__main__')"
step 60 python3 benchmarks/conv_layers.py --device cuda

log "5. the PyTorch reference, same recipe, on the GPU"
step 90 python3 benchmarks/torch_reference_train.py --dataset cifar10 --data-dir .data --epochs 30 \
    --milestones 15 22 --seed 0 --device cuda --out /tmp/run-torch
cp /tmp/run-torch/metrics.jsonl "$OUT/torch-metrics.jsonl" 2>/dev/null

log "6. the rest of the test suite (everything not marked gpu or slow)"
step 240 python3 -m pytest -q tests -p no:cacheprovider -m "not gpu and not slow" -n 8 -rfE
log "done $(date -u +%FT%TZ)"
