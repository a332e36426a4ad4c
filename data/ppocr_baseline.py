#!/usr/bin/env python3
"""The off-the-shelf baseline of issue 3: PP-OCRv4's text recogniser (the ONNX export shipped in
the `rapidocr_onnxruntime` wheel, Apache-2.0) reading the same crops as `housenum eval --protocol
crop`, its output restricted to blank + the ten digits and decoded greedily (CTC).

  housenum eval DIR --split val --protocol crop --outcomes ours.tsv
  python3 data/ppocr_baseline.py ours.tsv DIR [--growth 1.0] [--out both.tsv]

Reads the images named in ours.tsv from DIR (boxes from DIR/digitStruct.mat), crops the union of
their digit boxes grown by --growth around its centre (1.0: the union itself; `housenum` grows it
by 1.3), and prints both readers' exact-match accuracy and the images only one of them reads.
--growth 1.0 was chosen on the training split (1.0 / 1.15 / 1.3 / 1.6 / 2.0 read 78.3 / 76.0 /
72.7 / 65.7 / 60.4 % of its 1,827 images). Needs: pip install rapidocr_onnxruntime h5py pillow.
"""
import argparse
import csv
import math
import os

import h5py
import numpy as np
import onnxruntime as ort
from PIL import Image


def rec_model():
    import rapidocr_onnxruntime

    d = os.path.join(os.path.dirname(rapidocr_onnxruntime.__file__), "models")
    return os.path.join(d, "ch_PP-OCRv4_rec_infer.onnx")


def digit_boxes(mat):
    """{name: [(left, top, width, height), ...]} from an official digitStruct.mat."""
    f = h5py.File(mat, "r")
    ds = f["digitStruct"]

    def values(group, key):
        v = group[key]
        if v.shape == (1, 1):
            return [float(v[0, 0])]
        return [float(f[v[k, 0]][0, 0]) for k in range(v.shape[0])]

    out = {}
    for i in range(ds["name"].shape[0]):
        name = "".join(chr(int(c)) for c in f[ds["name"][i, 0]][:].flatten())
        bbox = f[ds["bbox"][i, 0]]
        cols = [values(bbox, k) for k in ("left", "top", "width", "height")]
        out[name] = list(zip(*cols))
    return out


def crop_region(boxes, growth, w, h):
    """Union of the boxes grown by `growth` around its centre, clamped (as src/preprocess.rs)."""
    l = min(b[0] for b in boxes)
    t = min(b[1] for b in boxes)
    r = max(b[0] + b[2] for b in boxes)
    btm = max(b[1] + b[3] for b in boxes)
    cx, cy = (l + r) / 2, (t + btm) / 2
    hw, hh = (r - l) * growth / 2, (btm - t) * growth / 2
    x0 = min(max(int(math.floor(cx - hw)), 0), w - 1)
    y0 = min(max(int(math.floor(cy - hh)), 0), h - 1)
    x1 = max(min(int(math.ceil(cx + hw)), w), x0 + 1)
    y1 = max(min(int(math.ceil(cy + hh)), h), y0 + 1)
    return x0, y0, x1, y1


class Recogniser:
    """PP-OCRv4 rec: [1, 3, 48, W] input normalised to [-1, 1], [1, T, 6625] softmax output
    (index 0 blank, index i + 1 the model's `character` metadata line i)."""

    def __init__(self, path, threads):
        so = ort.SessionOptions()
        so.intra_op_num_threads = threads
        self.sess = ort.InferenceSession(path, so)
        chars = self.sess.get_modelmeta().custom_metadata_map["character"].splitlines()
        self.columns = [0] + [chars.index(d) + 1 for d in "0123456789"]

    def read(self, img):
        """Digits of a PIL image of one number, greedy CTC over blank + 0-9."""
        w, h = img.size
        nw = min(max(int(math.ceil(48 * w / h)), 16), 1280)
        x = np.asarray(img.resize((nw, 48), Image.BILINEAR), dtype=np.float32) / 255.0
        x = ((x - 0.5) / 0.5).transpose(2, 0, 1)[None]
        p = self.sess.run(None, {"x": x})[0][0][:, self.columns]
        out, prev = [], 0
        for k in p.argmax(1):
            if k != prev and k != 0:
                out.append(str(k - 1))
            prev = k
        return "".join(out)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("outcomes", help="`housenum eval --protocol crop --outcomes` TSV")
    ap.add_argument("data", help="folder with the images and digitStruct.mat")
    ap.add_argument("--growth", type=float, default=1.0)
    ap.add_argument("--model", default=None, help="PP-OCR rec ONNX (default: rapidocr's)")
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out", help="write name, truth, ours, baseline per image")
    a = ap.parse_args()
    rec = Recogniser(a.model or rec_model(), a.threads)
    boxes = digit_boxes(os.path.join(a.data, "digitStruct.mat"))
    rows = list(csv.DictReader(open(a.outcomes), delimiter="\t"))
    n = ours = base = only_ours = only_base = 0
    lines = ["name\ttruth\tours\tbaseline"]
    for r in rows:
        img = Image.open(os.path.join(a.data, r["name"])).convert("RGB")
        got = rec.read(img.crop(crop_region(boxes[r["name"]], a.growth, *img.size)))
        o, b = r["read"] == r["truth"], got == r["truth"]
        n, ours, base = n + 1, ours + o, base + b
        only_ours += o and not b
        only_base += b and not o
        lines.append(f"{r['name']}\t{r['truth']}\t{r['read']}\t{got}")
    if a.out:
        with open(a.out, "w") as f:
            f.write("\n".join(lines) + "\n")
    print(f"{n} images: housenum {100 * ours / n:.2f} %, PP-OCRv4 rec {100 * base / n:.2f} %; "
          f"only housenum right {only_ours}, only PP-OCRv4 right {only_base}")


if __name__ == "__main__":
    main()
