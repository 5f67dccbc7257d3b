#!/usr/bin/env bash
# Run every benchmark in turn (each under 2 minutes by default); pass --full for the bigger settings.
# Prints each script's output and, at the end, every RATIO line. Exits non-zero if any benchmark
# fails (a disagreement between ours and the usual way raises and fails its script).
set -u
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
export OMP_NUM_THREADS=1 MKL_NUM_THREADS=1
status=0
ratios=()
for name in ablation_sweep gradient_importance probing lasso training_step patching_sweep attribution_patching import_cost; do
    echo "=== $name"
    start=$SECONDS
    if out=$("$PY" "benchmarks/$name.py" "$@" 2>&1); then
        echo "$out"
        ratios+=("$(echo "$out" | tail -n 1)")
    else
        echo "$out"
        echo "FAILED: $name"
        ratios+=("FAILED $name")
        status=1
    fi
    echo "--- $name took $((SECONDS - start)) s"
done
echo "=== summary"
printf '%s\n' "${ratios[@]}"
exit $status
