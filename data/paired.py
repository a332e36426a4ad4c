#!/usr/bin/env python3
"""Compare two models image by image on the same images: which misreads the second one fixed,
which it broke, and how likely a difference that large is by chance (exact two-sided McNemar
test: under "no difference" each changed image is a fair coin).

Usage: data/paired.py A.tsv B.tsv   (files written by `housenum eval --outcomes FILE`)
"""
import csv
import signal
import sys
from math import comb


def load(path):
    with open(path, newline="") as f:
        return {r["name"]: r for r in csv.DictReader(f, delimiter="\t")}


def mcnemar_p(fixed, broken):
    """Exact two-sided p-value of `fixed` vs `broken` changed images under p = 1/2."""
    n = fixed + broken
    if n == 0:
        return 1.0
    tail = sum(comb(n, k) for k in range(min(fixed, broken) + 1)) / 2**n
    return min(1.0, 2 * tail)


def main():
    if len(sys.argv) != 3:
        sys.exit(__doc__)
    a, b = load(sys.argv[1]), load(sys.argv[2])
    if set(a) != set(b):
        sys.exit("the two files list different images: evaluate both on the same folder and split")
    fixed = sorted(n for n in a if a[n]["right"] == "0" and b[n]["right"] == "1")
    broken = sorted(n for n in a if a[n]["right"] == "1" and b[n]["right"] == "0")
    ra = sum(r["right"] == "1" for r in a.values())
    rb = sum(r["right"] == "1" for r in b.values())
    n = len(a)
    print(f"images {n}: A right {ra} ({100 * ra / n:.2f} %), B right {rb} ({100 * rb / n:.2f} %)")
    print(f"B fixed {len(fixed)}, broke {len(broken)}: exact McNemar p = {mcnemar_p(len(fixed), len(broken)):.3f}")
    for name in fixed:
        print(f"  fixed  {name}\t{a[name]['truth']}\tA {a[name]['read']}\tB {b[name]['read']}")
    for name in broken:
        print(f"  broke  {name}\t{a[name]['truth']}\tA {a[name]['read']}\tB {b[name]['read']}")


if __name__ == "__main__":
    signal.signal(signal.SIGPIPE, signal.SIG_DFL)  # `| head` ends the listing quietly
    main()
