#!/usr/bin/env bash
# Quality models side by side on the same 5 seeded folds of the LIVE In the Wild Image Quality
# Challenge (issue 7): SRCC / PLCC (mean ± std over folds) of
#   - the baseline systems on the frozen backbone (`keepers cv`: global view, centre crop, one
#     native patch, DMA-stat, DMA-fc, MP-avg, MP-ada),
#   - the shipped model (multi-level Lite0 + ridge; its nested CV as recorded by
#     `keepers train-quality` in weights/quality_multilevel.json, every feature plan tried, same folds),
#   - the previous model (DMA-fc, grid inference; weights/quality_dma_fc.json, same folds),
#   - partial fine-tuning of the column against its frozen probe (weights/quality_finetune_cv.json),
#   - the Rust BRISQUE port (`keepers brisque --eval`), and the Python `brisque` package when its
#     venv exists (scripts/brisque_reference.py says how to make it).
# Features are cached after the first run (about 6 minutes for the 379 photos on 2 cores).
#   bash scripts/eval_quality.sh [labels.csv]
set -euo pipefail
cd "$(dirname "$0")/.."
source scripts/deps.sh
data="${1:-../shared/data/livec/labels.csv}"
[ -f "$data" ] || { echo "$data: no such file (the LIVE Challenge labels, see PRODUCT.md)" >&2; exit 1; }
cargo build --release --locked --quiet
bin=target/release/keepers
echo "== baselines on the frozen backbone (keepers cv, 5 folds, seed 0)"
"$bin" cv --data "$data" --folds 5 --seed 0 \
  --systems scnn-warp,scnn-center,scnn-local,dma-stat,dma-fc,mp-avg,mp-ada
echo "== shipped model (weights/quality_multilevel.json, nested CV recorded by keepers train-quality, same folds)"
python3 - <<'PY'
import json
cv = json.load(open("weights/quality_multilevel.json"))["training"]["cv"]
chosen = cv["chosen"]["plan"]
for r in cv["plans"]:
    mark = "  <- shipped" if r["plan"] == chosen else ""
    print(f"multi-level {r['plan']:<28} SRCC {r['srcc_mean']:.3f} ± {r['srcc_std']:.3f}   PLCC {r['plcc_mean']:.3f} ± {r['plcc_std']:.3f}{mark}")
print("== previous model (weights/quality_dma_fc.json, recorded by keepers train-quality --system dma-fc, same folds)")
c = json.load(open("weights/quality_dma_fc.json"))["training"]["cv"]["chosen"]
for k in ("grid", "random"):
    r = c[k]
    print(f"dma-fc ({k:6} inference)              SRCC {r['srcc_mean']:.3f} ± {r['srcc_std']:.3f}   PLCC {r['plcc_mean']:.3f} ± {r['plcc_std']:.3f}")
import os
if os.path.exists("weights/quality_finetune_cv.json"):
    print("== partial fine-tuning of the column (weights/quality_finetune_cv.json, recorded by keepers finetune-quality, same folds)")
    runs = json.load(open("weights/quality_finetune_cv.json"))["runs"]
    p = runs[0]["probe"]
    print(f"frozen probe (pooled 1280-d, ridge)      SRCC {p['srcc'][0]:.3f} ± {p['srcc'][1]:.3f}   PLCC {p['plcc'][0]:.3f} ± {p['plcc'][1]:.3f}")
    for run in runs:
        c = run["config"]
        for t in run["tuned"]:
            print(f"fine-tuned from block {c['from_block']} + head, lr {t['lr']:<7g} SRCC {t['srcc'][0]:.3f} ± {t['srcc'][1]:.3f}   PLCC {t['plcc'][0]:.3f} ± {t['plcc'][1]:.3f}")
PY
echo "== BRISQUE, Rust port (same folds)"
"$bin" brisque --eval "$data" --folds 5 --seed 0
if [ -x /tmp/bq/bin/python ]; then
  echo "== BRISQUE, Python package (all photos)"
  /tmp/bq/bin/python scripts/brisque_reference.py --livec "$data" --eval-only
else
  echo "== BRISQUE, Python package: skipped (no venv at /tmp/bq; see scripts/brisque_reference.py)"
fi
