#!/usr/bin/env python3
"""The onnxruntime reference pipeline for `benches/compare.sh`: decode + preprocess (onnx/read.py's
numpy recipe, full-image protocol) + infer + greedy decode, one image at a time, like
`housenum eval --protocol full`. Prints images/second.

Usage: python3 benches/ort_eval.py MODEL.onnx IMG...
"""
import os
import sys
import time

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "onnx"))
import numpy as np  # noqa: E402
import onnxruntime as ort  # noqa: E402
from read import greedy_decode, preprocess  # noqa: E402


def main():
    model, images = sys.argv[1], sys.argv[2:]
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 2
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    stretch = float(np.float32(meta.get("housenum.stretch", "1")))
    start = time.perf_counter()
    for path in images:
        (lp,) = sess.run(["log_probs"], {"strip": preprocess(path, stretch)})
        greedy_decode(lp[:, 0, :])
    secs = time.perf_counter() - start
    print(f"{len(images) / secs:.1f}")


if __name__ == "__main__":
    main()
