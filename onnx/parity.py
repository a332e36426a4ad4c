#!/usr/bin/env python3
"""Check onnxruntime against stored log-probabilities (written by tests/parity.rs from tract).

Usage: python3 onnx/parity.py MODEL.onnx CASES.json TOLERANCE
Each case: {"width": W, "input": [3*32*W floats], "steps": T, "log_probs": [M*T*11 floats]}, M the
model's members (1, or an ensemble's; its output is then [M, T, 1, 11] instead of [T, 1, 11]).
"""
import json
import sys

import numpy as np
import onnxruntime as ort


def main():
    model, cases, tol = sys.argv[1], sys.argv[2], float(sys.argv[3])
    sess = ort.InferenceSession(model, providers=["CPUExecutionProvider"])
    worst, n = 0.0, 0
    for c in json.load(open(cases)):
        x = np.asarray(c["input"], dtype=np.float32).reshape(1, 3, 32, c["width"])
        (lp,) = sess.run(["log_probs"], {"strip": x})
        want = np.asarray(c["log_probs"], dtype=np.float32).reshape(-1, c["steps"], 1, 11)
        if lp.ndim == 3:
            want = want[0]
        assert lp.shape == want.shape, (lp.shape, want.shape)
        d = float(np.abs(lp - want).max())
        worst = max(worst, d)
        assert d < tol, f"width {c['width']}: max |diff| {d} >= {tol}"
        assert (lp.argmax(-1) == want.argmax(-1)).all(), f"width {c['width']}: argmax differs"
        n += 1
    print(f"onnxruntime vs tract: {n} cases, max |diff log p| = {worst:.2e} (tolerance {tol})")


if __name__ == "__main__":
    main()
