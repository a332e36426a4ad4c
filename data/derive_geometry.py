#!/usr/bin/env python3
"""Derive the geometry table `data/geometry.json` that `housenum synth` draws from.

Inputs (read-only, never committed): `../shared/svhn/labels/train_all.csv` (labels and digit
boxes of all 33,402 official SVHN train images) and the 2,026 images of `../shared/svhn/train/`
(only their header sizes: the CSV has no image sizes).

Every quantity is stored as 101 quantiles (0 %, 1 %, ..., 100 %) of its empirical
distribution; the generator samples one by inverse-CDF with linear interpolation. Quantities:

- `length`: counts of numbers of 1..6 digits (all 33,402 rows).
- `digit_height`: digit box height, pixels (all digits).
- `aspect`: digit box width / height (all digits).
- `gap`: (next.left - this.right) / mean height of the pair, for consecutive digits.
- `dy`: (next.top - this.top) / this.height, consecutive digits (vertical jitter).
- `dh`: next.height / this.height, consecutive digits.
- `margin_x`, `margin_y`: image width / union width and image height / union height
  (the 2,026 images whose size is known).
- `centre_x`, `centre_y`: union centre / image size, same images.

Run: python3 data/derive_geometry.py ../shared/svhn > data/geometry.json
"""
import csv
import json
import struct
import sys
from pathlib import Path


def png_size(path):
    with open(path, "rb") as f:
        head = f.read(24)
    if head[:8] != b"\x89PNG\r\n\x1a\n":
        return None
    return struct.unpack(">II", head[16:24])


def quantiles(values):
    v = sorted(values)
    n = len(v)
    out = []
    for q in range(101):
        pos = q / 100 * (n - 1)
        lo = int(pos)
        hi = min(lo + 1, n - 1)
        out.append(round(v[lo] + (v[hi] - v[lo]) * (pos - lo), 4))
    return out


def main():
    root = Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/svhn")
    length = {}
    h, aspect, gap, dy, dh = [], [], [], [], []
    mx, my, cx, cy = [], [], [], []
    with open(root / "labels" / "train_all.csv") as f:
        for row in csv.DictReader(f):
            boxes = [tuple(float(x) for x in b.split(":")) for b in row["boxes_left_top_width_height"].split(";")]
            length[len(boxes)] = length.get(len(boxes), 0) + 1
            for (l, t, w, hh) in boxes:
                if w >= 1 and hh >= 1:
                    h.append(hh)
                    aspect.append(w / hh)
            for a, b in zip(boxes, boxes[1:]):
                if a[3] >= 1 and b[3] >= 1:
                    gap.append((b[0] - (a[0] + a[2])) / ((a[3] + b[3]) / 2))
                    dy.append((b[1] - a[1]) / a[3])
                    dh.append(b[3] / a[3])
            img = root / "train" / row["name"]
            if img.is_file():
                size = png_size(img)
                if size:
                    iw, ih = size
                    l = min(b[0] for b in boxes)
                    t = min(b[1] for b in boxes)
                    r = max(b[0] + b[2] for b in boxes)
                    bt = max(b[1] + b[3] for b in boxes)
                    if r - l >= 1 and bt - t >= 1:
                        mx.append(iw / (r - l))
                        my.append(ih / (bt - t))
                        cx.append(((l + r) / 2) / iw)
                        cy.append(((t + bt) / 2) / ih)
    table = {
        "source": "derived by data/derive_geometry.py from SVHN labels/train_all.csv "
        f"({sum(length.values())} numbers, {len(h)} digits) and the sizes of {len(mx)} train images",
        "length": {str(k): length[k] for k in sorted(length)},
    }
    for name, vals in [("digit_height", h), ("aspect", aspect), ("gap", gap), ("dy", dy),
                       ("dh", dh), ("margin_x", mx), ("margin_y", my), ("centre_x", cx),
                       ("centre_y", cy)]:
        table[name] = quantiles(vals)
    json.dump(table, sys.stdout, indent=1)
    print()


if __name__ == "__main__":
    main()
