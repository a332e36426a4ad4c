#!/usr/bin/env bash
# The shipped models from scratch: v1 (real photos) → pseudo labels → v2 (+ self-training) →
# pseudo labels → v3 (+ recombination, wider) → pseudo labels → v6 (+ padding, fine-tuned from
# v3) → v10 (+ strips stretched 1.4× horizontally, fine-tuned from v6) → pseudo labels → v21
# (+ synthetic numbers in the training fonts, fine-tuned from v10) → export → calibration, the
# localiser of the locate protocol and the detector of the second look.
# docs/experiments.md names each step and what it measured.
# Options, each measured and not adopted (docs/experiments.md): WITH_REGIONS=1 also trains v8
# (self-training on search's regions); WITH_SYNTH=1 also v4 (+ 40 % synthetic numbers from v3; measured
# with every font, now drawn from the training fonts); LOCATED=1
# trains v6 and v10 on v3's readings of the unlabelled pool under `locate` (seven framings,
# confidence >= 0.9, each on its region) instead of its whole-image readings.
# SEED=K seeds every reader step with K; V3_EPOCHS=N sets v3's epochs (default 300). NORM=1 trains
# every reader step with batch normalisation (`train --norm`; Rule N: +2.0 and +2.3 points at v1's
# step on two seeds, Rule NH: +0.33 once the pool's labels are beside the photos; the full recipe
# with it not measured).
# FOLD=I/K trains the reader's steps alone, each holding fold I of K out (`train --fold`), v21's
# pseudo labels from v10 uncalibrated (the same labels: they are filtered on the best path's
# probability), and stops after v21: `data/kfold.sh recipe` measures it on the held-out fold.
# Every step is skipped when its output exists and every training run resumes from its last
# checkpoint, so a stopped run is continued by running this again.
# Usage: data/recipe.sh [SVHN_DIR] [RUNS_DIR]   (defaults ../shared/svhn, runs)
# Needs a release build with training: cargo build --release --features train.
# Time on 2 cores: the reader's steps ~1 h 14 min alone (v21: 10 min); the localiser 18 min (with other work beside it);
# the detector 22 min (16 s an epoch alone; its 800 synthetic numbers 2 s),
# and run again its localiser/refined.onnx is onnx/localiser.onnx byte for byte.
set -euo pipefail
cd "$(dirname "$0")/.."
svhn="${1:-../shared/svhn}"; runs="${2:-runs}"
B="${HOUSENUM:-${CARGO_TARGET_DIR:-target}/release/housenum}"  # HOUSENUM=path overrides
mkdir -p "$runs"
seed="${SEED:-1}"  # the readers' seed (the localisers keep seeds 1-4)
v3_epochs="${V3_EPOCHS:-300}"  # v3's schedule
norm=(); [ "${NORM:-0}" = 1 ] && norm=(--norm)
fold=(); [ -n "${FOLD:-}" ] && fold=(--fold "$FOLD")
train() { out=$1; shift; [ -f "$runs/$out/housenum.onnx" ] && return 0
  "$B" train --data "$svhn/train" --out "$runs/$out" --seed "$seed" -q "${norm[@]}" "${fold[@]}" "$@"
  "$B" export --checkpoint "$runs/$out/last.safetensors" --out "$runs/$out/housenum.onnx"; }
pseudo_from() { [ -s "$runs/$2" ] || "$B" read --protocol full --path-confidence --model "$1" "$svhn/unlabeled" > "$runs/$2" || true; }
pseudo() { pseudo_from "$runs/$1/housenum.onnx" "$2"; }

train v1 --epochs 400
pseudo v1 pseudo_v1.tsv
train v2 --epochs 300 --dropout 0.1 --pseudo "$runs/pseudo_v1.tsv" --pseudo-min-confidence 0.5
pseudo v2 pseudo_v2.tsv
train v3 --epochs "$v3_epochs" --dropout 0.1 --channels 48,96,192,192 --hidden 160 --recombine 0.3 \
  --pseudo "$runs/pseudo_v2.tsv" --pseudo-min-confidence 0.5
# The localiser of the locate protocol (`read`'s default): one localiser predicting column and row
# profiles over 32 x 16 bands (`--bins`) of the photo resized to 64 x 128, trained on the digit
# boxes with 10 % recombined numbers of 1-10 digits, half the photos framed up to 6x looser
# (`--zoom-out`) and a fifth cut close to the number (`--zoom-in`), a development split (the next
# 10 % by name hash) held out besides validation; exported to be read coarse to fine (`--refine`:
# a second pass around the first box).
d="$runs/localiser"
[ -n "${FOLD:-}" ] && [ "${LOCATED:-0}" = 1 ] && { echo "FOLD and LOCATED=1 do not go together" >&2; exit 2; }
[ -n "${FOLD:-}" ] || [ -f "$d/localiser.onnx" ] || "$B" train-localiser --data "$svhn/train" --out "$d" --epochs 80 --val-fraction 0.2 \
  --recombine 0.1 --bins 32x16 --input 64x128 --zoom-out 0.5 --zoom-out-max 6 --zoom-in 0.2 --seed 1 \
  --quiet --export "$d/localiser.onnx"
