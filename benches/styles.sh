#!/usr/bin/env bash
# Styles beyond SVHN: how the reader reads synthetic house numbers in font families it never
# trained on (`synth --fonts held-out`: data::synth::HELD_OUT_FAMILIES) against those training
# draws (`--fonts training`), 1,000 numbers of 1-5 digits each on real wall backgrounds, given
# the box (crop) and found by `read`'s default (locate). Deterministic: seeds 101 and 102.
# Usage: benches/styles.sh [MODEL.onnx] [SVHN_DIR] [WORK_DIR]
#   MODEL defaults to the compiled-in reader; SVHN_DIR (../shared/svhn/train) gives the
#   backgrounds, from its training split only. Needs a release build (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
model="${1:-}"; data="${2:-../shared/svhn/train}"; work="${3:-target/styles}"
bin="${CARGO_TARGET_DIR:-target}/release/housenum"
m=(); [ -n "$model" ] && m=(--model "$model")
mkdir -p "$work"
printf '%-26s %8s %8s\n' fonts crop locate
for set in "held-out:101" "training:102"; do
  name="${set%%:*}"; seed="${set#*:}"
  [ -f "$work/$name/digitStruct.mat" ] || "$bin" synth --out "$work/$name" --count 1000 \
    --seed "$seed" --max-len 5 --fonts "$name" --backgrounds "$data" -q
  acc() { "$bin" eval "$work/$name" --json -q "${m[@]}" "$@" \
    | python3 -c 'import json,sys; print("%.2f" % (100 * json.load(sys.stdin)["sequence_accuracy"]))'; }
  printf '%-26s %7s%% %7s%%\n' "$name (1,000, seed $seed)" "$(acc --protocol crop)" "$(acc --protocol locate)"
done
