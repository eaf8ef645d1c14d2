#!/usr/bin/env bash
# The GPU checks in one run (about 5-8 minutes on one H200): the CUDA tests, the GPU rows of the training
# benchmark (eager, channels_last, torch.compile under bf16) and the data benchmark, whose augmentation
# part then also times the GPU path. Results go to $OUT (or ./gpu-results) as JSON plus a log.
#
# On the workplace's device machine, python3 already holds torch, lightning, numba, h5py, scipy and the
# rest; astropy (and what it needs) must travel as wheels for Python 3.12. Prepare them once here:
#
#   echo /.whl/ >> .git/info/exclude
#   python3 -m pip download --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
#       -d .whl astropy pyerfa astropy-iers-data
#
# then run there (carry [".whl"], timeout 600):   bash benchmarks/gpu_checks.sh
#
# All steps together can outlast one 600 s command: name the steps to run, e.g.
#   bash benchmarks/gpu_checks.sh device bench_predict        (the prediction rows alone, about 4 minutes)
# DRY_RUN=1 prints each step's command instead of running it (no GPU needed).
#
# bench_predict: lens_flow through `lexactum predict` from a prepared cache and an HDF5 cube of 200,000 cutouts
# made on the fly (8 GB each under $PREDICT_WORK, deleted afterwards), batch 1024, workers from the cores and
# 8, with the plain loop beside them: images/s and the share of time the GPU waits for data.
set -uo pipefail
cd "$(dirname "$0")/.."
OUT="${OUT:-gpu-results}"
mkdir -p "$OUT"
PYTHON="${PYTHON:-python3}"
if [ -d .whl ] && ls .whl/*.whl >/dev/null 2>&1; then
    "$PYTHON" -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade --target /tmp/site \
        .whl/*.whl || exit 1
    export PYTHONPATH="/tmp/site${PYTHONPATH:+:$PYTHONPATH}"
fi
export PYTHONPATH="$PWD/src${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1 MPLBACKEND=Agg LEXACTUM_NO_PROGRESS=1
LOG="$OUT/gpu_checks.log"
status=0
SELECTED=" $* "
step() {  # step NAME TIMEOUT_S COMMAND...: run it, log it, remember a failure and go on
    local name=$1 limit=$2
    shift 2
    [ "$SELECTED" = "  " ] || [[ "$SELECTED" == *" $name "* ]] || return 0
    if [ -n "${DRY_RUN:-}" ]; then
        echo "== $name (timeout $limit s): $*"
        return 0
    fi
    echo "== $name ($(date -u +%H:%M:%S))" | tee -a "$LOG"
    timeout "$limit" "$@" 2>&1 | tee -a "$LOG"
    local rc=${PIPESTATUS[0]}
    echo "== $name: exit $rc" | tee -a "$LOG"
    [ "$rc" -eq 0 ] || status=1
}

step "device" 60 "$PYTHON" -c "import torch; print(torch.__version__, torch.cuda.get_device_name(0))"
step "cuda tests" 240 "$PYTHON" -m pytest -q -p no:cacheprovider tests/data/test_augment.py tests/test_training.py \
    tests/evaluation -k "cuda or gpu or device"
step "bench_train" 300 "$PYTHON" benchmarks/bench_train.py --device cuda --epoch-images 0 \
    --json "$OUT/bench_train_gpu.json"
step "bench_data" 240 "$PYTHON" benchmarks/bench_data.py --n 100 --surveys space ground \
    --json "$OUT/bench_data_gpu.json"
PREDICT_WORK="${PREDICT_WORK:-/tmp/bench_predict_gpu}"
step "bench_predict" 330 "$PYTHON" benchmarks/bench_predict.py speed --device cuda --n 2000 --scale 200000 \
    --models lens_flow --inputs cache hdf5 --workers -1 8 --devices 1 --batch-size 1024 --work "$PREDICT_WORK" \
    --json "$OUT/bench_predict_gpu.json"
[ -n "${DRY_RUN:-}" ] || rm -rf "$PREDICT_WORK"
exit $status
