#!/usr/bin/env python3
"""How good would labels for the unlabelled pool be? Measured on labelled photos, before any
training on them: housenum's own reading (`housenum read --json`), PP-OCRv6's recogniser
(RapidOCR 3.10, Apache-2.0, offline only: it never runs at `read` time) reading the region
housenum read, and their agreement. For each labelling rule: the share of photos it labels
(coverage) and the share of those labels that are right (precision).

  housenum read ../shared/svhn/train --json > read.jsonl
  python3 data/teacher_precision.py read.jsonl ../shared/svhn/labels/train_all.csv [--names F]

The shipped reader trained on most of these photos, so its precision on them is flattered:
`--names F…` keeps only the photos named in the first column of the files F, e.g. the
validation split, the only one the reader never trained on (`housenum eval
../shared/svhn/train --split val --outcomes val.tsv`). The recogniser's output is kept to its digits. Prints a table.

`--label-pool POOL.jsonl OUT.tsv` then labels unlabelled photos by one rule (`--rule`, default
"agree, or housenum >= 0.98") and writes what it keeps as `train --pseudo` reads it
(`IMAGE<TAB>DIGITS<TAB>1.0<TAB>X0,Y0,X1,Y1`: the region both read, where training crops it):

  housenum read ../shared/svhn/unlabeled --json > pool.jsonl
  python3 data/teacher_precision.py read.jsonl labels.csv --label-pool pool.jsonl pool.tsv

Needs: pip install rapidocr pillow numpy.
"""
import argparse
import csv
import json
import os

import numpy as np
from PIL import Image


# Labelling rules over (truth, housenum digits, its confidence, teacher digits, its score).
RULES = {
    "housenum, confidence >= 0.9": lambda t, h, c, p, s: h if c >= 0.9 else None,
    "housenum, confidence >= 0.98": lambda t, h, c, p, s: h if c >= 0.98 else None,
    "PP-OCRv6 recogniser, score >= 0.9": lambda t, h, c, p, s: p if s >= 0.9 and p else None,
    "both agree": lambda t, h, c, p, s: h if h and h == p else None,
    "both agree, housenum >= 0.5": lambda t, h, c, p, s: h if h and h == p and c >= 0.5
    else None,
    "agree, or housenum >= 0.98": lambda t, h, c, p, s: h if h and (h == p or c >= 0.98)
    else None,
}
# Rules that never look at the teacher: labelling the pool by them skips its recogniser.
HOUSENUM_ONLY = {"housenum, confidence >= 0.9", "housenum, confidence >= 0.98"}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("read_jsonl")
    ap.add_argument("labels_csv")
    ap.add_argument("--names", nargs="+", help="outcome files whose first column names the photos to keep")
    ap.add_argument("--label-pool", nargs=2, metavar=("POOL_JSONL", "OUT_TSV"),
                    help="also label these unlabelled photos by --rule and write them for train --pseudo")
    ap.add_argument("--rule", default="agree, or housenum >= 0.98", choices=list(RULES))
    args = ap.parse_args()
    keep = None
    if args.names:
        keep = set()
        for path in args.names:
            with open(path) as f:
                keep.update(line.split("\t")[0] for line in f if not line.startswith("name\t"))
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "error"})
    truth = {}
    with open(args.labels_csv) as f:
        for row in csv.DictReader(f):
            truth[row["name"]] = row["digits"]
    rows = []
    for v, name in readings(args.read_jsonl):
        if name not in truth or keep is not None and name not in keep:
            continue
        teacher, tscore = recognise(engine, v)
        rows.append((truth[name], v["digits"], float(v["confidence"]), teacher, tscore))
    n = len(rows)
    if n == 0:
        raise SystemExit(f"{args.read_jsonl}: no reading of a labelled photo (kept by --names) to measure")
    print(f"{n} labelled photos")
    print(f"{'rule':<36} {'coverage':>9} {'precision':>10} {'labels right':>13}")
    for name, rule in RULES.items():
        labels = [(rule(*r), r[0]) for r in rows]
        kept = [(l, t) for l, t in labels if l]
        right = sum(l == t for l, t in kept)
        print(f"{name:<36} {100 * len(kept) / n:8.2f}% {100 * right / max(len(kept), 1):9.2f}% "
              f"{right:>13}")
    print(f"{'(any reading) housenum / PP-OCRv6':<36} "
          f"{100 * sum(h == t for t, h, *_ in rows) / n:8.2f}% "
          f"{100 * sum(p == t for t, _, _, p, _ in rows) / n:9.2f}%")
    if args.label_pool:
        pool_jsonl, out_tsv = args.label_pool
        rule, kept, seen = RULES[args.rule], 0, 0
        with open(out_tsv, "w") as out:
            for v, _ in readings(pool_jsonl):
                seen += 1
                teacher, tscore = ("", 0.0) if args.rule in HOUSENUM_ONLY else recognise(engine, v)
                label = rule(None, v["digits"], float(v["confidence"]), teacher, tscore)
                if label:
                    kept += 1
                    x0, y0, x1, y1 = v["region"]
                    out.write(f"{v['path']}\t{label}\t1.0\t{x0},{y0},{x1},{y1}\n")
        print(f"pool: {kept} of {seen} photos labelled by \"{args.rule}\" -> {out_tsv}")


def readings(path):
    """`housenum read --json` rows with a region (photos that failed to load skipped), with each
    photo's file name."""
    with open(path) as f:
        for line in f:
            v = json.loads(line)
            if "error" in v or not v.get("region"):
                continue
            yield v, os.path.basename(v["path"])


def recognise(engine, v):
    """PP-OCRv6's recogniser on the region housenum read: (its digits, its score)."""
    x0, y0, x1, y1 = v["region"]
    crop = np.asarray(Image.open(v["path"]).convert("RGB"))[y0:y1, x0:x1, ::-1]
    out = engine(np.ascontiguousarray(crop), use_det=False, use_cls=False, use_rec=True)
    texts = getattr(out, "txts", None) or ()
    scores = getattr(out, "scores", None) or ()
    teacher = "".join(c for c in (texts[0] if texts else "") if c.isdigit())
    return teacher, float(scores[0]) if scores else 0.0


if __name__ == "__main__":
    main()
