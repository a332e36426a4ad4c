#!/usr/bin/env bash
# The framing benchmark: how much `read`'s default (locate: the localiser's box, seven framings)
# loses against the labelled box (crop) as photos are framed looser. Each photo is read as it
# is, pasted into canvases 2x and 4x its size made of other photos' digit-free parts
# (`eval --zoom-out K`), and scaled to a phone's 4,000 px width after a 4x zoom-out
# (`--zoom-out 4 --phone`), and cut at the digits' box as people crop a photo (`--tight 0`).
# Prints one row per framing: crop, locate, and their gap in points;
# then, for canvases of the same framings holding no number (`--no-number`), the share `read`
# says holds none.
# Usage: benches/framing.sh [SVHN_DIR] [SPLIT] [EXTRA EVAL ARGS...]
#   SVHN_DIR defaults to ../shared/svhn/train, SPLIT to train (decide on the training split;
#   report on val). Needs a release build (`cargo build --release`).
set -euo pipefail
cd "$(dirname "$0")/.."
data="${1:-../shared/svhn/train}"; split="${2:-train}"; shift $(( $# > 2 ? 2 : $# ))
bin="${CARGO_TARGET_DIR:-target}/release/housenum"
acc() { "$bin" eval "$data" --split "$split" --json -q "$@" \
  | python3 -c 'import json,sys; print("%.2f" % (100 * json.load(sys.stdin)["sequence_accuracy"]))'; }
printf '%-22s %8s %8s %8s\n' framing crop locate gap
for f in "as is" "2x" "4x" "phone (4x, 4000 px)" "cut at the digits"; do
  case "$f" in
    "as is") z=() ;; 2x) z=(--zoom-out 2) ;; 4x) z=(--zoom-out 4) ;; phone*) z=(--zoom-out 4 --phone) ;;
    *) z=(--tight 0) ;;
  esac
  c=$(acc --protocol crop "${z[@]}" "$@"); l=$(acc --protocol locate "${z[@]}" "$@")
  printf '%-22s %7s%% %7s%% %8s\n' "$f" "$c" "$l" "$(python3 -c "print(f'{$l - $c:+.2f}')")"
done
printf '%-22s %8s\n' "no number" "said so"
for f in "as is" "4x" "phone (4x, 4000 px)"; do
  case "$f" in
    "as is") z=() ;; 4x) z=(--zoom-out 4) ;; *) z=(--zoom-out 4 --phone) ;;
  esac
  printf '%-22s %7s%%\n' "$f" "$(acc --protocol locate --no-number "${z[@]}" "$@")"
done
