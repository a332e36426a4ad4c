#!/usr/bin/env python3
"""Fit the look's verifier (src/read/verify.rs): which of a photo's readings answers when the
detector's second look has run.

  data/verifier_recipe.sh            # frames the photos, lists the candidates, runs this

  data/fit_verifier.py FRAMED_DIR CANDIDATES_JSONL [FRAMED_DIR CANDIDATES_JSONL ...]
  data/fit_verifier.py --check 0.01 CANDIDATES_JSONL...   # read.py scores as `read` does

FRAMED_DIR is what `housenum eval --save-framed` wrote (labels.tsv: name, digits, box) and
CANDIDATES_JSONL is `housenum read FRAMED_DIR --candidates --json` of it. Photos where `read`'s
second look runs and where some option reads right give one example each: a softmax over
the photo's options (the first answer, and each candidate read as a number) whose target is
the options that read right; photos holding no number count --none-weight each. The features
and the trigger are onnx/read.py's, which computes them as verify.rs and reader.rs do (float32).
The fit is deterministic: Adam from fixed starting weights, L2 on every weight.
Prints the weights as verify.rs's WEIGHTS, and the accuracy on the examples' photos before
(the first answer) and after.
"""

import argparse, json, os, sys
import numpy as np

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'onnx'))
from read import (answer_features, candidate_features, shared_features,  # noqa: E402
                  looks_again, verify_scores, SECOND_LOOK_BELOW,  # verify.rs's features, the
                  SECOND_LOOK_MAX_AREA, NO_NUMBER_BELOW)  # trigger, what `read` calls no number

NA, NC, NX = 5, 11, 5  # answer, candidate and shared features (verify.rs)


def example(p, truth):
    """One photo of `read --candidates --json` (`p`) whose number is `truth` ('' for none) as
    an example; `looked`: whether `read`'s default second look runs on it (whatever the trigger
    of the binary that listed it)."""
    first = p['first']
    looked = looks_again(first['region'], first['confidence'], p['size'][0], p['size'][1],
                         SECOND_LOOK_BELOW, SECOND_LOOK_MAX_AREA, True)
    options = [(c['box'], c['score'], c['digits'], c['confidence'])
               for c in p['candidates'] if c['digits']]
    shared = shared_features([(first['region'], first['digits'], first['confidence'])] +
                             [(o[0], o[2], o[3]) for o in options])
    return {
        'args': (options, first['region'], first['digits'], first['confidence'], p['size']),
        'looked': looked, 'truth': truth, 'first': first['digits'],
        'A': np.array(answer_features(first['region'], first['digits'], first['confidence'],
                                      p['size']), dtype=np.float64),
        'C': np.array(candidate_features(options, first['region'], first['digits'], p['size']),
                      dtype=np.float64).reshape(-1, NC),
        'X': np.array(shared, dtype=np.float64),
        'ya': float(first['digits'] == truth),
        'yc': np.array([float(o[2] == truth) for o in options]),
        'cands': [o[2] for o in options],
        'first_conf': first['confidence'],
        'cand_confs': [o[3] for o in options],
    }


def examples(framed_dir, jsonl):
    truth = {}
    with open(os.path.join(framed_dir, 'labels.tsv')) as f:
        for line in f:
            parts = line.rstrip('\n').split('\t')
            truth[parts[0]] = parts[1] if len(parts) > 1 else ''
    out = []
    with open(jsonl) as f:
        for line in f:
            p = json.loads(line)
            if 'error' in p:
                continue
            out.append(example(p, truth[os.path.basename(p['path'])]))
    return out


def design(e):
    """One row per option of `e` (the first answer, then the candidates): [1 for the first
    answer, its NA features (0 for candidates), the NC candidate features (0 for the answer),
    the NX shared features]."""
    x = np.zeros((1 + len(e['C']), 1 + NA + NC + NX))
    x[0, 0] = 1.0
    x[0, 1:1 + NA] = e['A']
    x[1:, 1 + NA:1 + NA + NC] = e['C']
    x[:, 1 + NA + NC:] = e['X']
    return x


