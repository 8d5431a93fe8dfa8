#!/usr/bin/env bash
# benchmarks/gpu.py on a lent GPU machine that has Python 3.12, CUDA, JAX and CuPy but no
# TensorFlow, MLflow, scikit-learn or network (docs/devices.md, "What was measured where").
#
#   benchmarks/gpu_machine.sh prepare   here: .gpu/wheels (Keras, pydantic, pytest and the
#                                       other wheels gpu.py and its test need there) and
#                                       .gpu/digits.npz (scikit-learn's digits)
#   benchmarks/gpu_machine.sh run       there (the device tool, carrying .gpu): installs the
#                                       wheels into .gpu/site, then runs gpu.py on the GPU
#                                       against this machine's CPU figures
set -euo pipefail
cd "$(dirname "$0")/.."
PACKAGES="keras==3.15.1 absl-py rich namex h5py optree packaging pydantic pydantic-core
annotated-types typing-inspection typing-extensions pyyaml markdown-it-py mdurl pygments
pillow pytest pluggy iniconfig"
case "${1:-}" in
  prepare)
    rm -rf .gpu/wheels && mkdir -p .gpu/wheels
    # --no-deps: NumPy, ml_dtypes, JAX and CuPy stay the machine's own
    .venv/bin/python -m pip download -q --no-deps --only-binary :all: --python-version 3.12 \
      --platform manylinux_2_28_x86_64 --platform manylinux_2_17_x86_64 \
      --platform manylinux2014_x86_64 -d .gpu/wheels $PACKAGES
    .venv/bin/python benchmarks/gpu.py --save-digits .gpu/digits.npz
    du -sh .gpu ;;
  run)
    python3 -m pip install -q --no-index --no-deps --find-links .gpu/wheels --target .gpu/site \
      $PACKAGES
    nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader || true
    PYTHONPATH="$PWD/.gpu/site" python3 benchmarks/gpu.py --device gpu --digits .gpu/digits.npz \
      --json "${OUT:-.gpu}/gpu-gpu.json" --compare benchmarks/results/gpu-cpu.json
    PYTHONPATH="$PWD/.gpu/site" python3 -m pytest -q -p no:cacheprovider \
      tests/unit/models/test_numpy_devices.py -k "real_gpu or gpu_rules or max_pool" || true ;;
  *) echo "usage: benchmarks/gpu_machine.sh prepare|run" >&2; exit 2 ;;
esac
