#!/usr/bin/env python3
"""The general OCR peer on the photos `housenum read` meets: RapidOCR 3.10's whole pipeline
(PP-OCRv6 detection, angle classification and recognition, Apache-2.0, from the `rapidocr`
wheel) on a folder written by `housenum eval --zoom-out K [--phone] --save-framed DIR`, beside
`housenum read`'s answers on the same files. A photo counts as read when the digits of the
detected line with the most digits equal the label.

  housenum eval SVHN_DIR --split val --protocol locate --zoom-out 2 --save-framed /tmp/framed2
  housenum read /tmp/framed2 --json > /tmp/framed2.jsonl
  python3 benches/rapidocr_peer.py /tmp/framed2 [--housenum /tmp/framed2.jsonl]
  python3 benches/rapidocr_peer.py /tmp/framed2 --detector-boxes

The detector runs with PaddleOCR's classic limit (longest side at most 960 px): RapidOCR's
default (shortest side at least 736 px) upscales SVHN's small photos and finds text in few of
them (4 of the first 40 development photos, against 25 with 960 px). `--detector-boxes` also
reads each box the detector finds with housenum's reader (onnxruntime, `onnx/read.py`'s recipe:
the box grown 30 %; the most confident non-empty reading's box read under all seven framings),
the side-by-side comparison of PP-OCRv6's detector with housenum's localiser. Prints one JSON
line. Needs: pip install rapidocr onnxruntime numpy pillow.
"""
import argparse
import json
import os
import sys
import time

import numpy as np

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, "..", "onnx"))


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("dir")
    ap.add_argument("--housenum", help="`housenum read DIR --json` output on the same folder")
    ap.add_argument("--detector-boxes", action="store_true")
    args = ap.parse_args()
    from rapidocr import RapidOCR

    engine = RapidOCR(params={"Global.log_level": "error", "Det.limit_type": "max",
                              "Det.limit_side_len": 960})
    labels = {}
    with open(os.path.join(args.dir, "labels.tsv")) as f:
        for line in f:
            name, digits, _ = line.rstrip("\n").split("\t")
            labels[name] = digits
    right = {"rapidocr": 0}
    if args.housenum:
        right["housenum"] = 0
        with open(args.housenum) as f:
            ours = {os.path.basename(v["path"]): v for v in map(json.loads, f)}
    if args.detector_boxes:
        right["ppocr_detector+housenum_reader"] = 0
        import onnxruntime as ort
        import read as R

        model = os.path.join(HERE, "..", "onnx", "housenum.onnx")
        sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
        meta = sess.get_modelmeta().custom_metadata_map
        cal = json.loads(meta["housenum.calibration"])
        stretch = float(np.float32(meta.get("housenum.stretch", "1")))

        def read_box(img, box, views):
            h, w = img.shape[:2]
            strips = [R.to_strip(img[y0:y1, x0:x1], stretch)
                      for x0, y0, x1, y1 in R.framings(box, views, w, h)]
            lps = [lp for x in strips for lp in R.member_log_probs(sess, x)]
            readings = [R.greedy_decode_spans(lp) for lp in lps]
            best, log_p = R.combine(lps, readings)
            return readings[best][0], R.calibrate(log_p, cal)
    start = time.perf_counter()
    for name, truth in sorted(labels.items()):
        path = os.path.join(args.dir, name)
        out = engine(path, use_det=True, use_cls=True, use_rec=True)
        lines = ["".join(c for c in t if c.isdigit()) for t in (getattr(out, "txts", None) or ())]
        right["rapidocr"] += (max(lines, key=len) if lines else "") == truth
        if args.housenum:
            right["housenum"] += ours[name]["digits"] == truth
        if args.detector_boxes:
            det = engine(path, use_det=True, use_cls=False, use_rec=False)
            img = R.load(path)
            cands = []
            for b in det.boxes if det.boxes is not None else []:
                box = tuple(np.float32(v) for v in (b[:, 0].min(), b[:, 1].min(),
                                                    b[:, 0].max(), b[:, 1].max()))
                digits, conf = read_box(img, box, 1)
                if digits:
                    cands.append((conf, box))
            digits = read_box(img, max(cands)[1], 7)[0] if cands else ""
            right["ppocr_detector+housenum_reader"] += digits == truth
    n = len(labels)
    result = {k: round(100 * v / n, 2) for k, v in right.items()}
    result.update(photos=n, seconds_per_photo=round((time.perf_counter() - start) / n, 3))
    print(json.dumps(result))


if __name__ == "__main__":
    main()
