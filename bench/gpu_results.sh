#!/usr/bin/env bash
# Train all 10 folds of every model family (utt_fusion; utt_shared + ifmmin; nmer_pretrain + nmer) at
# full recipe on the synthetic iemocap preset on one GPU, print per-model throughput, GPU utilisation
# and the results table, and write them under $OUT (or build/gpu-results).  One prepared command:
#
#     bash bench/gpu_results.sh                 # on the GPU machine, from a fresh checkout
#     bash bench/gpu_results.sh --dry-run       # anywhere: CPU, tiny preset, 2 folds, 1 epoch per stage
#
# Python: the first of $MER_PYTHON, python3 and /opt/torch/.venv/bin/python3 whose torch sees a CUDA
# device (the GPU machine has a CUDA torch and no network, so nothing is installed there; the repo is
# put on PYTHONPATH).  Without one it says so and falls back to the project's CPU venv (.venv, made by
# `make .venv/.core`: torch==2.13.0 first), which is enough for --dry-run and useless for a GPU run.
# Options after the script name go to bench/gpu_results.py (--parallel N, --precision bf16, --folds 1-3 ...).
set -euo pipefail
cd "$(dirname "$0")/.."

needs_deps='import torch, numpy, h5py, yaml, pandas, tqdm, sklearn'
pick=""
for py in "${MER_PYTHON:-}" python3 /opt/torch/.venv/bin/python3; do
    [ -n "$py" ] && command -v "$py" >/dev/null 2>&1 || continue
    if "$py" -c "$needs_deps; assert torch.cuda.is_available()" >/dev/null 2>&1; then
        pick="$py"
        break
    fi
done

if [ -n "$pick" ]; then
    echo "gpu_results.sh: CUDA torch: $("$pick" -c 'import torch; print(torch.__version__, torch.cuda.get_device_name(0))') ($pick)"
else
    echo "gpu_results.sh: no Python with a CUDA torch found (tried \$MER_PYTHON, python3, /opt/torch/.venv/bin/python3);" \
         "falling back to the CPU venv .venv (torch==2.13.0): only --dry-run or --device cpu make sense" >&2
    make -s .venv/.core >&2
    pick=.venv/bin/python
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$pick" bench/gpu_results.py "$@"
