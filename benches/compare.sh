#!/usr/bin/env bash
# Whole-program benchmark, reference side in the same run: `housenum eval` (tract) against the
# same .onnx under onnxruntime with the same preprocessing (benches/ort_eval.py), and the cold
# start of `housenum read one.png`. Medians of 5 runs; prints ratios.
# Usage: benches/compare.sh [SVHN_DIR] (default ../shared/svhn/train); needs `pip install
# onnxruntime numpy pillow` and a release build (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/svhn/train}"
bin="${CARGO_TARGET_DIR:-target}/release/housenum"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
ls "$data"/*.png > /tmp/housenum-bench-list.txt
rust=$(for _ in 1 2 3 4 5; do "$bin" eval "$data" --protocol full --json -q \
  | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])'; done | median)
ort=$(for _ in 1 2 3 4 5; do xargs python3 benches/ort_eval.py onnx/housenum.onnx \
  < /tmp/housenum-bench-list.txt; done | median)
cold=$(for _ in 1 2 3 4 5; do s=$(date +%s%N); "$bin" read data/samples/sample-1.png >/dev/null; \
  echo $(( ($(date +%s%N) - s) / 1000000 )); done | median)
echo "eval end to end (full protocol), images/s: housenum (tract) $rust, onnxruntime pipeline $ort, ratio $(python3 -c "print(f'{$rust/$ort:.2f}')")"
echo "housenum read one.png, cold start: ${cold} ms"
