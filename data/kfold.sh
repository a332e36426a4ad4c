#!/usr/bin/env bash
# K-fold cross-validation of one training recipe, for decisions that see 2 points: the photos
# outside the validation split (1,827 of SVHN's 2,026) are cut into K folds by file-name hash;
# K models are trained, each holding one fold out (`--fold I/K`), and each is measured on its
# own fold. The folds' outcomes are joined into OUT/outcomes.tsv, one row per photo, so that two
# recipes are compared photo by photo over all 1,827 with `data/paired.py A/outcomes.tsv
# B/outcomes.tsv` (one photo is 0.05 points). Validation stays for reporting.
#
# Usage: data/kfold.sh reader|recipe|localiser|detector OUT K [TRAINING ARGS...] [-- EVAL ARGS...]
#   reader:    `housenum train --fold I/K ARGS`, exported, measured with `eval --protocol crop`
#   recipe:    the shipped reader's whole recipe (`FOLD=I/K data/recipe.sh`: v1 ... v21, each step
#              holding the fold out; env such as SEED or NORM passes through; no TRAINING ARGS),
#              v21 measured with `eval --protocol crop`: the baseline a new reader must beat
#   localiser: `housenum train-localiser --fold I/K ARGS`, exported coarse to fine (`--refine`),
#              measured with `eval --protocol locate` (what `read` does) and the shipped reader
#   detector:  `housenum train-detector --fold I/K --val-fraction 0.1 ARGS` (the folds' share,
#              unless ARGS set one), measured with `eval --protocol locate --detector` (the
#              second look's detector; the shipped reader, localiser and verifier)
#   `{i}` in an argument becomes the fold's index (e.g. `--extra synth/{i}`, a folder made for
#   that fold by `housenum synth --backgrounds DIR --fold {i}/K`; in EVAL ARGS, `--localiser
#   loc/fold-{i}/refined.onnx`, the localiser that never saw the fold).
#   EVAL ARGS are added to every eval (e.g. `--zoom-out 4`; a `--val-fraction` other than 0.1
#   goes to both sides); EVAL_TAG=name measures trained folds again under other eval args.
# Env: SVHN (default ../shared/svhn/train); HOUSENUM, the binary (a release build with training).
# A fold whose model exists is not trained again, and training resumes from its last
# checkpoint, so a stopped run is continued by running this again.
# Prints each fold's accuracy and the mean ± standard deviation over folds.
# Cost on 2 cores: K times one training run (a localiser of data/recipe.sh: ~13 min a fold, its
# detector ~20 min; the reader's recipe: its reader steps, ~1 h 14 min on all 1,827 photos).
set -euo pipefail
cd "$(dirname "$0")/.."
kind=$1; out=$2; k=$3; shift 3
train_args=(); eval_args=()
while [ $# -gt 0 ]; do
  if [ "$1" = "--" ]; then shift; eval_args=("$@"); break; fi
  train_args+=("$1"); shift
done
svhn="${SVHN:-../shared/svhn/train}"; tag="${EVAL_TAG:-eval}"
B="${HOUSENUM:-${CARGO_TARGET_DIR:-target}/release/housenum}"  # HOUSENUM=path overrides
mkdir -p "$out"
for i in $(seq 1 "$k"); do
  d="$out/fold-$i"
  fold_args=("${train_args[@]//\{i\}/$i}")
  fold_eval=("${eval_args[@]//\{i\}/$i}")
  case "$kind" in
    reader)
      model="$d/housenum.onnx"
      [ -f "$model" ] || { "$B" train --data "$svhn" --out "$d" --fold "$i/$k" -q "${fold_args[@]}"
        "$B" export --checkpoint "$d/last.safetensors" --out "$model"; }
      models=(--model "$model"); protocol=crop ;;
    recipe)
      [ ${#fold_args[@]} -eq 0 ] || { echo "recipe takes no training arguments" >&2; exit 2; }
      model="$d/v21/housenum.onnx"
      [ -f "$model" ] || FOLD="$i/$k" HOUSENUM="$B" data/recipe.sh "$(dirname "$svhn")" "$d"
      models=(--model "$model"); protocol=crop ;;
    localiser)
      model="$d/refined.onnx"
      [ -f "$model" ] || { "$B" train-localiser --data "$svhn" --out "$d" --fold "$i/$k" --quiet "${fold_args[@]}"
        "$B" export-localiser --checkpoint "$d/localiser.safetensors" --refine --out "$model"; }
      models=(--localiser "$model"); protocol=locate ;;
    detector)
      model="$d/detector.onnx"
      share=(--val-fraction 0.1)
      [[ " ${fold_args[*]} " == *" --val-fraction"[\ =]* ]] && share=()
      [ -f "$model" ] || "$B" train-detector --data "$svhn" --out "$d" --fold "$i/$k" --quiet \
        "${share[@]}" "${fold_args[@]}" --export "$model"
      models=(--detector "$model"); protocol=locate ;;
    *) echo "kind must be reader, recipe, localiser or detector, not $kind" >&2; exit 2 ;;
  esac
  "$B" eval "$svhn" --split fold --fold "$i/$k" --protocol "$protocol" "${models[@]}" -q --json \
    --outcomes "$d/$tag.outcomes.tsv" "${fold_eval[@]}" > "$d/$tag.json"
done
python3 - "$out" "$k" "$tag" <<'EOF'
import csv, json, statistics, sys
out, k, tag = sys.argv[1], int(sys.argv[2]), sys.argv[3]
accs, rows, header = [], [], None
for i in range(1, k + 1):
    d = f"{out}/fold-{i}"
    accs.append(100 * json.load(open(f"{d}/{tag}.json"))["sequence_accuracy"])
    with open(f"{d}/{tag}.outcomes.tsv", newline="") as f:
        r = csv.reader(f, delimiter="\t")
        header = next(r)
        rows.extend(r)
    print(f"fold {i}/{k}: {accs[-1]:.2f} %")
name = "outcomes.tsv" if tag == "eval" else f"{tag}.outcomes.tsv"
with open(f"{out}/{name}", "w", newline="") as f:
    w = csv.writer(f, delimiter="\t", lineterminator="\n")
    w.writerow(header)
    w.writerows(rows)
right = sum(r[header.index("right")] == "1" for r in rows)
print(f"mean {statistics.mean(accs):.2f} ± {statistics.stdev(accs):.2f} % over {k} folds; "
      f"all {len(rows)} photos: {100 * right / len(rows):.2f} % ({out}/{name})")
EOF
