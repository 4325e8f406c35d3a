#!/usr/bin/env bash
# On the GPU machine (the device tool runs it from the repository root, with `.gpu` carried): install the bundle's
# wheels beside the image's packages, point DragKit at the bundled ComfyUI, run the GPU check and the GPU tests.
#   device run: bash bench/gpu_run.sh        (results in $OUT: gpu.json, gpu.md, cuda-tests.txt)
set -euo pipefail
if ls .gpu/wheels/*.whl >/dev/null 2>&1; then
  python3 -m pip install -q --no-index --no-deps --no-compile --no-cache-dir --target /tmp/site .gpu/wheels/*.whl
  export PYTHONPATH=/tmp/site${PYTHONPATH:+:$PYTHONPATH}
fi
export COMFYUI_DIR=$PWD/.gpu/ComfyUI PYTHONUNBUFFERED=1
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv || true
python3 bench/gpu.py --out "${OUT:-outputs/gpu}" --tests "$@"
