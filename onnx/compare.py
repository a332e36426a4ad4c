#!/usr/bin/env python3
"""Compare two `IMG<TAB>DIGITS<TAB>CONFIDENCE` listings (housenum read vs onnx/read.py).

Usage: python3 onnx/compare.py RUST.tsv PYTHON.tsv
Digits must be identical for every image; confidences may differ by at most 0.001 (float
rounding of the last printed digit). Exits non-zero and lists the differences otherwise.
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
    a, b = load(sys.argv[1]), load(sys.argv[2])
    problems = []
    if a.keys() != b.keys():
        problems.append(f"different images: {sorted(a.keys() ^ b.keys())[:10]}")
    for k in sorted(a.keys() & b.keys()):
        (da, ca), (db, cb) = a[k], b[k]
        if da != db or abs(ca - cb) > 0.0011:
            problems.append(f"{k}: rust {da} {ca:.3f} vs python {db} {cb:.3f}")
    n = len(a.keys() & b.keys())
    if problems:
        print("\n".join(problems[:50]))
        print(f"{n - len(problems)} passed, {len(problems)} failed")
        sys.exit(1)
    print(f"{n} passed, 0 failed")


if __name__ == "__main__":
    main()
