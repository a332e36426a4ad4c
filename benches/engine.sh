#!/usr/bin/env bash
# Engine against engine, in one run: the strips housenum reads (`housenum strips`, the full
# protocol: one strip per photo) timed through tract as `read` runs them (`housenum
# bench-strips`: width groups, independent runs over both cores, greedy decoding) and through
# onnxruntime's `session.run` alone (benches/ort_engine.py: one strip at a time on every core,
# batched by width, and one session per core in parallel; the best of the three is the
# reference); then the whole pipeline (`housenum eval --protocol full`: decode, strip, tract,
# decode) against that reference. Five interleaved rounds, medians, ratios. Last, tract's time
# per operator beside onnxruntime's (one thread; tract one strip at a time, then in batches of one
# width as `read` runs them).
# Usage: benches/engine.sh [SVHN_DIR] (default ../shared/svhn/train); needs `pip install
# onnxruntime numpy` and a release build (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/svhn/train}"
bin="${CARGO_TARGET_DIR:-target}/release/housenum"
median() { sort -g | awk '{a[NR]=$1} END {print a[int((NR+1)/2)]}'; }
strips=$(mktemp -d)
trap 'rm -rf "$strips"' EXIT
"$bin" strips "$data" --protocol full --out "$strips" 2> /dev/null
: > /tmp/housenum-engine.txt
for _ in 1 2 3 4 5; do
  echo "tract $("$bin" bench-strips "$strips" --json | python3 -c 'import json,sys; print(json.load(sys.stdin)["median"])')" >> /tmp/housenum-engine.txt
  python3 benches/ort_engine.py onnx/housenum.onnx "$strips" | python3 -c '
import json, sys; v = json.load(sys.stdin)
for m in ("one", "batched", "parallel", "best"): print(f"ort_{m} {v[m]}")' >> /tmp/housenum-engine.txt
  echo "pipeline $("$bin" eval "$data" --protocol full --json -q | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])')" >> /tmp/housenum-engine.txt
done
m() { awk -v k="$1" '$1 == k {print $2}' /tmp/housenum-engine.txt | median; }
tract=$(m tract); best=$(m ort_best); pipe=$(m pipeline)
echo "strips/s, medians of 5 interleaved rounds on $(wc -l < <(ls "$data"/*.png)) photos (full protocol):"
echo "  onnxruntime session.run: one at a time $(m ort_one), batched by width $(m ort_batched), one session per core $(m ort_parallel)"
echo "  tract as housenum runs it: $tract"
echo "  housenum eval --protocol full (decode, strip, tract, decode): $pipe photos/s"
python3 -c "print(f'ratios to onnxruntime\'s best: tract engine {$tract/$best:.2f}, whole housenum pipeline {$pipe/$best:.2f}')"
echo "per operator, one thread:"
"$bin" bench-strips "$strips" --per-op | sed 's/^/  tract  /'
"$bin" bench-strips "$strips" --per-op --batch 32 | sed 's/^/  tract  /'
python3 benches/ort_engine.py onnx/housenum.onnx "$strips" --per-op | sed 's/^/  ort    /'
