#!/usr/bin/env python3
"""Read house numbers with onnx/housenum.onnx under onnxruntime, exactly as `housenum read` does.

Usage: python3 onnx/read.py [--model onnx/housenum.onnx] [--protocol search|full] IMG...
Prints IMG<TAB>DIGITS<TAB>CONFIDENCE per image (same format as `housenum read`).
Needs: onnxruntime, numpy, pillow.
"""
import argparse
import json
import math
import os
import sys

import numpy as np
import onnxruntime as ort
from PIL import Image

HEIGHT, MIN_WIDTH, MAX_WIDTH = 32, 32, 1024


def triangle_weights(in_size, out_size):
    """[out_size, in_size] matrix of the antialiased triangle filter (PIL's BILINEAR)."""
    scale = in_size / out_size
    fs = max(scale, 1.0)
    m = np.zeros((out_size, in_size), dtype=np.float64)
    for i in range(out_size):
        center = (i + 0.5) * scale
        lo = max(int(math.floor(center - fs + 0.5)), 0)
        hi = min(int(math.floor(center + fs + 0.5)), in_size)
        x = np.arange(lo, hi, dtype=np.float64)
        w = np.maximum(0.0, 1.0 - np.abs((x - center + 0.5) / fs))
        if w.sum() > 0:
            w /= w.sum()
        m[i, lo:hi] = w
    return m.astype(np.float32).astype(np.float64)


# Protocol "search" (the default of `housenum read`): the whole image and these centred crops,
# as (width, height) fractions; the most confident reading wins (the first on ties).
SEARCH_CROPS = [(0.7, 1.0), (0.5, 1.0), (0.7, 0.85), (0.5, 0.85), (0.35, 0.85)]


def load(path):
    """The image as [h, w, 3] floats in [0, 1]."""
    return np.asarray(Image.open(path).convert("RGB"), dtype=np.float64) / 255.0


def regions(w, h, search=True):
    """(x0, y0, x1, y1) of every region read: the whole image, then the centred crops."""
    out = [(0, 0, w, h)]
    for fw, fh in SEARCH_CROPS if search else []:
        # f32 products rounded half away from zero, as Rust's f32::round.
        cw = min(max(int(math.floor(float(np.float32(w) * np.float32(fw)) + 0.5)), 1), w)
        ch = min(max(int(math.floor(float(np.float32(h) * np.float32(fh)) + 0.5)), 1), h)
        x0, y0 = (w - cw) // 2, (h - ch) // 2
        out.append((x0, y0, x0 + cw, y0 + ch))
    return out


def to_strip(img):
    """[h, w, 3] image (or crop) -> normalised [1, 3, 32, W] float32 strip."""
    h, w = img.shape[:2]
    out_w = min(max(int(math.floor(w * HEIGHT / h + 0.5)), 1), MAX_WIDTH)
    wy, wx = triangle_weights(h, HEIGHT), triangle_weights(w, out_w)
    strip = np.stack([wy @ img[:, :, c] @ wx.T for c in range(3)])  # [3, 32, out_w]
    strip = strip.astype(np.float32).astype(np.float64)
    std = max(strip.std(), 0.01)
    strip = (strip - strip.mean()) / std
    if out_w < MIN_WIDTH:
        left = (MIN_WIDTH - out_w) // 2
        padded = np.zeros((3, HEIGHT, MIN_WIDTH))
        padded[:, :, left:left + out_w] = strip
        strip = padded
    return strip[None].astype(np.float32)


def preprocess(path):
    """The image file as a normalised [1, 3, 32, W] float32 strip (full-image protocol)."""
    return to_strip(load(path))


def greedy_decode(log_probs):
    """log_probs [T, 11] -> (digits, confidence): best path, repeats merged, blanks (0) dropped."""
    best = log_probs.argmax(axis=1)
    conf = float(np.float32(math.exp(float(np.sum(log_probs.max(axis=1).astype(np.float64))))))
    digits, prev = [], 0
    for k in best:
        if k != 0 and k != prev:
            digits.append(str(k - 1))
        prev = k
    return "".join(digits), min(max(conf, 0.0), 1.0)


def calibrate(conf, cal):
    """Platt scaling stored in the model's metadata (`housenum.calibration`): sigmoid(a*logit(p)+b)."""
    if cal is None:
        return conf
    p = min(max(conf, 1e-6), 1.0 - 1e-6)
    z = cal["a"] * math.log(p / (1.0 - p)) + cal["b"]
    return float(np.float32(1.0 / (1.0 + math.exp(-z))))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(here, "housenum.onnx"))
    ap.add_argument("--protocol", choices=["search", "full"], default="search")
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    cal = json.loads(meta["housenum.calibration"]) if "housenum.calibration" in meta else None
    failed = 0
    for path in args.images:
        try:
            img = load(path)
            h, w = img.shape[:2]
            strips = [to_strip(img[y0:y1, x0:x1]) for x0, y0, x1, y1 in regions(w, h, args.protocol == "search")]
        except Exception as e:  # report and go on, like `housenum read`
            print(f"error: {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        best = None
        for x in strips:
            (lp,) = sess.run(["log_probs"], {"strip": x})
            digits, conf = greedy_decode(lp[:, 0, :])
            conf = calibrate(conf, cal)
            if best is None or conf > best[1]:
                best = (digits, conf)
        print(f"{path}\t{best[0]}\t{best[1]:.3f}")
    sys.exit(1 if failed else 0)


if __name__ == "__main__":
    main()
