#!/usr/bin/env bash
# An ensemble of four small readers from scratch (measured, not shipped: docs/experiments.md,
# "Ensembles of seeds"):
#   1. the localiser of the locate protocol (`read`'s default);
#   2. r1: the small reader (0.56 M parameters) on the 1,827 real training photos alone;
#   3. r1 reads the unlabelled pool under locate (that localiser's box, seven framings); the
#      readings with raw confidence >= 0.9 become pseudo labels, each with its region;
#   4. four readers from scratch, seeds 1-4 (SEEDS), on the real photos + those pseudo labels, 30 %
#      of each epoch's samples replaced by numbers of 1-6 real digits recombined;
#   5. export of the four as one ONNX ensemble (the reader scores every member's reading under all
#      of them), calibration under locate (end to end on 2 cores 1 h 18 min; validation crop
#      86.93 %, locate 79.90 %, 6-10 digits 47.6 %);
#   6. only with ROUNDS=2, a second round (+58 min; crop 86.43 %, locate 79.90 %, 6-10 digits
#      49.0 %: no gain): the calibrated round-1 ensemble reads the pool again (confidence >= 0.9),
#      four new readers t1-t4 are trained from scratch on it as in step 4 for as many optimiser
#      steps as the real-only run (730,800 strips: the epochs follow the count of pseudo labels),
#      then exported and calibrated as in step 5.
# Every step is skipped when its output exists and every training run resumes from its last
# checkpoint, so a stopped run is continued by running this again.
# Usage: data/recipe_ensemble.sh [SVHN_DIR] [RUNS_DIR]   (defaults ../shared/svhn, runs)
# Needs a release build with training: cargo build --release --features train (or HOUSENUM=binary).
# The shipped single model: data/recipe.sh.
set -euo pipefail
cd "$(dirname "$0")/.."
svhn="${1:-../shared/svhn}"; runs="${2:-runs}"
B="${HOUSENUM:-${CARGO_TARGET_DIR:-target}/release/housenum}"  # HOUSENUM=path overrides
SEEDS="${SEEDS:-1 2 3 4}"; ROUNDS="${ROUNDS:-1}"
mkdir -p "$runs"
stamp() { echo "$(date +%T) $*"; }
geometry=(--dropout 0.1 --pad 12 --stretch 1.4 --max-width 224)
train() { out=$1; shift; [ -f "$runs/$out/housenum.onnx" ] && return 0
  stamp "train $out"
  "$B" train --data "$svhn/train" --out "$runs/$out" -q "$@"
  "$B" export --checkpoint "$runs/$out/last.safetensors" --out "$runs/$out/housenum.onnx"; }

# 1. The localiser: column and row profiles over 32 x 16 bands of the photo resized to 64 x 128,
# trained on the digit boxes with 10 % recombined numbers of 1-10 digits, a development split
# (the next 10 % by name hash) held out besides validation.
loc="$runs/localiser/localiser.onnx"
[ -f "$loc" ] || { stamp "train-localiser"; "$B" train-localiser --data "$svhn/train" --out "$runs/localiser" \
  --epochs 80 --val-fraction 0.2 --recombine 0.1 --bins 32x16 --input 64x128 --seed 1 --quiet --export "$loc"; }
# 2. Real photos only.
train_photos=1827; r1_epochs=400  # the training split of the 2,026 photos
train r1 --epochs "$r1_epochs" --seed 1 "${geometry[@]}"
# 3. Pseudo labels: r1 reads the unlabelled pool where the localiser boxes the number.
[ -s "$runs/pseudo_r1.tsv" ] || { stamp "pseudo labels"; "$B" read --region --model "$runs/r1/housenum.onnx" \
  --localiser "$loc" "$svhn/unlabeled" > "$runs/pseudo_r1.tsv" || true; }
# 4. The members.
ckpts=()
for s in $SEEDS; do
  train "s$s" --epochs 208 --seed "$s" "${geometry[@]}" --recombine 0.3 \
    --pseudo "$runs/pseudo_r1.tsv" --pseudo-min-confidence 0.9
  ckpts+=(--checkpoint "$runs/s$s/last.safetensors")
done
# 5. One ensemble, calibrated under locate with its seven framings (what `read` does).
ensemble() { dir=$1; shift; mkdir -p "$runs/$dir"
  [ -f "$runs/$dir/ensemble.onnx" ] || { stamp "export $dir"; "$B" export "$@" --out "$runs/$dir/ensemble.onnx" \
    --weights "$runs/$dir/housenum.safetensors"; }
  [ -f "$runs/$dir/calibrated.onnx" ] || { stamp "calibrate $dir"; "$B" calibrate "$svhn/train" \
    --model "$runs/$dir/ensemble.onnx" --protocol locate --localiser "$loc" --out "$runs/$dir/calibrated.onnx" -q; }; }
ensemble round1 "${ckpts[@]}"
final=round1
# 6. Round 2: the round-1 ensemble's readings of the pool, four new readers, their ensemble.
if [ "$ROUNDS" -ge 2 ]; then
  [ -s "$runs/pseudo_e1.tsv" ] || { stamp "pseudo labels (round 2)"; "$B" read --region \
    --model "$runs/round1/calibrated.onnx" --localiser "$loc" "$svhn/unlabeled" > "$runs/pseudo_e1.tsv" || true; }
  n=$(awk -F'\t' '$3 >= 0.9' "$runs/pseudo_e1.tsv" | wc -l)
  steps=$(( r1_epochs * train_photos )); seen=$(( train_photos + n ))  # r1's strips: 730,800
  epochs=$(( (steps + seen / 2) / seen ))
  ckpts=()
  for s in $SEEDS; do
    train "t$s" --epochs "$epochs" --seed "$s" "${geometry[@]}" --recombine 0.3 \
      --pseudo "$runs/pseudo_e1.tsv" --pseudo-min-confidence 0.9
    ckpts+=(--checkpoint "$runs/t$s/last.safetensors")
  done
  ensemble round2 "${ckpts[@]}"
  final=round2
fi
stamp "done"
echo "model: $runs/$final/calibrated.onnx (to ship it: copy it to onnx/housenum.onnx and the member"
echo "weights $runs/$final/housenum-K.safetensors to onnx/, then rebuild); localiser: $loc"
