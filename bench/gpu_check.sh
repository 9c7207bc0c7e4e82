#!/usr/bin/env bash
# The CUDA tests and the GPU figures of the speed work, as one prepared run on a lent GPU machine.
#
#   bash bench/gpu_check.sh [tests] [train] [infer]     (default: all three)
#
# Each part should take a few minutes (compiling included); where device time is short, run each as its
# own command, so that a part that overruns does not take the others' figures with it.
#
# tests: the tests that skip without CUDA (CUDA-graph inference, fp16/bf16, out-of-memory back-off, auto
#        tiles, CUDA training, metrics, degradations on the GPU);
# train: bench/train_speed.py, the recipe's GAN-phase step at batch 16 / GT 128, fp32 and fp16 eager, then
#        fp16 compiled and compiled with CUDA graphs (train.cuda_graphs) (the baseline: 0.224 s in
#        fp32), with peak memory;
# infer: bench/infer.py, 1280x720 x4 RRDB 64/23 in fp16, untiled and auto tiles, eager and compiled
#        (CUDA graphs), images/s and peak memory.
#
# The device machine has PyTorch but not PyAV, kornia or spandrel, and reaches no registry: download
# their wheels here first (PyPI reachable), in the repository root, and carry the folder:
#
#   mkdir -p .git/info && echo /.whl/ >> .git/info/exclude
#   python3 -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
#       --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 -d .whl \
#       av==18.1.0 kornia==0.9.0 kornia_rs==0.2.0 spandrel==0.4.2
#
# then: run(command="bash bench/gpu_check.sh", carry=[".whl"], timeout_s=600). Logs go to $OUT.
set -uo pipefail
export PYTHONUNBUFFERED=1
OUT=${OUT:-/tmp/gpu_check}
mkdir -p "$OUT"
python3 -c "import sys; print('python', sys.version.split()[0])"
if compgen -G ".whl/*.whl" >/dev/null; then
    if python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --upgrade \
        --target /tmp/site .whl/*.whl; then
        export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
    else
        echo "the carried wheels do not install on this Python (downloaded for 3.12?): going on without" >&2
    fi
fi
python3 -c "import pytest, einops, safetensors, av, kornia, spandrel" ||
    echo "a package the checks import is missing (see the download above): later parts may fail" >&2
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader
python3 -c "import torch; print('torch', torch.__version__, torch.cuda.get_device_name())"

parts=("$@")
[ ${#parts[@]} -eq 0 ] && parts=(tests train infer)
status=0
for part in "${parts[@]}"; do
    echo "== $part ($(date +%T))"
    case $part in
    tests)
        python3 -m pytest -q -p no:cacheprovider -rs -k "cuda or gpu" tests 2>&1 |
            tee "$OUT/tests.log" || status=1
        ;;
    train)
        for settings in "fp32 fp16 --compile off" "fp16 --compile on graphs"; do
            # shellcheck disable=SC2086 # the settings are words
            python3 bench/train_speed.py --phases GAN --precisions $settings --warmup 10 --steps 20 \
                2>>"$OUT/train_speed.err" | tee -a "$OUT/train_speed.log" || status=1
        done
        ;;
    infer)
        python3 bench/infer.py --device cuda --precision fp16 --sizes 720x1280 --modes untiled auto \
            --compile --repeats 5 --skip precision memory compact seams realesrgan 2>&1 |
            tee "$OUT/infer.log" || status=1
        ;;
    *)
        echo "unknown part: $part (expected tests, train or infer)" >&2
        exit 2
        ;;
    esac
done
exit $status
