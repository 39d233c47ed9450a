#!/usr/bin/env bash
# One-shot GPU check for a bare, offline GPU machine (issue 13, item 4).
#
#   bash benchmarks/gpu_check.sh [--dry-run] [--out gpu_check.json] [--steps 200] [--block soundfile,av]
#
# 1. Finds the pure-Python dependencies that do not import (einops, pyyaml, tqdm, pytest,
#    ...) and installs them from a wheel folder of the checkout if there is one
#    ($WHEELS, else wheels/ or benchmarks/wheels/: `pip download einops pyyaml tqdm pytest
#    -d wheels` on a connected machine), offline; otherwise says what is missing.
# 2. Installs this package with `pip install --no-deps -e .` over the machine's own torch
#    (falls back to PYTHONPATH if that fails; --dry-run never installs anything).
# 3. Runs benchmarks/gpu_check.py: CUDA-marked tests, paper-config training of both stages
#    (bf16 autocast, clips/s, peak memory), DDIM-10/20 sampling of K = 10 reactions
#    (reactions/s), the GPU metrics benchmark; all numbers in one JSON file (--out).
#    Steps that cannot run are skipped with the reason. About 5 minutes on one GPU.
set -uo pipefail
cd "$(dirname "$0")/.."
PY=${PYTHON:-python3}
DRY=0
for a in "$@"; do [ "$a" = "--dry-run" ] && DRY=1; done

WHEELS=${WHEELS:-}
for d in wheels benchmarks/wheels; do [ -z "$WHEELS" ] && [ -d "$d" ] && WHEELS=$d; done

missing=$("$PY" - <<'PYEOF'
import importlib
for module, dist in [("einops", "einops"), ("yaml", "pyyaml"), ("tqdm", "tqdm"), ("pytest", "pytest"),
                     ("numpy", "numpy"), ("numba", "numba"), ("torchaudio", "torchaudio")]:
    try:
        importlib.import_module(module)
    except Exception:
        print(dist, end=" ")
PYEOF
)
echo "[gpu_check.sh] python: $("$PY" --version 2>&1); missing: ${missing:-nothing}"
if [ -n "$missing" ]; then
    if [ "$DRY" = 1 ]; then
        echo "[gpu_check.sh] --dry-run: not installing $missing"
    elif [ -n "$WHEELS" ]; then
        for dist in $missing; do  # one by one: a wheel that is not there must not block the others
            "$PY" -m pip install --quiet --no-index --find-links "$WHEELS" "$dist" \
                || echo "[gpu_check.sh] no usable wheel for $dist in $WHEELS: its steps will be skipped"
        done
    else
        echo "[gpu_check.sh] no wheel folder (wheels/ or benchmarks/wheels/): bring wheels of: $missing"
    fi
fi

if [ "$DRY" = 1 ]; then
    echo "[gpu_check.sh] --dry-run: using PYTHONPATH=$PWD instead of installing the package"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
elif ! "$PY" -m pip install --quiet --no-deps --no-build-isolation -e .; then
    echo "[gpu_check.sh] pip install --no-deps -e . failed: using PYTHONPATH=$PWD"
    export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}"
fi

exec "$PY" benchmarks/gpu_check.py "$@"
