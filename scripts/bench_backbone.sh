#!/usr/bin/env bash
# Backbone speed: Keepers (candle, Rust) vs PyTorch CPU on the same machine, same weights.
#
#   scripts/bench_backbone.sh [--reps N] [--variants]
#
# 1. creates .venv-bench/ in the repo root if missing and installs pinned torch (PyPI's
#    default wheel; only its CPU path is used), numpy, safetensors, pillow;
# 2. cargo build --release (skipped with SKIP_BUILD=1);
# 3. runs, one after the other, `keepers bench backbone --reps N` and
#    `python scripts/bench_pytorch.py --reps N` (--variants is passed to the latter);
# 4. prints ms/image per batch size for both and the ratio keepers/pytorch
#    (<= 1.00 means Keepers is at least as fast).
#
# Environment: SKIP_BUILD=1, REPS (default 10), BENCH_VENV (default .venv-bench),
# PYTHON (interpreter used to create the venv, default python3).
# Timings are disturbed by anything else running (e.g. a cargo build): the script warns
# when it sees a compiler running or the CPU busy just before a timed run.
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
cd "$ROOT"

REPS="${REPS:-10}"
PY_EXTRA=()
while [[ $# -gt 0 ]]; do
  case "$1" in
    --reps) REPS="$2"; shift 2 ;;
    --reps=*) REPS="${1#--reps=}"; shift ;;
    --variants) PY_EXTRA+=(--variants); shift ;;
    -h|--help) sed -n '2,17p' "$0"; exit 0 ;;
    *) echo "bench_backbone.sh: unknown argument: $1" >&2; exit 2 ;;
  esac
done
[[ "$REPS" =~ ^[1-9][0-9]*$ ]] || { echo "bench_backbone.sh: --reps must be a positive integer" >&2; exit 2; }

VENV="${BENCH_VENV:-$ROOT/.venv-bench}"
REQS=(torch==2.15.0 numpy==2.4.6 safetensors==0.8.0 pillow==13.0.0)
KEEPERS="$ROOT/target/release/keepers"

# ---------------------------------------------------------------- python environment
if [[ ! -x "$VENV/bin/python" ]]; then
  echo "== creating venv $VENV"
  "${PYTHON:-python3}" -m venv "$VENV"
fi
STAMP="$VENV/.keepers-bench-requirements"
if [[ ! -f "$STAMP" || "$(cat "$STAMP")" != "${REQS[*]}" ]]; then
  echo "== pip install ${REQS[*]} (torch wheel is large, about a minute)"
  "$VENV/bin/python" -m pip install --quiet --disable-pip-version-check "${REQS[@]}"
  printf '%s' "${REQS[*]}" > "$STAMP"
fi

# ---------------------------------------------------------------------------- build
if [[ "${SKIP_BUILD:-0}" == "1" ]]; then
  echo "== SKIP_BUILD=1: using the existing $KEEPERS"
else
  echo "== cargo build --release"
  cargo build --release
fi
[[ -x "$KEEPERS" ]] || { echo "bench_backbone.sh: $KEEPERS not found (build it first)" >&2; exit 1; }

# Warns when the CPU is not idle just before a timed run: another process busy over one
# second (e.g. the other engineer's cargo build), or the hypervisor stealing time.
busy_check() {
  local a b
  a=($(head -1 /proc/stat)); sleep 1; b=($(head -1 /proc/stat))
  # fields: cpu user nice system idle iowait irq softirq steal ...
  awk -v u="$(( b[1]+b[2]+b[3]+b[6]+b[7] - a[1]-a[2]-a[3]-a[6]-a[7] ))" \
      -v i="$(( b[4]+b[5] - a[4]-a[5] ))" -v s="$(( b[8] - a[8] ))" -v l="$(cut -d' ' -f1 /proc/loadavg)" 'BEGIN {
    t = u + i + s; if (t <= 0) t = 1
    printf "   (CPU over the last second: busy %.0f%%, steal %.0f%%; load average %s)\n", 100*u/t, 100*s/t, l
    if (u/t > 0.10 || s/t > 0.05) print "   WARNING: CPU not idle before timing: figures may be disturbed" > "/dev/stderr"
  }'
  local busy
  busy="$(for n in rustc cargo cc1 cc1plus ld lld; do pgrep -x "$n" || true; done | paste -sd, -)"
  [[ -z "$busy" ]] || echo "   WARNING: compiler processes running (pids $busy): timings will be disturbed" >&2
}

TMP="$(mktemp -d)"
trap 'rm -rf "$TMP"' EXIT

# ---------------------------------------------------------------------------- runs
echo "== keepers bench backbone --reps $REPS"
busy_check
"$KEEPERS" bench backbone --inference-only --reps "$REPS" | tee "$TMP/keepers.txt"

echo "== python scripts/bench_pytorch.py --reps $REPS ${PY_EXTRA[*]:-}"
busy_check
"$VENV/bin/python" "$ROOT/scripts/bench_pytorch.py" --reps "$REPS" ${PY_EXTRA[@]+"${PY_EXTRA[@]}"} \
  | tee "$TMP/pytorch.txt"

# ---------------------------------------------------------------------------- parse
# keepers: rows "folded (inference)  <batch> <ms/batch> <ms/image> <peak RSS MiB>"; the
# path holds spaces, so count fields from the end. Other rows are ignored.
awk '$1 ~ /^folded/ && NF >= 5 { print $(NF-3), $(NF-1), $NF }' "$TMP/keepers.txt" > "$TMP/k.tsv"
# pytorch: "pytorch batch=B ms_per_batch=X ms_per_image=Y" (headline rows only)
awk '$1 == "pytorch" {
       b = ""; m = "";
       for (i = 2; i <= NF; i++) { split($i, kv, "="); if (kv[1] == "batch") b = kv[2]; if (kv[1] == "ms_per_image") m = kv[2] }
       if (b != "" && m != "") print b, m
     }' "$TMP/pytorch.txt" > "$TMP/p.tsv"

TORCH_VERSION="$(sed -n 's/^torch_version=//p' "$TMP/pytorch.txt")"
THREADS="$(sed -n 's/^threads=\([0-9]*\).*/\1/p' "$TMP/pytorch.txt")"

echo
echo "== summary: EfficientNet-Lite0 224x224 fp32 CPU, ms per image, median of $REPS"
echo "   keepers: folded inference path (full forward to logits);  pytorch $TORCH_VERSION eager NCHW, $THREADS threads (full forward)"
printf '%-6s %14s %14s %18s %10s\n' batch keepers_ms_img pytorch_ms_img ratio_keep/torch keepers_RSS
status=0
for b in 1 16; do
  k="$(awk -v b="$b" '$1 == b { print $2; exit }' "$TMP/k.tsv")"
  rss="$(awk -v b="$b" '$1 == b { print $3; exit }' "$TMP/k.tsv")"
  p="$(awk -v b="$b" '$1 == b { print $2; exit }' "$TMP/p.tsv")"
  if [[ -z "$k" || -z "$p" ]]; then
    echo "bench_backbone.sh: missing figure for batch $b (keepers='$k' pytorch='$p')" >&2
    status=1
    continue
  fi
  ratio="$(awk -v k="$k" -v p="$p" 'BEGIN { printf "%.2f", k / p }')"
  printf '%-6s %14s %14s %18s %10s\n' "$b" "$k" "$p" "$ratio" "${rss}MiB"
  echo "result batch=$b keepers_ms_per_image=$k pytorch_ms_per_image=$p ratio=$ratio" >> "$TMP/result.txt"
done
echo
cat "$TMP/result.txt" 2>/dev/null || true
exit "$status"
