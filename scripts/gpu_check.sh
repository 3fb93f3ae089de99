#!/usr/bin/env bash
# The GPU build's check and figures, on a machine with an NVIDIA GPU, its driver and the CUDA 13
# libraries (system-wide, or PyPI's nvidia-* packages, as on the `device` tool's machines), but no
# Rust: it runs the binary that `bash scripts/build-cuda.sh --pip-toolkit` packed here as
# .device/keepers.xz (carry .device along). Prints, and saves under OUT_DIR (default $OUT or
# /tmp/gpu_check):
#   - the GPU, the libraries the binary loads, `keepers info`;
#   - the backbone benchmark on the GPU and, with KEEPERS_DEVICE=cpu, on that machine's CPU;
#   - the app's scoring benchmark (`keepers bench scoring`) on the GPU and on the CPU;
#   - the quality scores of the sample album on the GPU against the CPU (largest difference).
#   bash scripts/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/gpu_check}}"
mkdir -p "$out"
bin=/tmp/keepers-cuda
xz -dc .device/keepers.xz > "$bin" && chmod +x "$bin" || { echo "no .device/keepers.xz: run scripts/build-cuda.sh --pip-toolkit first" >&2; exit 1; }
# The CUDA libraries of PyPI's nvidia-* packages, when the system has none.
pylibs="$(python3 - <<'EOF' 2>/dev/null
import glob, os, sys
dirs = {os.path.dirname(f) for p in sys.path if p for f in glob.glob(os.path.join(p, "nvidia", "**", "lib*.so*"), recursive=True)}
print(":".join(sorted(dirs)))
EOF
)"
export LD_LIBRARY_PATH="${pylibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
{
  nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
  echo "libraries:"; ldd "$bin" | grep -E "cuda|cublas|curand|nvrtc"
  "$bin" info
  echo "== backbone, GPU"; "$bin" bench backbone --inference-only
  echo "== backbone, CPU ($(nproc) cores)"; KEEPERS_DEVICE=cpu "$bin" bench backbone --inference-only
  echo "== scoring, GPU"; "$bin" bench scoring --photos 256
  echo "== scoring, CPU ($(nproc) cores)"; KEEPERS_DEVICE=cpu "$bin" bench scoring --photos 64
} 2>&1 | tee "$out/gpu_check.txt"
"$bin" predict assets/samples --format csv > "$out/predict_gpu.csv" 2>> "$out/gpu_check.txt"
KEEPERS_DEVICE=cpu "$bin" predict assets/samples --format csv > "$out/predict_cpu.csv" 2>> "$out/gpu_check.txt"
python3 - "$out" <<'EOF' | tee -a "$out/gpu_check.txt"
import csv, sys
rows = lambda f: {r["path"]: r for r in csv.DictReader(open(f"{sys.argv[1]}/predict_{f}.csv"))}
gpu, cpu = rows("gpu"), rows("cpu")
diffs = [abs(float(gpu[p]["quality"]) - float(cpu[p]["quality"])) for p in cpu if cpu[p]["quality"] and gpu.get(p, {}).get("quality")]
print(f"quality on the GPU vs the CPU, {len(diffs)} sample photos: largest difference {max(diffs):.4f} (MOS points)" if diffs else "no quality scores to compare")
EOF