def fit(exs, l2, iters, lr, none_weight=1.0):
    """Softmax regression over each usable example's options, full batch; examples of photos
    holding no number count `none_weight` each. Returns verify.rs's (answer, candidate, shared)
    weights (the first answer's indicator folded into the answer's bias) and how many examples
    there were."""
    usable = [e for e in exs if e['looked'] and len(e['C']) and e['ya'] + e['yc'].sum() > 0]
    rows = [design(e) for e in usable]
    x = np.vstack(rows)
    y = np.concatenate([np.concatenate([[e['ya']], e['yc']]) for e in usable])
    weight = np.array([none_weight if e['truth'] == '' else 1.0 for e in usable])
    group = np.repeat(np.arange(len(usable)), [len(r) for r in rows])
    starts = np.searchsorted(group, np.arange(len(usable)))
    w = np.zeros(x.shape[1])
    w[1] = w[1 + NA] = w[2 + NA] = 1.0  # start from "confidence and score decide"
    m, v = np.zeros_like(w), np.zeros_like(w)
    for t in range(1, iters + 1):
        s = x @ w
        p = np.exp(s - np.maximum.reduceat(s, starts)[group])
        p /= np.add.reduceat(p, starts)[group]
        q = p * y
        q /= np.add.reduceat(q, starts)[group]
        g = x.T @ ((p - q) * weight[group] / weight.sum()) + l2 * w
        m = 0.9 * m + 0.1 * g
        v = 0.999 * v + 0.001 * g * g
        w -= lr * (m / (1 - 0.9 ** t)) / (np.sqrt(v / (1 - 0.999 ** t)) + 1e-8)
    answer = w[1:1 + NA].copy()
    answer[NA - 1] += w[0]
    r = lambda a: [float(z) for z in np.round(a, 4).astype(np.float32)]
    return (r(answer), r(w[1 + NA:1 + NA + NC]), r(w[1 + NA + NC:])), len(usable)


def chosen(weights, e):
    """What `read` answers under `weights` = (answer, candidate, shared): verify::choose (the
    first answer unless an option scores higher, first among equals), then no number when that
    answer is less than NO_NUMBER_BELOW sure."""
    answer, conf = e['first'], e['first_conf']
    if e['looked'] and len(e['C']):
        best, scores = verify_scores(*e['args'], weights=weights)
        for k, s in enumerate(scores):
            if s > best:
                best, answer, conf = s, e['cands'][k], e['cand_confs'][k]
    return '' if np.float32(conf) < np.float32(NO_NUMBER_BELOW) else answer


def check(jsonl, tolerance):
    """Recompute every `verifier` score of a `read --candidates --json` listing with
    onnx/read.py's features and weights; whether the largest difference is within `tolerance`.
    The listing rounds boxes to 0.1 px, which moves a box's log-size features by up to 0.05 / its
    side: candidates with a side under 20 px are scored but not compared."""
    worst = 0.0
    with open(jsonl) as f:
        for line in f:
            p = json.loads(line)
            if 'error' in p:
                continue
            first = p['first']
            numbers = [c for c in p['candidates'] if c['digits']]
            options = [(c['box'], c['score'], c['digits'], c['confidence']) for c in numbers]
            a, scores = verify_scores(options, first['region'], first['digits'],
                                      first['confidence'], p['size'])
            worst = max(worst, abs(float(a) - first['verifier']))
            for c, s in zip(numbers, scores):
                l, t, r, b = c['box']
                if min(r - l, b - t) >= 20:
                    worst = max(worst, abs(float(s) - c['verifier']))
            if any(c['verifier'] is not None for c in p['candidates'] if not c['digits']):
                raise SystemExit(f"{p['path']}: a candidate read as no number has a score")
    print(f'{jsonl}: largest difference {worst:.2e} (tolerance {tolerance})')
    return worst <= tolerance


def main():
    ap = argparse.ArgumentParser(description=__doc__.split('\n\n')[0])
    ap.add_argument('pairs', nargs='+', help='FRAMED_DIR CANDIDATES_JSONL, repeated; with '
                    '--check, listings only')
    ap.add_argument('--check', type=float, metavar='TOLERANCE',
                    help="instead of fitting, check that read.py's verifier scores every listed "
                         "option as the listing says, within TOLERANCE")
    ap.add_argument('--l2', type=float, default=1e-3)
    ap.add_argument('--iters', type=int, default=600)
    ap.add_argument('--lr', type=float, default=0.03)
    ap.add_argument('--none-weight', type=float, default=0.5,
                    help='weight of photos holding no number (chosen on the development split)')
    a = ap.parse_args()
    if a.check is not None:
        sys.exit(0 if all([check(j, a.check) for j in a.pairs]) else 1)
    if len(a.pairs) % 2:
        ap.error('give FRAMED_DIR CANDIDATES_JSONL pairs')
    sets = [(a.pairs[i], examples(a.pairs[i], a.pairs[i + 1])) for i in range(0, len(a.pairs), 2)]
    w, n = fit([e for _, es in sets for e in es], a.l2, a.iters, a.lr, a.none_weight)
    print(f'// {n} photos with a right option; l2 {a.l2}, {a.iters} Adam steps at {a.lr}, '
          f'no-number photos weighted {a.none_weight}')
    fmt = lambda ws: ', '.join(f'{x:.4f}' for x in ws)
    print('pub const WEIGHTS: Weights = Weights {')
    print(f'    answer: [{fmt(w[0])}],')
    print(f'    candidate: [{fmt(w[1])}],')
    print(f'    shared: [{fmt(w[2])}],')
    print('};')
    for name, es in sets:
        first = 100 * sum(e['first'] == e['truth'] for e in es) / len(es)
        after = 100 * sum(chosen(w, e) == e['truth'] for e in es) / len(es)
        print(f'// {name}: {len(es)} photos, first answer {first:.2f} %, verifier {after:.2f} %')


if __name__ == '__main__':
    main()
