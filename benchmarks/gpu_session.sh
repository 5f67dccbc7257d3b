#!/usr/bin/env bash
# The GPU checks of issue 13 (item 6) as one prepared command for a lent device machine, whose python3 holds a
# CUDA torch and most of our dependencies but not transformer-lens and three packages it imports.
#
#   bash benchmarks/gpu_session.sh --wheels   # here, once: those four wheels into .whl/ (2.4 MB, git-ignored)
#   device run, carry [".whl"], timeout_s 540:  bash benchmarks/gpu_session.sh
#   a second device run, carry [".whl"], timeout_s 300:  bash benchmarks/gpu_session.sh report
#
# On the device it installs the wheels into /tmp/site, runs the gpu-marked tests, then
# benchmarks/device_training.py (steps per second, default and Garg-standard models, float32/bfloat16,
# eager/compiled); with `report`, instead the report on the Garg-standard model on the GPU
# (benchmarks/field_report.py --device cuda). Logs and JSON go under $OUT (the device tool brings them back).
set -uo pipefail
cd "$(dirname "$0")/.."
if [ "${1:-}" = "--wheels" ]; then
    "${PYTHON:-.venv/bin/python}" -m pip download -q --no-deps --only-binary=:all: --python-version 3.12 --implementation cp \
        --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 --platform manylinux2014_x86_64 \
        -d .whl transformer-lens==4.3.0 datasets==5.2.0 dill==0.4.1 multiprocess==0.70.19
    exit
fi
OUT="${OUT:-out/gpu}"
mkdir -p "$OUT"
python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .whl/*.whl || exit 1
export PYTHONPATH="/tmp/site:$PWD" PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv | tee "$OUT/gpu.txt"
python3 -c "import torch, transformer_lens, icl_interp; print('torch', torch.__version__, 'cuda', torch.cuda.is_available())" \
    | tee -a "$OUT/gpu.txt" || exit 1
if [ "${1:-}" = "report" ]; then  # issue 29, item 6: the report on the Garg-standard model on the GPU
    timeout 270 python3 benchmarks/field_report.py --device cuda --threads 16 --out "$OUT/field_report" 2>&1 | tee "$OUT/field_report.log"
    exit
fi
timeout 150 python3 -m pytest -m "gpu and not slow" -q -p no:cacheprovider 2>&1 | tee "$OUT/gpu_tests.log"
timeout 330 python3 benchmarks/device_training.py --device cuda --out "$OUT/device_training.json" 2>&1 | tee "$OUT/device_training.log"
