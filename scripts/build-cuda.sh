#!/usr/bin/env bash
# The GPU build: candle's CUDA kernels (cargo feature `cuda`). A separate build from the default
# CPU one, in its own target folder so the two do not rebuild each other.
#
# Needs the CUDA toolkit (nvcc on PATH, or CUDA_HOME / CUDA_PATH set) at build time; the binary
# links libcuda / cuBLAS / cuRAND / NVRTC at start-up, so it runs only where the NVIDIA driver and
# those libraries are installed. At run time Keepers uses GPU 0 when the build has CUDA and a
# device answers, and the CPU otherwise (`keepers info` says which; KEEPERS_DEVICE=cpu forces the
# CPU). On macOS use `--features metal` instead.
#
#   bash scripts/build-cuda.sh                 # build target-cuda/release/keepers with the installed toolkit
#   bash scripts/build-cuda.sh --check         # also print `keepers info` and the GPU benchmarks
#   bash scripts/build-cuda.sh --pip-toolkit   # no toolkit here: see below
#
# --pip-toolkit builds on a machine with no CUDA toolkit and no GPU (this project's CI-like
# machines): NVIDIA's nvcc 13.0 and headers come from PyPI into .cuda-toolkit/ (ignored by git),
# the kernels are compiled for CUDA_COMPUTE_CAP (default 90: H100 / H200), and the binary is
# linked against stub libraries made here from the symbol names cudarc binds (libcuda.so.1,
# libnvrtc.so.13, libcurand.so.10, libcublas.so.13, libcublasLt.so.13) and the wheel's own
# libcudart.so.13: the stubs only satisfy the linker; at run time the real driver and CUDA 13
# libraries are loaded by those names. CUDA
# 13.0 because its PTX must be no newer than the driver of the machine that runs it (13.0 there).
# The result is also packed, stripped, as .device/keepers.xz for scripts/gpu_check.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh

mode="${1:-}"
case "$mode" in
  "" | --check | --pip-toolkit) ;;
  *) echo "usage: bash scripts/build-cuda.sh [--check | --pip-toolkit]" >&2; exit 2 ;;
esac
if [ "$mode" = "--pip-toolkit" ]; then
  tk="$PWD/.cuda-toolkit"
  cu="$tk/venv/lib/python3.$(python3 -c 'import sys; print(sys.version_info[1])')/site-packages/nvidia/cu13"
  if [ ! -x "$cu/bin/nvcc" ]; then
    python3 -m venv "$tk/venv" || { echo "python3 -m venv failed (Debian: apt-get install python3-venv)" >&2; exit 1; }
    "$tk/venv/bin/pip" install -q nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.96 nvidia-cuda-crt==13.0.88 \
      nvidia-nvvm==13.0.88 nvidia-cuda-cccl==13.0.85
    chmod +x "$cu"/bin/* "$cu"/nvvm/bin/*
  fi
  # Link stubs, beside the toolkit's libraries where cudarc's build script points the linker.
  manifest="$(cargo metadata --format-version 1 --locked --features cuda | python3 -c '
import json, sys
print(next(p["manifest_path"] for p in json.load(sys.stdin)["packages"] if p["name"] == "cudarc"))')"
  registry="$(dirname "$manifest")"
  [ -f "$registry/src/driver/sys/mod.rs" ] || { echo "cudarc's bindings not found (cargo metadata said '$manifest')" >&2; exit 1; }
  python3 - "$registry/src" "$cu/lib" <<'EOF'
import os, re, subprocess, sys
src, lib = sys.argv[1], sys.argv[2]
# (cudarc binding module, library name, soname of the CUDA 13 library loaded at run time)
libs = [("driver", "cuda", "libcuda.so.1"), ("nvrtc", "nvrtc", "libnvrtc.so.13"),
        ("curand", "curand", "libcurand.so.10"), ("cublas", "cublas", "libcublas.so.13"),
        ("cublaslt", "cublasLt", "libcublasLt.so.13")]
for module, name, soname in libs:
    text = open(os.path.join(src, module, "sys", "mod.rs")).read()
    names = sorted(set(re.findall(r"^pub unsafe fn (\w+)\(", text, re.M)))
    c = os.path.join(lib, f"stub_{name}.c")
    with open(c, "w") as f:
        # Every entry point answers 100 (CUDA_ERROR_NO_DEVICE for the driver), so that a binary
        # pointed at these stubs (copied under their sonames, on LD_LIBRARY_PATH) on a machine
        # without a GPU falls back to the CPU: how the fallback was checked. Without the driver
        # (and no stubs) the binary does not start: libcuda.so.1 is linked at start-up.
        f.write("/* Link-time stub: the real library is loaded by its soname at run time. */\n")
        f.writelines(f"int {n}(void) {{ return 100; }}\n" for n in names)
    subprocess.run(["cc", "-shared", "-fPIC", "-o", os.path.join(lib, f"lib{name}.so"), f"-Wl,-soname,{soname}", c], check=True)
    print(f"stub lib{name}.so ({soname}): {len(names)} symbols")
EOF
  # candle's MoE kernels link the CUDA runtime itself (the real one, from the toolkit's wheel).
  ln -sf libcudart.so.13 "$cu/lib/libcudart.so"
  export PATH="$cu/bin:$PATH" CUDA_HOME="$cu" CUDA_COMPUTE_CAP="${CUDA_COMPUTE_CAP:-90}"
fi

if ! command -v nvcc >/dev/null 2>&1 && [ -z "${CUDA_HOME:-}${CUDA_PATH:-}" ]; then
  echo "nvcc not found: install the CUDA toolkit (or set CUDA_HOME), or use --pip-toolkit" >&2
  exit 1
fi
# candle's kernels are compiled for the GPU found (or CUDA_COMPUTE_CAP, e.g. 90 for H100).
CARGO_TARGET_DIR=target-cuda cargo build --release --locked --features cuda
echo "built target-cuda/release/keepers"
if [ "$mode" = "--pip-toolkit" ]; then
  mkdir -p .device
  strip -o .device/keepers target-cuda/release/keepers
  xz -T0 -f .device/keepers
  echo "packed .device/keepers.xz ($(du -h .device/keepers.xz | cut -f1)) for scripts/gpu_check.sh"
fi
if [ "$mode" = "--check" ]; then
  target-cuda/release/keepers info
  target-cuda/release/keepers bench backbone --inference-only
  target-cuda/release/keepers bench scoring
fi