loc="$d/refined.onnx"
[ -n "${FOLD:-}" ] || [ -f "$loc" ] || "$B" export-localiser --checkpoint "$d/localiser.safetensors" --refine --out "$loc"
if [ "${LOCATED:-0}" = 1 ]; then
  [ -s "$runs/pseudo_v3r.tsv" ] || "$B" read --region --localiser "$loc" \
    --model "$runs/v3/housenum.onnx" "$svhn/unlabeled" > "$runs/pseudo_v3r.tsv" || true
  p3=(--pseudo "$runs/pseudo_v3r.tsv" --pseudo-min-confidence 0.9)
else
  pseudo v3 pseudo_v3.tsv
  p3=(--pseudo "$runs/pseudo_v3.tsv" --pseudo-min-confidence 0.5)
fi
train v6 --epochs 80 --lr 0.001 --dropout 0.1 --pad 12 --init "$runs/v3/last.safetensors" --recombine 0.3 \
  "${p3[@]}"
train v10 --epochs 30 --lr 0.001 --dropout 0.1 --pad 12 --stretch 1.4 --max-width 224 \
  --init "$runs/v6/last.safetensors" --recombine 0.3 "${p3[@]}"
v21() { train v21 --epochs 30 --lr 0.001 --dropout 0.1 --pad 12 --stretch 1.4 --max-width 224 \
  --init "$runs/v10/last.safetensors" --recombine 0.3 --synth 0.3 \
  --pseudo "$runs/pseudo_v10.tsv" --pseudo-min-confidence 0.5; }
if [ -n "${FOLD:-}" ]; then
  pseudo_from "$runs/v10/housenum.onnx" pseudo_v10.tsv
  v21
  echo "model: $runs/v21/housenum.onnx (fold $FOLD held out)"
  exit 0
fi
# The detector of `read`'s second look: a fully convolutional network marking the 8 x 8 cells
# that lie on a number, trained on crops of the training photos framed up to 8x looser with the
# number 8-48 px high (train-detector's defaults; the development split held out), and of 800
# synthetic numbers in the training fonts on those photos' digit-free parts (`--extra`).
syn="$runs/detector_synth"
[ -f "$syn/digitStruct.mat" ] || "$B" synth --out "$syn" --fonts training --count 800 --max-len 6 --seed 11 \
  --backgrounds "$svhn/train" --val-fraction 0.2
det="$runs/detector"
[ -f "$det/detector.onnx" ] || "$B" train-detector --data "$svhn/train" --out "$det" --epochs 80 --seed 1 \
  --extra "$syn" --quiet --export "$det/detector.onnx"
echo "localiser: $loc, detector: $det/detector.onnx (copy to onnx/ and rebuild to ship them)"
# Calibration under locate with its seven framings, what `read` does, with the localisers just trained.
calibrate() { [ -f "$runs/$1/calibrated.onnx" ] || "$B" calibrate "$svhn/train" --model "$runs/$1/housenum.onnx" \
  --protocol locate --localiser "$loc" --out "$runs/$1/calibrated.onnx" -q; }
calibrate v10
# v21: v10 fine-tuned 30 epochs more with 30 % synthetic numbers in the training fonts (the
# held-out families never drawn; benches/styles.sh measures them), on v10's own readings of the
# unlabelled pool. The shipped reader.
pseudo_from "$runs/v10/calibrated.onnx" pseudo_v10.tsv
v21
calibrate v21
echo "model: $runs/v21/calibrated.onnx (copy to onnx/housenum.onnx and rebuild to ship it)"

if [ "${WITH_REGIONS:-0}" = 1 ]; then  # v8: self-training on the regions search chose (measured, not shipped)
  [ -s "$runs/pseudo_v6r.tsv" ] || "$B" read --protocol search --region --path-confidence --model "$runs/v6/housenum.onnx" "$svhn/unlabeled" > "$runs/pseudo_v6r.tsv" || true
  train v8 --epochs 50 --lr 0.0007 --dropout 0.1 --pad 12 --init "$runs/v6/last.safetensors" --recombine 0.3 \
    --pseudo "$runs/pseudo_v6r.tsv" --pseudo-min-confidence 0.7
fi
if [ "${WITH_SYNTH:-0}" = 1 ]; then
  train v4 --epochs 130 --dropout 0.1 --init "$runs/v3/last.safetensors" --lr 0.001 --max-width 256 \
    --synth 0.4 --synth-max-len 10 --recombine 0.2 --recombine-max-len 10 \
    --pseudo "$runs/pseudo_v2.tsv" --pseudo-min-confidence 0.5
fi
