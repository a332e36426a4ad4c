#!/usr/bin/env python3
"""Compare two `IMG<TAB>DIGITS<TAB>CONFIDENCE` listings (housenum read vs onnx/read.py).

Usage: python3 onnx/compare.py RUST.tsv PYTHON.tsv [--edge-cases N]
Digits must be identical for every image; confidences may differ by at most 0.001 (float
rounding of the last printed digit). With `--edge-cases N`, up to N images may differ in
confidence only: tract and onnxruntime agree on the localiser's box to the last bits of a
float, and when a framing's edge lands within those bits of a pixel boundary the two sides crop
one pixel apart (seen once in 2,026 images: train/104.png, 155 vs 156). They are listed, never
hidden. Exits non-zero and lists the differences otherwise.
"""
import sys


def load(path):
    rows = {}
    with open(path) as f:
        for line in f:
            name, digits, conf = line.rstrip("\n").split("\t")
            rows[name] = (digits, float(conf))
    return rows


def main():
    args = sys.argv[1:]
    edge = 0
    if "--edge-cases" in args:
        i = args.index("--edge-cases")
        edge = int(args[i + 1])
        del args[i:i + 2]
    a, b = load(args[0]), load(args[1])
    problems, confidence_only = [], []
    if a.keys() != b.keys():
        problems.append(f"different images: {sorted(a.keys() ^ b.keys())[:10]}")
    for k in sorted(a.keys() & b.keys()):
        (da, ca), (db, cb) = a[k], b[k]
        line = f"{k}: rust {da} {ca:.3f} vs python {db} {cb:.3f}"
        if da != db:
            problems.append(line)
        elif abs(ca - cb) > 0.0011:
            confidence_only.append(line)
    if len(confidence_only) > edge:
        problems += confidence_only
        confidence_only = []
    n = len(a.keys() & b.keys())
    for line in confidence_only:
        print(f"confidence only (a box edge on a pixel boundary, allowed {edge}): {line}")
    if problems:
        print("\n".join(problems[:50]))
        print(f"{n - len(problems)} passed, {len(problems)} failed")
        sys.exit(1)
    print(f"{n} passed, 0 failed ({len(confidence_only)} confidence-only edge cases)")


if __name__ == "__main__":
    main()
