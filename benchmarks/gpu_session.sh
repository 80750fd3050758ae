#!/usr/bin/env bash
# The GPU runs the GPU-backend issue owes, as one script for a lent GPU machine
# (about 8 minutes on an H100).  From a checkout, with the CIFAR-10 subset copied
# into an ignored folder that travels:
#     echo /.data/ >> .git/info/exclude; mkdir -p .data; cp ../shared/data/cifar-10-subset-python.tar.gz .data/
#     device run (carry: [".data"]):  bash benchmarks/gpu_session.sh
# Everything it prints also lands in $OUT (the device tool brings $OUT back).
set -uo pipefail
OUT=${OUT:-/tmp/minires-gpu}
mkdir -p "$OUT"
export PYTHONUNBUFFERED=1
log() { echo "== $*" | tee -a "$OUT/session.log"; }

log "$(date -u +%FT%TZ) $(nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader)"
python3 -m pip install -q --no-deps --no-build-isolation -e . 2>&1 | tail -2
python3 -c "import minires, cupy; print('minires', minires.__version__, 'cupy', cupy.__version__,
      'cuda available:', minires.backend.cuda_is_available())" | tee -a "$OUT/session.log"

log "1. every CUDA kernel compiles and loads"
timeout 120 python3 -c "from minires.kernels import cuda; cuda.load_all(); print('loaded')" 2>&1 | tee -a "$OUT/session.log"

log "2. the GPU tests (marker gpu), then the whole suite"
timeout 300 python3 -m pytest -q -m gpu tests -x 2>&1 | tail -25 | tee "$OUT/pytest-gpu.log"
timeout 300 python3 -m pytest -q tests 2>&1 | tail -5 | tee "$OUT/pytest-all.log"

log "3. benchmarks: conv layers, the training step (minires vs PyTorch), time shares"
timeout 120 python3 benchmarks/conv_layers.py --device cuda 2>&1 | tee "$OUT/bench-conv-layers.txt"
timeout 120 python3 benchmarks/resnet20_step.py --device cuda --repeats 20 2>&1 | tee "$OUT/bench-step.txt"
timeout 120 python3 benchmarks/profile_step.py --device cuda 2>&1 | tee "$OUT/bench-profile.txt"
for gemm in own; do
  timeout 120 python3 -c "
import minires.kernels.cuda as K; K.GEMM = '$gemm'
import runpy, sys; sys.argv = ['profile_step.py', '--device', 'cuda']
runpy.run_path('benchmarks/profile_step.py', run_name='__main__')" 2>&1 | tee "$OUT/bench-profile-gemm-$gemm.txt"
done

log "4. ResNet-20, 30 epochs on the CIFAR-10 subset, on the GPU"
timeout 600 python3 -m minires train --model resnet20 --dataset cifar10 --data-dir .data --no-download \
    --epochs 30 --milestones 15 22 --batch-size 128 --device gpu --seed 0 --out "$OUT/run-cifar-subset" \
    --no-progress 2>&1 | tee "$OUT/train-cifar-subset.log"
log "done $(date -u +%FT%TZ)"
