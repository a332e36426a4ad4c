#!/usr/bin/env bash
# The look's verifier (src/read/verify.rs) from scratch, in one command: the training photos
# that neither validation nor the development split holds (`--split train --val-fraction 0.2`)
# are framed as they are, 2x and 4x looser, at phone size, and 4x looser with no number
# (`eval --save-framed`); `read --candidates` lists what the second look reads in each; then
# data/fit_verifier.py fits the weights and prints them as verify.rs's constants.
# Made-up house fronts (benches/scenes.py, seeds 11 and 12, 400 each, in the training fonts only)
# are listed and fitted beside them. Deterministic: the canvases come from --seed 1 (without the
# parts data/digit_parts.tsv lists), the scenes from their seeds, the fit from fixed starting
# weights. About an hour on 2 cores. Started again, it reuses the listings already written.
# Usage: data/verifier_recipe.sh [SVHN_DIR] [WORK_DIR]
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/svhn/train}"; work="${2:-target/verifier}"
bin="${CARGO_TARGET_DIR:-target}/release/housenum"
mkdir -p "$work"
pairs=()
for f in "as-is:--zoom-out 1" "2x:--zoom-out 2" "4x:--zoom-out 4" "phone:--zoom-out 4 --phone" \
         "none-4x:--zoom-out 4 --no-number"; do
  name="${f%%:*}"; read -r -a opts <<< "${f#*:}"
  if [ ! -s "$work/$name.jsonl" ]; then
    rm -rf "${work:?}/$name"
    "$bin" eval "$data" --split train --val-fraction 0.2 --protocol locate "${opts[@]}" --seed 1 \
      --save-framed "$work/$name" --json -q > "$work/$name.eval.json"
    # Exit code 4: some photo holds no number (the no-number canvases all do).
    "$bin" read "$work/$name" --candidates --json > "$work/$name.jsonl.part" || [ $? -eq 4 ]
    mv "$work/$name.jsonl.part" "$work/$name.jsonl"
    # The phone-size PNGs are large; labels.tsv is all the fit needs of them.
    find "$work/$name" -name '*.png' -delete
  fi
  pairs+=("$work/$name" "$work/$name.jsonl")
done
for seed in 11 12; do
  name="scenes-s$seed"
  if [ ! -s "$work/$name.jsonl" ]; then
    rm -rf "${work:?}/$name"
    python3 benches/scenes.py "$work/$name" --count 400 --seed "$seed" --fonts training > /dev/null
    "$bin" read "$work/$name" --candidates --json > "$work/$name.jsonl.part" || [ $? -eq 4 ]
    mv "$work/$name.jsonl.part" "$work/$name.jsonl"
    find "$work/$name" -name '*.jpg' -delete
  fi
  pairs+=("$work/$name" "$work/$name.jsonl")
done
python3 data/fit_verifier.py "${pairs[@]}"
