#!/usr/bin/env bash
# The GPU build's check and figures, on a machine with an NVIDIA GPU, its driver and the CUDA 13
# libraries (system-wide, or PyPI's nvidia-* packages, as on the `device` tool's machines), but no
# Rust: it runs the binary that `bash scripts/build-cuda.sh --pip-toolkit` packed here as
# .device/keepers.xz (carry .device along). Prints, and saves under OUT_DIR (default $OUT or
# /tmp/gpu_check):
#   - the GPU, the libraries the binary loads, `keepers info` (fails unless it chose the GPU);
#   - the backbone benchmark on the GPU and, with KEEPERS_DEVICE=cpu, on that machine's CPU;
#   - the app's scoring benchmark (`keepers bench scoring`) on the GPU and on the CPU;
#   - the quality scores of the sample album on the GPU against the CPU (largest difference).
# Every step runs; the exit status is 1 if any failed (each is named with FAILED).
#   bash scripts/gpu_check.sh [OUT_DIR]
set -uo pipefail
cd "$(dirname "$0")/.."
out="${1:-${OUT:-/tmp/gpu_check}}"
mkdir -p "$out"
log="$out/gpu_check.txt"
: > "$log"
fail=0
step() {
  echo "== $*" | tee -a "$log"
  "$@" 2>&1 | tee -a "$log"
  local rc="${PIPESTATUS[0]}"
  [ "$rc" = 0 ] || { echo "FAILED ($rc): $*" | tee -a "$log"; fail=1; }
}
bin=/tmp/keepers-cuda
# xz, or Python's lzma where xz is not installed.
if command -v xz >/dev/null; then xz -dc .device/keepers.xz > "$bin"; else
  python3 -c 'import lzma, shutil, sys; shutil.copyfileobj(lzma.open(sys.argv[1]), open(sys.argv[2], "wb"))' .device/keepers.xz "$bin"
fi || { echo "no .device/keepers.xz: run scripts/build-cuda.sh --pip-toolkit first" >&2; exit 1; }
chmod +x "$bin"
export KEEPERS_WEIGHTS_DIR="$PWD/weights"
# The CUDA 13 libraries of PyPI's nvidia-* packages, when the system has none.
pylibs="$(python3 - <<'EOF'
import glob, os, sys
dirs = {os.path.dirname(f) for p in sys.path if p
        for f in glob.glob(os.path.join(p, "nvidia", "**", "lib*.so.1[03]*"), recursive=True)
        if "cu12" not in f}
print(":".join(sorted(dirs)))
EOF
)"
[ -n "$pylibs" ] && export LD_LIBRARY_PATH="${pylibs}${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"

step nvidia-smi --query-gpu=name,driver_version,memory.total --format=csv,noheader
step ldd "$bin"
if ldd "$bin" | grep -q "not found"; then echo "FAILED: libraries not found (above)" | tee -a "$log"; exit 1; fi
step "$bin" info
grep -q "CUDA device 0" "$log" || { echo "FAILED: keepers did not choose the GPU (see info above)" | tee -a "$log"; exit 1; }
step "$bin" bench backbone --inference-only
KEEPERS_DEVICE=cpu step "$bin" bench backbone --inference-only
step "$bin" bench scoring --photos 256
KEEPERS_DEVICE=cpu step "$bin" bench scoring --photos 64
"$bin" predict assets/samples --format csv > "$out/predict_gpu.csv" || { echo "FAILED: predict on the GPU" | tee -a "$log"; fail=1; }
KEEPERS_DEVICE=cpu "$bin" predict assets/samples --format csv > "$out/predict_cpu.csv" || { echo "FAILED: predict on the CPU" | tee -a "$log"; fail=1; }
step python3 - "$out" <<'EOF'
import csv, sys
rows = lambda f: {r["path"]: r for r in csv.DictReader(open(f"{sys.argv[1]}/predict_{f}.csv"))}
gpu, cpu = rows("gpu"), rows("cpu")
diffs = [abs(float(gpu[p]["quality"]) - float(cpu[p]["quality"])) for p in cpu if cpu[p]["quality"] and gpu.get(p, {}).get("quality")]
if not diffs:
    sys.exit("no quality scores to compare")
print(f"quality on the GPU vs the CPU, {len(diffs)} sample photos: largest difference {max(diffs):.4f} (MOS points)")
EOF
exit "$fail"
