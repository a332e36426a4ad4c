#!/usr/bin/env python3
"""onnxruntime's engine alone on the strips `housenum strips` wrote: `session.run` and nothing
else (the strips are loaded into numpy arrays before the clock starts), the reference side of
`benches/engine.sh`. One timed pass over every strip per mode; prints one JSON line with strips
per second for each mode:

- `one`: one strip per `session.run`, the session using every core (intra-op threads);
- `batched`: strips of one width stacked, up to --batch per `session.run`;
- `parallel`: one strip per `session.run` from one Python thread per core, each session on one
  intra-op thread (onnxruntime releases the GIL inside `run`), the way housenum spreads strips.

`--per-op` instead prints onnxruntime's own profile, one strip at a time on one thread: the
time per strip and each operator's share (as `housenum bench-strips --per-op` does for tract).

Usage: python3 benches/ort_engine.py MODEL.onnx STRIPS_DIR [--modes one,batched,parallel]
       [--per-op]
"""
import argparse
import collections
import json
import os
import threading
import time

import numpy as np
import onnxruntime as ort


def load(dir_):
    with open(os.path.join(dir_, "strips.json")) as f:
        index = json.load(f)
    groups = {}
    for g in index["groups"]:
        a = np.fromfile(os.path.join(dir_, g["file"]), "<f4")
        groups[g["width"]] = a.reshape(g["count"], 3, 32, g["width"])
    return groups, len(index["strips"])


def session(model, threads):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = threads
    opts.inter_op_num_threads = 1
    opts.graph_optimization_level = ort.GraphOptimizationLevel.ORT_ENABLE_ALL
    return ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])


def one(sess, groups):
    for a in groups.values():
        for i in range(a.shape[0]):
            sess.run(["log_probs"], {"strip": a[i : i + 1]})


def batched(sess, groups, batch):
    for a in groups.values():
        for i in range(0, a.shape[0], batch):
            sess.run(["log_probs"], {"strip": a[i : i + batch]})


def parallel(sessions, groups):
    items = [(a, i) for a in groups.values() for i in range(a.shape[0])]

    def work(k):
        s = sessions[k]
        for a, i in items[k :: len(sessions)]:
            s.run(["log_probs"], {"strip": a[i : i + 1]})

    threads = [threading.Thread(target=work, args=(k,)) for k in range(len(sessions))]
    for t in threads:
        t.start()
    for t in threads:
        t.join()


def per_op(model, groups, n):
    opts = ort.SessionOptions()
    opts.intra_op_num_threads = 1
    opts.enable_profiling = True
    sess = ort.InferenceSession(model, opts, providers=["CPUExecutionProvider"])
    one(sess, groups)
    path = sess.end_profiling()
    with open(path) as f:
        events = json.load(f)
    os.remove(path)
    times = collections.Counter()
    for e in events:
        if e.get("cat") == "Node" and e["name"].endswith("_kernel_time"):
            times[e["args"]["op_name"]] += e["dur"]
    total = sum(times.values())
    print(f"{n} strips, one thread: {total / 1000 / n:.3f} ms per strip (operators only)")
    for op, t in times.most_common():
        print(f"{op:<24} {100 * t / total:5.1f} %")


def main():
    p = argparse.ArgumentParser()
    p.add_argument("model")
    p.add_argument("dir")
    p.add_argument("--modes", default="one,batched,parallel")
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--threads", type=int, default=os.cpu_count())
    p.add_argument("--per-op", action="store_true")
    args = p.parse_args()
    groups, n = load(args.dir)
    if args.per_op:
        per_op(args.model, groups, n)
        return
    full = session(args.model, args.threads)
    singles = [session(args.model, 1) for _ in range(args.threads)]
    runs = {
        "one": lambda: one(full, groups),
        "batched": lambda: batched(full, groups, args.batch),
        "parallel": lambda: parallel(singles, groups),
    }
    out = {"strips": n}
    for mode in args.modes.split(","):
        runs[mode]()  # warm-up: first runs of each shape allocate
        start = time.perf_counter()
        runs[mode]()
        out[mode] = n / (time.perf_counter() - start)
    out["best"] = max(out[m] for m in args.modes.split(","))
    print(json.dumps(out))


if __name__ == "__main__":
    main()
