#!/usr/bin/env bash
# The GPU build: candle's CUDA kernels (cargo feature `cuda`). A separate build from the default
# CPU one, in its own target folder so the two do not rebuild each other.
#
# Needs the CUDA toolkit (nvcc on PATH, or CUDA_HOME / CUDA_PATH set) at build time; the binary
# links libcuda / cuBLAS / cuRAND at start-up, so it runs only where the NVIDIA driver is
# installed. At run time Keepers uses GPU 0 when the build has CUDA and a device answers, and
# the CPU otherwise (`keepers info` says which). On macOS use `--features metal` instead.
#
#   bash scripts/build-cuda.sh            # build target-cuda/release/keepers
#   bash scripts/build-cuda.sh --check    # also print `keepers info` and the backbone benchmark
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
if ! command -v nvcc >/dev/null 2>&1 && [ -z "${CUDA_HOME:-}${CUDA_PATH:-}" ]; then
  echo "nvcc not found: install the CUDA toolkit (or set CUDA_HOME) to build with --features cuda" >&2
  exit 1
fi
# candle's kernels are compiled for the GPU found (or CUDA_COMPUTE_CAP, e.g. 90 for H100).
CARGO_TARGET_DIR=target-cuda cargo build --release --locked --features cuda
echo "built target-cuda/release/keepers"
if [ "${1:-}" = "--check" ]; then
  target-cuda/release/keepers info
  target-cuda/release/keepers bench backbone --inference-only
fi
