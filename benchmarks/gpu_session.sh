#!/usr/bin/env bash
# The GPU runs issue 10 owes, as ONE script for a lent GPU machine with a 15-minute device
# budget and a 10-minute limit per call: two calls, run back to back while the machine is warm.
#
#     --part 1  (~9.5 min)  setup, kernels load, the GPU tests, the step benchmark
#                           (benchmarks/graph_step.py), the GEMM benchmark if
#                           benchmarks/gemm_cuda.py exists, the epoch benchmark
#                           (benchmarks/gpu_epoch.py) on the full 50k-image JPEG copy
#     --part 2  (BUDGET)    full-size training on the JPEG copy, ResNet-20, 30 epochs: minires
#                           --graph and the PyTorch reference, seed 0; then the paper's 64k-iteration
#                           recipe for minires (resumable: a later call or session continues it);
#                           then seed 1 of the 30-epoch pair if time is left
#     --part 3  (BUDGET)    the 64k-iteration recipe alone, started or resumed, for a session that
#                           can give it a whole call (BUDGET default 570: one 10-minute call)
#
# Steps run in order of importance, each under its own limit and all under one deadline
# (BUDGET seconds; defaults 540, 240, 570 for parts 1, 2, 3: set BUDGET for part 2 from the
# device time left), so a slow step costs only what comes after it.  How to run it, and what
# each figure fills in docs/benchmarks.md and docs/results.md: docs/gpu-session.md.  In short,
# once, in the checkout that the device tool sends (.gitignore ignores /.data/):
#     mkdir -p .data && cp ../shared/data/cifar-10-jpeg.tar.gz .data/
#     device run, carry [".data"], timeout_s 600:  bash benchmarks/gpu_session.sh --part 1
#     device run, carry [".data"], timeout_s 600:  BUDGET=... bash benchmarks/gpu_session.sh --part 2
# Everything goes to $OUT: session-N.log (all output), graph_step.json, gpu_epoch.json,
# runs-N.tar.gz (each run folder's config, metrics, curves and, for the 64k run, the
# checkpoint to resume from).  At most 8 files come back from $OUT: keep it that way.
set -uo pipefail
PART=1
while (($#)); do
  case $1 in
    --part) PART=${2:-}; shift 2 ;;
    --part=*) PART=${1#--part=}; shift ;;
    -h|--help) sed -n '2,/^set -uo/p' "$0" | sed '$d'; exit 0 ;;
    *) echo "gpu_session.sh: unknown argument $1 (usage: gpu_session.sh --part 1|2|3)" >&2; exit 2 ;;
  esac
done
[[ $PART == [123] ]] || { echo "gpu_session.sh: --part must be 1, 2 or 3, got '$PART'" >&2; exit 2; }
OUT=${OUT:-/tmp/minires-gpu}
case $PART in 1) DEFAULT_BUDGET=540 ;; 2) DEFAULT_BUDGET=240 ;; 3) DEFAULT_BUDGET=570 ;; esac
BUDGET=${BUDGET:-$DEFAULT_BUDGET}
DATA=$PWD/.data                        # carried: cifar-10-jpeg.tar.gz (and runs to resume)
JPEG=$DATA/cifar-10-jpeg               # extracted here: train/<class>/*.jpg, test/<class>/*.jpg
RUNS=$DATA/runs
mkdir -p "$OUT" "$RUNS"
export PYTHONUNBUFFERED=1
LOG="$OUT/session-$PART.log"
START=$SECONDS
log() { echo "== [$((SECONDS - START)) s] $*" | tee -a "$LOG"; }
left() { echo $((BUDGET - (SECONDS - START))); }
# step LIMIT CMD...: run CMD under min(LIMIT, time left), its output into the log; SIGTERM at
# the limit (minires train saves its run folder on it), SIGKILL 15 s later.
step() {
  local limit=$1; shift
  local l; l=$(left)
  (( l < limit )) && limit=$l
  if (( limit < 15 )); then log "skipped (out of time): $*"; return 1; fi
  log "run (limit $limit s): $*"
  timeout -k 15 "$limit" "$@" 2>&1 | tee -a "$LOG"
  local rc=${PIPESTATUS[0]}
  log "exit $rc$( ((rc == 124)) && echo ' (timed out)')"
  return "$rc"
}
pack_runs() {   # the run folders (small: ResNet-20's checkpoint is a few MB) as one file
  tar czf "$OUT/runs-$PART.tar.gz" -C "$DATA" runs 2>>"$LOG" && log "packed $OUT/runs-$PART.tar.gz"
}

log "part $PART, $(date -u +%FT%TZ), commit $(git rev-parse --short HEAD 2>/dev/null || echo '?'), budget $BUDGET s"
log "$(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader 2>&1)"
# --- setup (both parts: a fresh machine keeps nothing; a warm one skips what is there)
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2 | tee -a "$LOG"
if ! python3 -c "import minires.kernels.cuda" 2>>"$LOG"; then   # no install: run from the tree
  log "pip install -e failed; using the source tree"
  ln -sfn ../kernels minires/kernels; export PYTHONPATH=$PWD
