#!/usr/bin/env bash
# Whole-program benchmark, reference side in the same run: `housenum eval` (tract) against the
# same .onnx under onnxruntime with the same preprocessing (benches/ort_eval.py), and the cold
# start of `housenum read one.png`; `read`'s default protocol (locate, seven framings) against one
# framing and search; and the training step of `housenum bench` against the same
# architecture under PyTorch CPU (benches/torch_train.py), same batch (32) and strip (3×32×128).
# Medians of 5 runs; prints ratios. Last, the training step from a trained checkpoint with
# subnormals flushed (what training does) against kept.
# Usage: benches/compare.sh [SVHN_DIR] (default ../shared/svhn/train); needs `pip install
# onnxruntime numpy pillow`, a release build with training (`cargo build --release --features
# train`), and for the training side a torch: set TORCH_PYTHON to its interpreter (default
# /usr/bin/python3). Use PyPI's build (`python3 -m venv t && t/bin/pip install torch`, MKL +
# oneDNN): Debian's python3-torch uses a generic BLAS and is ~5x slower, an unfair reference.
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
# read's default (locate: localiser + seven framings read), locate with one framing
# (--views 1) and search (six readings), interleaved.
for _ in 1 2 3; do for p in locate locate1 search; do
  args="--protocol ${p%1}"; [ "$p" = locate1 ] && args="$args --views 1"
  echo "$p $("$bin" eval "$data" $args --json -q \
    | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])')"
done; done > /tmp/housenum-bench-protocols.txt
loc=$(awk '$1 == "locate" {print $2}' /tmp/housenum-bench-protocols.txt | median)
loc1=$(awk '$1 == "locate1" {print $2}' /tmp/housenum-bench-protocols.txt | median)
sea=$(awk '$1 == "search" {print $2}' /tmp/housenum-bench-protocols.txt | median)
echo "eval end to end (full protocol), images/s: housenum (tract) $rust, onnxruntime pipeline $ort, ratio $(python3 -c "print(f'{$rust/$ort:.2f}')")"
cold_full=$(for _ in 1 2 3 4 5; do s=$(date +%s%N); "$bin" read --protocol full data/samples/sample-1.png >/dev/null; \
  echo $(( ($(date +%s%N) - s) / 1000000 )); done | median)
echo "housenum read one.png, cold start: ${cold} ms (locate, the default), ${cold_full} ms (--protocol full)"
echo "eval, images/s: locate $loc (7 framings), locate --views 1 $loc1, search $sea; ratios locate/search $(python3 -c "print(f'{$loc/$sea:.2f}')"), one framing/seven $(python3 -c "print(f'{$loc1/$loc:.2f}')")"
# `read` over a whole folder (chunks of 32 photos prepared in parallel, their strips read in one
# pass) against `eval --protocol locate` on the same folder (the same readings, plus scoring),
# interleaved; images/s.
n=$(wc -l < /tmp/housenum-bench-list.txt)
for _ in 1 2 3; do
  s=$(date +%s%N); "$bin" read "$data" > /dev/null
  echo "read $(python3 -c "print($n * 1e9 / ($(date +%s%N) - $s))")"
  echo "eval $("$bin" eval "$data" --protocol locate --json -q | python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])')"
done > /tmp/housenum-bench-read.txt
rd=$(awk '$1 == "read" {print $2}' /tmp/housenum-bench-read.txt | median)
ev=$(awk '$1 == "eval" {print $2}' /tmp/housenum-bench-read.txt | median)
echo "read DIR (locate), images/s: $(python3 -c "print(f'{$rd:.1f}')"), eval --protocol locate $ev, ratio read/eval $(python3 -c "print(f'{$rd/$ev:.2f}')")"
tpy="${TORCH_PYTHON:-/usr/bin/python3}"
if "$tpy" -c "import torch" 2>/dev/null; then
  # Interleaved (ours, theirs, ours, …) so that drifts of a shared machine hit both sides alike.
  ips() { python3 -c 'import json,sys; print(json.load(sys.stdin)["images_per_second"])'; }
  : > /tmp/housenum-bench-ours.txt; : > /tmp/housenum-bench-torch.txt
  for _ in 1 2 3 4 5; do
    "$bin" bench --json --runs 1 | ips >> /tmp/housenum-bench-ours.txt
    "$tpy" benches/torch_train.py --threads "$(nproc)" --runs 1 | ips >> /tmp/housenum-bench-torch.txt
  done
  ours=$(median < /tmp/housenum-bench-ours.txt); torch=$(median < /tmp/housenum-bench-torch.txt)
  echo "training step (batch 32, 3x32x128, shipped architecture), images/s: housenum $ours, PyTorch CPU $torch ($("$tpy" -c 'import torch; print(torch.__version__)')), ratio $(python3 -c "print(f'{$ours/$torch:.2f}')")"
else
  echo "training step: PyTorch not installed for $tpy, reference side skipped"
fi
# The training step from a trained checkpoint (weights and Adam moments), flushing subnormals
# as training does against keeping them, interleaved inside `housenum bench` (the fresh-weight
# run above flushes too). A trained run's Adam moments are where the subnormals pile up:
# CHECKPOINT (default runs/v10/last.safetensors).
ck="${CHECKPOINT:-runs/v10/last.safetensors}"
if [ -f "$ck" ]; then
  "$bin" bench --checkpoint "$ck" --width 224 --steps 10 --runs 5 --json | python3 -c '
import json, sys; v = json.load(sys.stdin)
print(f"training step from {v[\"checkpoint\"]} (batch 32, 3x32x224), images/s: subnormals flushed {v[\"images_per_second\"]:.0f}, kept {v[\"images_per_second_subnormals_kept\"]:.0f}, ratio {v[\"ratio\"]:.2f}")'
else
  echo "training step from a checkpoint: $ck not found, skipped"
fi