fi
if [[ ! -d $JPEG/train ]]; then
  if [[ -f $DATA/cifar-10-jpeg.tar.gz ]]; then
    tar xzf "$DATA/cifar-10-jpeg.tar.gz" -C "$DATA" && log "extracted the JPEG copy into $JPEG"
  else
    log "NO DATA: $DATA/cifar-10-jpeg.tar.gz is missing (carry .data); the epoch benchmark and the runs will fail"
  fi
fi
step 60 python3 -c "import minires, cupy, numba, torch; print('minires', minires.__version__, 'cupy',
      cupy.__version__, 'numba', numba.__version__, 'torch', torch.__version__,
      'cuda available:', minires.backend.cuda_is_available())"
log "every CUDA kernel compiles and loads (CuPy's disk cache keeps them for the steps below)"
step 120 python3 -c "
import time; t = time.perf_counter()
from minires.kernels import cuda; cuda.load_all(); print(f'loaded in {time.perf_counter() - t:.1f} s')"
# the JPEG copy decoded once into the image-folder cache that every later step reads
[[ -d $JPEG/train ]] && step 120 python3 -c "
import time; t = time.perf_counter()
from minires import data
for split in (True, False):
    s = data.ImageFolderSplit('$JPEG', train=split, progress=False); print(s, s.cache_path)
print(f'decoded/loaded in {time.perf_counter() - t:.1f} s')"

if [[ $PART == 1 ]]; then
  log "1. GPU tests: CUDA-graph mode first, then every other test marked gpu"
  XDIST=$(python3 -c "import xdist" 2>/dev/null && echo "-n 4")   # 4 processes on the one GPU
  step 60 python3 -m pytest -q -m gpu tests/test_cuda_graph.py -p no:cacheprovider -rfE
  step 120 python3 -m pytest -q -m gpu tests --ignore=tests/test_cuda_graph.py -p no:cacheprovider \
      $XDIST --maxfail=20 -rfE

  log "2. the training step: minires eager/own GEMM/graph vs PyTorch eager/graph/compile, fp32 and tf32"
  step 220 python3 benchmarks/graph_step.py --repeats 30 --budget 150 --compile-timeout 120 \
      --json "$OUT/graph_step.json"

  if [[ -f benchmarks/gemm_cuda.py ]]; then
    log "3. the GEMM kernels (benchmarks/gemm_cuda.py)"
    step 60 python3 benchmarks/gemm_cuda.py
  else
    log "3. no benchmarks/gemm_cuda.py in this checkout: GEMM benchmark skipped"
  fi

  log "4. epoch time on the 50k JPEG copy, data and augmentation on the device"
  step 150 python3 benchmarks/gpu_epoch.py --data "$JPEG" --epochs 2 --json "$OUT/gpu_epoch.json"
fi
COMMON=(--dataset imagefolder --data-dir "$JPEG" --augment --batch-size 128)
E30=(--epochs 30 --milestones 15 22)
# minires_run LIMIT RUN ARGS...: `minires train ARGS --out RUN`, or, when RUN already holds a run
# (an earlier call's, cut off at its limit and saved), `minires train --resume RUN`.
minires_run() {
  local limit=$1 run=$2; shift 2
  if [[ -f $run/config.json ]]; then
    step "$limit" python3 -m minires train --resume "$run" --device gpu --graph --no-progress
  else
    step "$limit" python3 -m minires train --model resnet20 "${COMMON[@]}" "$@" --device gpu --graph \
        --out "$run" --no-progress
  fi
  pack_runs
}
# torch_run LIMIT RUN SEED: the PyTorch reference, 30 epochs, unless RUN already holds all 30
torch_run() {
  if [[ -f $2/metrics.jsonl ]] && (( $(wc -l < "$2/metrics.jsonl") >= 30 )); then
    log "$2 already holds 30 epochs: not run again"; return 0
  fi
  step "$1" python3 benchmarks/torch_reference_train.py "${COMMON[@]}" "${E30[@]}" --seed "$3" \
      --device cuda --data-device cuda --out "$2"
  pack_runs
}
PAPER=(--iterations 64000 --milestones 32000 48000 --seed 0)
if [[ $PART == 2 ]]; then
  log "1. full size, 30 epochs (lr 0.1, /10 at epochs 15 and 22), seed 0: minires --graph, then PyTorch"
  minires_run 240 "$RUNS/minires-jpeg-e30-s0" "${E30[@]}" --seed 0
  torch_run 180 "$RUNS/torch-jpeg-e30-s0" 0
  log "2. the paper's recipe: 64k iterations, lr 0.1, /10 at 32k and 48k (resumed if a run folder is there)"
  minires_run 300 "$RUNS/minires-jpeg-64k-s0" "${PAPER[@]}"
  log "3. seed 1 of the 30-epoch pair, if time is left"
  minires_run 240 "$RUNS/minires-jpeg-e30-s1" "${E30[@]}" --seed 1
  torch_run 180 "$RUNS/torch-jpeg-e30-s1" 1
fi
if [[ $PART == 3 ]]; then
  log "the paper's recipe alone: 64k iterations, lr 0.1, /10 at 32k and 48k (resumed if a run folder is there)"
  minires_run "$BUDGET" "$RUNS/minires-jpeg-64k-s0" "${PAPER[@]}"
fi
log "done $(date -u +%FT%TZ)"
