#!/usr/bin/env python3
"""Read house numbers with onnx/housenum.onnx under onnxruntime, exactly as `housenum read` does.

Usage: python3 onnx/read.py [--model onnx/housenum.onnx] [--localiser onnx/localiser.onnx]
       [--protocol locate|search|full] [--views 1-7] [--early-exit P|off]
       [--second-look P|off] [--look-with detector|tiles] [--look-area SHARE]
       [--detector onnx/detector.onnx] [--margin on|off] [--no-number-below P|off] IMG...
Prints IMG<TAB>DIGITS<TAB>CONFIDENCE per image (same format as `housenum read`).
An ensemble (output log_probs [M, T, N, 11], `housenum export` with several checkpoints) is read
like more framings: every member's reading is scored under every member (see `member_log_probs`).
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
# as (width, height) fractions; `choose` picks the answer.
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


def target_width(w, h, stretch):
    """Strip width of a w x h region: round(w * 32 * stretch / h), clamped (stretch: the model's
    `housenum.stretch` metadata, an f32)."""
    return min(max(int(math.floor(w * HEIGHT * stretch / h + 0.5)), 1), MAX_WIDTH)


def to_strip(img, stretch=1.0):
    """[h, w, 3] image (or crop) -> normalised [1, 3, 32, W] float32 strip."""
    h, w = img.shape[:2]
    out_w = target_width(w, h, stretch)
    return padded_strip(resize_normalise(img, HEIGHT, out_w))  # [3, 32, out_w]


def padded_strip(strip):
    """[3, 32, w] normalised values -> [1, 3, 32, max(w, 32)] float32, centred in zeros."""
    w = strip.shape[2]
    if w < MIN_WIDTH:
        left = (MIN_WIDTH - w) // 2
        padded = np.zeros((3, HEIGHT, MIN_WIDTH))
        padded[:, :, left:left + w] = strip
        strip = padded
    return strip[None].astype(np.float32)




def resize_normalise(img, out_h, out_w):
    """[h, w, 3] image -> [3, out_h, out_w] resized (triangle filter) and normalised, float64."""
    h, w = img.shape[:2]
    wy, wx = triangle_weights(h, out_h), triangle_weights(w, out_w)
    x = np.stack([wy @ img[:, :, c] @ wx.T for c in range(3)])
    x = x.astype(np.float32).astype(np.float64)
    return (x - x.mean()) / max(x.std(), 0.01)


def expand_region(rect, fx, fy, w, h):
    """src/preprocess.rs expand_region: grow (l, t, r, b) around its centre in f32, round
    outwards, clamp to the image, never empty."""
    l, t, r, b = (np.float32(v) for v in rect)
    two = np.float32(2.0)
    cx, cy = (l + r) / two, (t + b) / two
    hw, hh = (r - l) * np.float32(fx) / two, (b - t) * np.float32(fy) / two
    clamp = lambda v, hi: min(int(max(v, np.float32(0.0))), hi)  # noqa: E731
    x0 = clamp(np.floor(cx - hw), w - 1)
    y0 = clamp(np.floor(cy - hh), h - 1)
    x1 = max(clamp(np.ceil(cx + hw), w), x0 + 1)
    y1 = max(clamp(np.ceil(cy + hh), h), y0 + 1)
    return (x0, y0, x1, y1)


def profile_span(p, threshold):
    """src/read/locate.rs profile_span, in f32: the run of bands >= threshold with the largest
    sum (first on ties), its edges placed inside their bands by the coverage of the two bands at
    each edge; the highest band when none reaches the threshold. Returns (lo, hi) fractions."""
    f = np.float32
    bins, best, j = len(p), None, 0
    while j < bins:
        if p[j] < threshold:
            j += 1
            continue
        start, mass = j, f(0.0)
        while j < bins and p[j] >= threshold:
            mass = f(mass + p[j])
            j += 1
        if best is None or mass > best[2]:
            best = (start, j - 1, mass)
    if best is None:
        top = 0
        for i in range(bins):
            if p[i] > p[top]:
                top = i
        return f(top) / f(bins), f(top + 1) / f(bins)
    s, e, _ = best
    at = lambda i: p[i] if 0 <= i < bins else f(0.0)  # noqa: E731
    lo = min(max(f(f(f(f(s) + f(1.0)) - at(s)) - at(s - 1)) / f(bins), f(0.0)), f(1.0))
    hi = min(max(f(f(f(e) + at(e)) + at(e + 1)) / f(bins), f(0.0)), f(1.0))
    return lo, max(hi, lo)


def locate_in(img, loc_sess, region):
    """The localiser's box within region (x0, y0, x1, y1) of img, in image pixels (f32), as
    (l, t, r, b), not yet grown. A box head gives the box; a profile localiser
    (`housenum.localiser.bins` = BXxBY) gives column and row profiles, decoded as
    src/read/locate.rs does at `housenum.localiser.threshold` (1/2 when absent)."""
    meta = loc_sess.get_modelmeta().custom_metadata_map
    lh, lw = (int(v) for v in meta["housenum.localiser"].split("x"))
    rx0, ry0, rx1, ry1 = region
    x = resize_normalise(img[ry0:ry1, rx0:rx1], lh, lw)[None].astype(np.float32)
    f = np.float32
    ox, oy, fw, fh = f(rx0), f(ry0), f(rx1 - rx0), f(ry1 - ry0)
    x0, y0, x1, y1 = localiser_box(loc_sess, x)
    return (f(ox + f(x0 * fw)), f(oy + f(y0 * fh)), f(ox + f(x1 * fw)), f(oy + f(y1 * fh)))


def localiser_box(loc_sess, x):
    """src/read/locate.rs decode: the box (x0, y0, x1, y1), fractions of the input `x`
    ([1, 3, H, W] float32): a box head's output, or (`housenum.localiser.bins` = BXxBY) the
    column and row profiles decoded at `housenum.localiser.threshold` (1/2 when absent)."""
    meta = loc_sess.get_modelmeta().custom_metadata_map
    if "housenum.localiser.bins" in meta:
        bx = int(meta["housenum.localiser.bins"].split("x")[0])
        p = loc_sess.run(["profile"], {"image": x})[0][0]
        th = np.float32(meta.get("housenum.localiser.threshold", "0.5"))
        (x0, x1), (y0, y1) = profile_span(p[:bx], th), profile_span(p[bx:], th)
        return x0, y0, x1, y1
    b = loc_sess.run(["box"], {"image": x})[0][0]
    return min(b[0], b[2]), min(b[1], b[3]), max(b[0], b[2]), max(b[1], b[3])


# src/read/locate.rs REFINE_SKIP: a context covering this share of both sides keeps the first box.
REFINE_SKIP = np.float32(0.9)


def locate_within(img, loc_sess, region):
    """src/read/locate.rs locate_within: the localiser's box found in `region` of the photo;
    with `housenum.localiser.refine` = AxB (coarse to fine), found again within that box grown
    A x B in the photo, unless that context covers REFINE_SKIP of both sides of the photo."""
    meta = loc_sess.get_modelmeta().custom_metadata_map
    first = locate_in(img, loc_sess, region)
    if "housenum.localiser.refine" not in meta:
        return first
    return refined(img, loc_sess, first, meta)


def refined(img, loc_sess, first, meta):
    """src/read/locate.rs locate_refined: the box `first` found again within it grown A x B
    (`housenum.localiser.refine`), unless that context covers REFINE_SKIP of both sides."""
    h, w = img.shape[:2]
    cx, cy = (float(np.float32(v)) for v in meta["housenum.localiser.refine"].split("x"))
    ctx = expand_region(first, cx, cy, w, h)
    if (np.float32(ctx[2] - ctx[0]) >= REFINE_SKIP * np.float32(w)
            and np.float32(ctx[3] - ctx[1]) >= REFINE_SKIP * np.float32(h)):
        return first
    return locate_in(img, loc_sess, ctx)


# src/read/locate.rs MARGIN: where the localiser's first box spans FILLS_WIDTH of the photo's
# width, it looks again at the photo framed in a margin of these fractions of its width and height
# on each side, filled with its border's mean colour.
MARGIN = (0.125, 0.05)
FILLS_WIDTH = np.float32(0.35)


def fills_width(box, w):
    """src/read/locate.rs fills_width (float32)."""
    return np.float32(box[2] - box[0]) >= FILLS_WIDTH * np.float32(w)


def border_mean(img):
    """src/read/strip.rs border_mean: the mean colour of the first and last rows and columns."""
    h, w = img.shape[:2]
    ring = np.zeros((h, w), dtype=bool)
    ring[0, :] = ring[-1, :] = ring[:, 0] = ring[:, -1] = True
    return np.float32(img[ring].mean(axis=0))


def locate_in_margin(img, loc_sess, margin):
    """src/read/locate.rs locate_in_margin: the localiser's box in the photo framed in
    `margin` (fractions of its width and height on each side), clamped to the photo. The canvas
    is resized as PIL would resize it, without being made: its margin adds fill x the weights
    that fall on it."""
    meta = loc_sess.get_modelmeta().custom_metadata_map
    lh, lw = (int(v) for v in meta["housenum.localiser"].split("x"))
    f = np.float32
    h, w = img.shape[:2]
    # f32 products rounded half away from zero, as Rust's f32::round.
    mx = int(math.floor(float(f(w) * f(margin[0])) + 0.5))
    my = int(math.floor(float(f(h) * f(margin[1])) + 0.5))
    fill = border_mean(img).astype(np.float64)
    wy, wx = triangle_weights(h + 2 * my, lh), triangle_weights(w + 2 * mx, lw)
    wyi, wxi = wy[:, my:my + h], wx[:, mx:mx + w]
    rest = np.outer(wy.sum(1), wx.sum(1)) - np.outer(wyi.sum(1), wxi.sum(1))
    x = np.stack([wyi @ img[:, :, c] @ wxi.T + fill[c] * rest for c in range(3)])
    x = x.astype(np.float32).astype(np.float64)
    x = ((x - x.mean()) / max(x.std(), 0.01))[None].astype(np.float32)
    x0, y0, x1, y1 = localiser_box(loc_sess, x)
    cw, ch = f(w + 2 * mx), f(h + 2 * my)
    l = min(max(f(f(x0 * cw) - f(mx)), f(0.0)), f(w))
    t = min(max(f(f(y0 * ch) - f(my)), f(0.0)), f(h))
    r = min(max(f(f(x1 * cw) - f(mx)), l), f(w))
    b = min(max(f(f(y1 * ch) - f(my)), t), f(h))
    return (l, t, r, b)


def locate_box(img, loc_sess, margin=None):
    """The localiser's box in the whole photo (src/read/locate.rs locate_with): one pass on the
    photo; when its box spans FILLS_WIDTH of the photo's width, the pass on the photo framed in
    `margin` (None: never) gives the box instead; then, coarse to fine, again within that box grown as
    `housenum.localiser.refine` says."""
    h, w = img.shape[:2]
    if margin is None:
        return locate_within(img, loc_sess, (0, 0, w, h))
    first = locate_in(img, loc_sess, (0, 0, w, h))
    if fills_width(first, w):
        first = locate_in_margin(img, loc_sess, margin)
    meta = loc_sess.get_modelmeta().custom_metadata_map
    if "housenum.localiser.refine" not in meta:
        return first
    return refined(img, loc_sess, first, meta)


def tiles(w, h):
    """src/read/locate.rs Locator::tiles: 3 x 3 windows of half the photo, at quarter steps."""
    tw, th = max(w // 2, 1), max(h // 2, 1)
    return [(i * w // 4, j * h // 4, min(i * w // 4 + tw, w), min(j * h // 4 + th, h))
            for j in range(3) for i in range(3)]


# src/read/reader.rs SECOND_LOOK_BELOW, SECOND_LOOK_MAX_AREA, SECOND_LOOK_VOTES,
# LOOK_UNSURE_BELOW, LOOK_UNSURE_PIXELS, LOOK_ALWAYS_PIXELS.
SECOND_LOOK_BELOW = 0.98
SECOND_LOOK_MAX_AREA = 0.04
SECOND_LOOK_VOTES = 2
LOOK_UNSURE_BELOW = 0.7
LOOK_UNSURE_PIXELS = 24_149
LOOK_ALWAYS_PIXELS = 250_000


# src/read/framings.rs EARLY_EXIT: the other framings are read only when the first one's
# calibrated confidence is below it.
EARLY_EXIT = 0.95

# src/views.rs FRAMINGS: (grow x, grow y, shift by a fraction of the box width).
FRAMINGS = [(1.3, 1.3, 0.0), (1.15, 1.15, 0.0), (1.5, 1.3, 0.0), (1.3, 1.5, 0.0),
            (1.5, 1.5, 0.0), (1.3, 1.3, -0.08), (1.3, 1.3, 0.08)]


def framings(box, views, w, h):
    """src/views.rs framings: the first `views` FRAMINGS of the box, shifted and grown in f32."""
    l, t, r, b = (np.float32(v) for v in box)
    bw = r - l
    out = []
    for fx, fy, shift in FRAMINGS[:max(1, min(views, len(FRAMINGS)))]:
        dx = np.float32(shift) * bw
        out.append(expand_region((l + dx, t, r + dx, b), fx, fy, w, h))
    return out


def combine(log_probs, readings):
    """src/views.rs combine: each distinct non-empty reading (the empty one if all are empty) is
    scored by the sum over framings of its log-probability; returns (index of the first framing
    that read the best, mean log-probability)."""
    if len(readings) == 1:
        return 0, readings[0][1]
    cands = []
    for i, r in enumerate(readings):
        if r[0] and r[0] not in [c[1] for c in cands]:
            cands.append((i, r[0]))
    if not cands:
        cands = [(0, "")]
    best = None
    for i, digits in cands:
        total = 0.0
        for lp in log_probs:
            total += sequence_log_prob(lp, digits)
        if best is None or total > best[1]:
            best = (i, total)
    return best[0], best[1] / len(log_probs)


def member_log_probs(sess, strip):
    """Each member's [T, 11] log-probabilities of one strip: one for a single model
    (log_probs [T, 1, 11]), M for an ensemble (log_probs [M, T, 1, 11])."""
    lp = sess.run(["log_probs"], {"strip": strip})[0]
    return [lp[:, 0, :]] if lp.ndim == 3 else [m[:, 0, :] for m in lp]


def combine_members(lps):
    """One strip's reading from its members' log-probabilities (src/views.rs combine_into):
    (digits, mean log-probability, spans) of the combined best; a single model's own reading."""
    readings = [greedy_decode_spans(lp) for lp in lps]
    best, log_p = combine(lps, readings)
    return readings[best][0], log_p, readings[best][2]


def read_box(sess, img, box, views, stretch, cal, early_exit):
    """src/read/reader.rs read_best under `locate` for one box: the first framing alone, and
    where its calibrated confidence is below the early exit, every member's reading of every
    framing, framing-major. Returns (region read, digits, raw log-probability)."""
    h, w = img.shape[:2]
    regs = framings(box, views, w, h)
    strips = [to_strip(img[y0:y1, x0:x1], stretch) for x0, y0, x1, y1 in regs]
    per_strip = [member_log_probs(sess, strips[0])]
    members = len(per_strip[0])
    lps = list(per_strip[0])
    readings = [greedy_decode_spans(lp) for lp in lps]
    best, log_p = combine(lps, readings)
    if len(strips) > 1 and not (early_exit is not None
                                and np.float32(calibrate(log_p, cal)) >= np.float32(early_exit)):
        per_strip += [member_log_probs(sess, x) for x in strips[1:]]
        lps = [lp for ms in per_strip for lp in ms]
        readings = [greedy_decode_spans(lp) for lp in lps]
        best, log_p = combine(lps, readings)
    return regs[best // members], readings[best][0], log_p


def looks_again(region, confidence, w, h, below, look_area, detector):
    """src/read/reader.rs wants_second_look: an answer (its region, calibrated confidence) in a
    w x h photo looks again when its confidence is below `below` (None: never) and its region
    covers less than `look_area` of the photo, or, with the detector, when its confidence is
    below LOOK_UNSURE_BELOW (or `below`, if lower) in a photo of at least LOOK_UNSURE_PIXELS,
    or when the photo has at least LOOK_ALWAYS_PIXELS."""
    if below is None:
        return False
    unsure = (np.float32(confidence) < np.float32(below)
              and (region[2] - region[0]) * (region[3] - region[1]) < look_area * w * h)
    loose = (np.float32(confidence) < np.float32(min(below, LOOK_UNSURE_BELOW))
             and w * h >= LOOK_UNSURE_PIXELS)
    return unsure or (detector and (loose or w * h >= LOOK_ALWAYS_PIXELS))


def second_look(sess, loc_sess, img, answer, views, stretch, cal, early_exit):
    """src/read/reader.rs second_look: the localiser in every tile; the first framing of each
    tile's box read; the tiles whose box is centred outside the answer's region vote by reading;
    the reading most tiles gave (at least SECOND_LOOK_VOTES; ties: the most confident, then the
    first) has its most confident tile's box read like any box, and answers if more confident."""
    h, w = img.shape[:2]
    region, _, log_p = answer
    conf = np.float32(calibrate(log_p, cal))
    f = np.float32
    votes = []  # [digits, tiles, best tile, its confidence]
    boxes = [locate_within(img, loc_sess, t) for t in tiles(w, h)]
    for k, box in enumerate(boxes):
        _, digits, lp = read_box(sess, img, box, 1, stretch, cal, early_exit)
        c = np.float32(calibrate(lp, cal))
        l, t, r, b = (f(v) for v in box)
        cx, cy = (l + r) / f(2), (t + b) / f(2)
        inside = (f(region[0]) <= cx < f(region[2])) and (f(region[1]) <= cy < f(region[3]))
        if not digits or inside:
            continue
        for v in votes:
            if v[0] == digits:
                v[1] += 1
                if c > v[3]:
                    v[2], v[3] = k, c
                break
        else:
            votes.append([digits, 1, k, c])
    best = None
    for v in votes:
        if v[1] >= SECOND_LOOK_VOTES and (best is None or (v[1], v[3]) > (best[1], best[3])):
            best = v
    if best is None or not best[3] > conf:
        return answer
    again = read_box(sess, img, boxes[best[2]], views, stretch, cal, early_exit)
    return again if np.float32(calibrate(again[2], cal)) > conf else answer


# src/read/detect.rs: the detector's cells, padding, tiles, pyramid and candidates.
DET_CELL, DET_PAD = 8, 23
DET_MAX_SIDE, DET_MIN_CELLS, DET_MAX_ENLARGE = 1024, 4, 2.0
DET_THRESHOLD, DET_MAX_CANDIDATES = np.float32(0.5), 5


def det_levels(w, h):
    """src/read/detect.rs levels: (cols, rows) of cells per level, largest first (f32)."""
    f = np.float32
    s = min(f(DET_MAX_SIDE) / f(max(w, h, 1)), f(DET_MAX_ENLARGE))
    fw, fh = f(w) * s / f(DET_CELL), f(h) * s / f(DET_CELL)
    out = []
    while True:
        cw, ch = int(math.floor(fw + 0.5)), int(math.floor(fh + 0.5))  # f32::round, positive
        if min(cw, ch) < DET_MIN_CELLS:
            return out
        out.append((cw, ch))
        fw, fh = fw / f(2), fh / f(2)


def det_level(img, cols, rows):
    """src/read/detect.rs level_image: img ([h, w, 3]) resized to cols x rows cells, float32."""
    h, w = img.shape[:2]
    wy, wx = triangle_weights(h, rows * DET_CELL), triangle_weights(w, cols * DET_CELL)
    x = np.stack([wy @ img[:, :, c] @ wx.T for c in range(3)]).astype(np.float32)
    return x.transpose(1, 2, 0)


def det_cells(level, det_sess):
    """Detector::cells: a level (float32 [8 rows, 8 cols, 3]), (v - 0.5) * 4, PAD zeros around
    it, through the graph (whole; tract runs it in tiles that give the same cells): [rows, cols]."""
    x = (level.transpose(2, 0, 1) - np.float32(0.5)) * np.float32(4.0)
    x = np.pad(x, ((0, 0), (DET_PAD, DET_PAD), (DET_PAD, DET_PAD)))[None]
    return det_sess.run(["cells"], {"photo": x})[0][0, 0]


def det_components(p):
    """src/read/detect.rs components: 8-connected cells over the threshold, as
    (col0, row0, col1, row1, best), in order of each group's first cell, row by row."""
    rows, cols = p.shape
    seen = np.zeros(p.shape, dtype=bool)
    out = []
    for r0 in range(rows):
        for c0 in range(cols):
            if seen[r0, c0] or not p[r0, c0] > DET_THRESHOLD:
                continue
            seen[r0, c0] = True
            stack, box, best = [(r0, c0)], [c0, r0, c0, r0], np.float32(0)
            while stack:
                r, c = stack.pop()
                box = [min(box[0], c), min(box[1], r), max(box[2], c), max(box[3], r)]
                best = max(best, p[r, c])
                for rr in range(max(r - 1, 0), min(r + 2, rows)):
                    for cc in range(max(c - 1, 0), min(c + 2, cols)):
                        if not seen[rr, cc] and p[rr, cc] > DET_THRESHOLD:
                            seen[rr, cc] = True
                            stack.append((rr, cc))
            out.append((*box, best))
    return out


def det_candidates(img, det_sess):
    """Detector::candidates: every level's boxes in photo pixels (f32), best first (stable), a box
    dropped when its centre lies inside a better one; at most DET_MAX_CANDIDATES."""
    h, w = img.shape[:2]
    f = np.float32
    found = []
    first = None
    for cols, rows in det_levels(w, h):
        # The largest level from the photo, the smaller ones from it.
        if first is None:
            first = level = det_level(img, cols, rows)
        else:
            level = det_level(first.astype(np.float64), cols, rows)
        sx, sy = f(w) / f(cols), f(h) / f(rows)
        for c0, r0, c1, r1, best in det_components(det_cells(level, det_sess)):
            found.append(((f(c0) * sx, f(r0) * sy, f(c1 + 1) * sx, f(r1 + 1) * sy), f(best)))
    found.sort(key=lambda c: -c[1])
    kept = []
    for bounds, score in found:
        l, t, r, b = bounds
        cx, cy = (l + r) / f(2), (t + b) / f(2)
        if not any(k[0] <= cx <= k[2] and k[1] <= cy <= k[3] for k, _ in kept):
            kept.append((bounds, score))
            if len(kept) == DET_MAX_CANDIDATES:
                break
    return kept


def locate_around(img, loc_sess, bounds):
    """Locator::locate_around: the localiser on the refine context around bounds (2 x 2 for a
    one-pass localiser)."""
    meta = loc_sess.get_modelmeta().custom_metadata_map
    h, w = img.shape[:2]
    cx, cy = (float(np.float32(v)) for v in meta.get("housenum.localiser.refine", "2x2").split("x"))
    return locate_in(img, loc_sess, expand_region(bounds, cx, cy, w, h))


# src/read/verify.rs: the look's verifier.
VERIFY_ANSWER_WEIGHTS = [0.2052, 0.7319, 0.2540, -1.9913, -0.1415]
VERIFY_CANDIDATE_WEIGHTS = [0.3000, 0.3501, -1.0481, -0.2497, 1.1628, -0.3040, 0.4218, -0.0288,
                            0.2767, -0.2765, 0.0707]
VERIFY_SHARED_WEIGHTS = [0.4620, -0.4387, 0.5669, -0.0456, 0.5783]
VERIFY_PHONE_PIXELS = np.float32(2_000_000.0)


def logit(p):
    """src/read/verify.rs logit: ln(p / (1 - p)), p clamped to [1e-4, 1 - 1e-4], in f32."""
    f = np.float32
    p = min(max(f(p), f(1e-4)), f(1.0) - f(1e-4))
    return f(math.log(f(p / (f(1.0) - p))))


def answer_features(region, digits, confidence, size):
    """src/read/verify.rs answer_features: logit of the confidence; no number; ln of the
    region's share of the photo's area (at least 1 px); a phone-size photo; 1."""
    f = np.float32
    pixels = f(size[0]) * f(size[1])
    area = max(f(region[2] - region[0]) * f(region[3] - region[1]), f(1.0))
    return [logit(confidence), f(digits == ""), f(math.log(f(area / pixels))),
            f(pixels >= VERIFY_PHONE_PIXELS), f(1.0)]


def candidate_features(options, region, digits, size):
    """src/read/verify.rs candidate_features of options = [(rect, score, digits, confidence)]
    (the candidates read as numbers, the detector's order) in a photo whose first answer has
    `region` and `digits`."""
    f = np.float32
    root_area = f(math.sqrt(f(size[0]) * f(size[1])))
    top = 0
    for k, o in enumerate(options):
        b = options[top]
        if f(o[3]) * f(o[1]) > f(b[3]) * f(b[1]):
            top = k
    out = []
    for k, (rect, score, d, conf) in enumerate(options):
        l, t, r, b = (f(v) for v in rect)
        w, h = max(r - l, f(1.0)), max(b - t, f(1.0))
        n = f(len(d))
        votes = f(min(sum(1 for j, o in enumerate(options) if j != k and o[2] == d), 3))
        cx, cy = (l + r) / f(2.0), (t + b) / f(2.0)
        inside = f(region[0]) <= cx < f(region[2]) and f(region[1]) <= cy < f(region[3])
        out.append([logit(conf), logit(score), f(len(d) == 1), f(min(n, f(5.0)) / f(5.0)),
                    f(math.log(f(h / root_area))), f(votes / f(3.0)), f(d == digits), f(inside),
                    f(k == top), f(math.log(f(w / f(h * n)))), f(1.0)])
    return out


def shared_features(options):
    """src/read/verify.rs shared_features of options = [(rect, digits, confidence)], the first
    answer (its region) then the candidates read as numbers: for each, logit of its confidence
    less the highest among the options; part (another option reads a longer number holding this
    one's digits, its box holding this box's centre); holds (the converse); the share of options
    reading the same digits; its length less the longest option's."""
    f = np.float32
    lg = [logit(o[2]) for o in options]
    top_lg = max(lg)
    longest = max(len(o[1]) for o in options)
    boxes = [tuple(f(v) for v in o[0]) for o in options]
    centres = [((l + r) / f(2.0), (t + b) / f(2.0)) for l, t, r, b in boxes]

    def holds_centre(j, k):
        l, t, r, b = boxes[j]
        return l <= centres[k][0] < r and t <= centres[k][1] < b

    out = []
    for k, (_, d, _) in enumerate(options):
        part = any(j != k and d and len(o[1]) > len(d) and d in o[1] and holds_centre(j, k)
                   for j, o in enumerate(options))
        holds = any(j != k and o[1] and len(d) > len(o[1]) and o[1] in d and holds_centre(k, j)
                    for j, o in enumerate(options))
        same = sum(1 for o in options if o[1] == d) if d else 0
        out.append([f(lg[k] - top_lg), f(part), f(holds), f(f(same) / f(len(options))),
                    f(len(d) - longest)])
    return out


def verify_scores(options, region, digits, confidence, size, weights=None):
    """src/read/verify.rs scores: the first answer's score and each option's (options =
    [(rect, score, digits, confidence)], the candidates read as numbers) under `weights` =
    (answer, candidate, shared), the shipped ones by default."""
    wa, wc, ws = weights or (VERIFY_ANSWER_WEIGHTS, VERIFY_CANDIDATE_WEIGHTS,
                             VERIFY_SHARED_WEIGHTS)
    shared = shared_features([(region, digits, confidence)] +
                             [(o[0], o[2], o[3]) for o in options])
    first = np.float32(verify_dot(wa, answer_features(region, digits, confidence, size)) +
                       verify_dot(ws, shared[0]))
    cands = [np.float32(verify_dot(wc, c) + verify_dot(ws, x))
             for c, x in zip(candidate_features(options, region, digits, size), shared[1:])]
    return first, cands


def verify_dot(weights, features):
    """src/read/verify.rs dot, summed in f32 in order."""
    total = np.float32(0.0)
    for w, x in zip(weights, features):
        total = np.float32(total + np.float32(w) * np.float32(x))
    return total


def verify_choose(options, region, digits, confidence, size):
    """src/read/verify.rs choose: None for the first answer, else the index of the option with
    the highest score if it beats the answer's (the first among equals)."""
    best, scores = verify_scores(options, region, digits, confidence, size)
    chosen = None
    for k, s in enumerate(scores):
        if s > best:
            best, chosen = s, k
    return chosen


def second_look_detected(sess, loc_sess, det_sess, img, answer, views, stretch, cal, early_exit):
    """src/read/reader.rs second_look_detected: the detector's candidates, each placed by the
    localiser in its surroundings twice, each read like any box; the verifier chooses between
    the answer and the candidates read as numbers."""
    h, w = img.shape[:2]
    region, answer_digits, log_p = answer
    conf = np.float32(calibrate(log_p, cal))
    options, readings = [], []
    for bounds, score in det_candidates(img, det_sess):
        box = locate_around(img, loc_sess, locate_around(img, loc_sess, bounds))
        again = read_box(sess, img, box, views, stretch, cal, early_exit)
        if again[1]:
            options.append((box, np.float32(score), again[1], np.float32(calibrate(again[2], cal))))
            readings.append(again)
    k = verify_choose(options, region, answer_digits, conf, (w, h))
    return answer if k is None else readings[k]


# src/read/reader.rs STACKED_ASPECT, STACKED_MAX.
# src/read/reader.rs NO_NUMBER_BELOW: under locate, a reading less sure is reported as no number
# (with its own confidence).
NO_NUMBER_BELOW = 0.12
STACKED_ASPECT = np.float32(2.5)
STACKED_MAX = 4


def stacked_rows(img, region):
    """src/read/strip.rs stacked_rows: the rows of region holding stacked digits, from the
    row profile of horizontal gradients (f64), in image coordinates."""
    x0, y0, x1, y1 = region
    w, h = x1 - x0, y1 - y0
    if w < 2 or h < 2:
        return []
    sub = img[y0:y1, x0:x1].astype(np.float32).astype(np.float64)
    lum = 0.299 * sub[:, :, 0] + 0.587 * sub[:, :, 1] + 0.114 * sub[:, :, 2]
    raw = np.abs(np.diff(lum, axis=1)).sum(axis=1) / w
    energy = [raw[max(y - 1, 0):min(y + 2, h)].mean() for y in range(h)]
    peak = max(energy)
    if peak <= 0:
        return []
    runs = []
    for y, e in enumerate(energy):
        if e <= 0.25 * peak:
            continue
        if runs and y <= runs[-1][1] + 2:
            runs[-1][1] = y + 1
        else:
            runs.append([y, y + 1])
    least = max(w // 3, 2)
    return [(y0 + a, y0 + b) for a, b in runs if b - a >= least]


def equal_rows(region, n):
    """src/read/strip.rs equal_rows."""
    _, y0, _, y1 = region
    h = y1 - y0
    return [(y0 + i * h // n, y0 + (i + 1) * h // n) for i in range(n)]


def unstacked_strip(img, region, rows, stretch):
    """src/read/strip.rs unstacked_strip: each row (grown by a sixth within region) resized to
    32 px high, side by side, normalised together, padded."""
    x0, ry0, x1, ry1 = region
    parts, total = [], 0
    for a, b in rows:
        grow = (b - a) // 6
        by0, by1 = max(max(a - grow, 0), ry0), max(min(b + grow, ry1), a + 1)
        out_w = target_width(x1 - x0, by1 - by0, stretch)
        if total + out_w > MAX_WIDTH:
            break
        total += out_w
        sub = img[by0:by1, x0:x1]
        wy, wx = triangle_weights(by1 - by0, HEIGHT), triangle_weights(x1 - x0, out_w)
        parts.append(np.stack([wy @ sub[:, :, c] @ wx.T for c in range(3)]).astype(np.float32))
    x = np.concatenate(parts, axis=2).astype(np.float64)
    return padded_strip((x - x.mean()) / max(x.std(), 0.01))


def unstacked(sess, img, answer, stretch, cal):
    """src/read/reader.rs Reader::unstacked: a region at least 2.5 times taller than wide is
    read as stacked digits (the rows its profile shows, then 2-4 equal bands); the most
    confident non-empty reading (the first among equals) answers if more confident."""
    region = answer[0]
    x0, y0, x1, y1 = region
    if np.float32(y1 - y0) < STACKED_ASPECT * np.float32(x1 - x0):
        return answer
    hypotheses = [equal_rows(region, n) for n in range(2, STACKED_MAX + 1)]
    found = stacked_rows(img, region)
    if len(found) >= 2:
        hypotheses.insert(0, found)
    best, best_conf = answer, np.float32(calibrate(answer[2], cal))
    for rows in hypotheses:
        digits, log_p, _ = combine_members(member_log_probs(
            sess, unstacked_strip(img, region, rows, stretch)))
        conf = np.float32(calibrate(log_p, cal))
        if digits and conf > best_conf:
            best, best_conf = (region, digits, log_p), conf
    return best


def preprocess(path, stretch=1.0):
    """The image file as a normalised [1, 3, 32, W] float32 strip (full-image protocol)."""
    return to_strip(load(path), stretch)


def sequence_log_prob(log_probs, digits):
    """log P(digits) under log_probs [T, 11]: the CTC forward sum over every alignment (f32, like
    src/ctc.rs). -inf when no alignment exists."""
    labels = [int(d) + 1 for d in digits]
    ext = [0]
    for k in labels:
        ext += [k, 0]
    ext = np.array(ext)
    s, t = len(ext), log_probs.shape[0]
    if t == 0:
        return -math.inf
    lp = log_probs.astype(np.float32)
    skip = np.zeros(s, bool)
    for i in range(2, s):
        skip[i] = ext[i] != 0 and ext[i] != ext[i - 2]
    alpha = np.full(s, -np.inf, np.float32)
    alpha[0] = lp[0, 0]
    if s > 1:
        alpha[1] = lp[0, ext[1]]
    with np.errstate(divide="ignore", invalid="ignore"):
        for tt in range(1, t):
            a = alpha.copy()
            a[1:] = np.logaddexp(a[1:], alpha[:-1])
            a[2:] = np.where(skip[2:], np.logaddexp(a[2:], alpha[:-2]), a[2:])
            alpha = (a + lp[tt, ext]).astype(np.float32)
    out = np.logaddexp(alpha[-1], alpha[-2]) if s > 1 else alpha[-1]
    return min(float(out), 0.0)


def greedy_decode(log_probs):
    """log_probs [T, 11] -> (digits, log P(digits)): best path, repeats merged, blanks (0)
    dropped; the probability summed over all alignments of those digits."""
    digits, log_p, _ = greedy_decode_spans(log_probs)
    return digits, log_p


def greedy_decode_spans(log_probs):
    """greedy_decode plus, per digit, the steps [first, last] whose argmax emitted it."""
    best = log_probs.argmax(axis=1)
    digits, spans, prev = [], [], 0
    for t, k in enumerate(best):
        if k != 0 and k == prev:
            spans[-1][1] = t
        elif k != 0:
            digits.append(str(k - 1))
            spans.append([t, t])
        prev = k
    digits = "".join(digits)
    return digits, sequence_log_prob(log_probs, digits), spans


# The search rule (src/search.rs): crops must keep the whole image's central number whole;
# among the admissible readings, votes (sums of raw probabilities exp(log P)) decide.
GROUP_GAP, LONE_DIGIT_HALF_WIDTH = 1.3, 0.15


def digit_centres(spans, region, pad, stretch, window):
    x0, y0, x1, y1 = region
    w = target_width(x1 - x0, y1 - y0, stretch)
    pad_left = (MIN_WIDTH - w) // 2 if w < MIN_WIDTH else 0
    scale = (x1 - x0) / w
    return [x0 + ((4 * (t0 + t1) + window) / 2.0 - pad - pad_left) * scale for t0, t1 in spans]


def central_number(centres, width, height):
    if not centres:
        return [], 0.0
    if len(centres) == 1:
        return centres, LONE_DIGIT_HALF_WIDTH * height
    gaps = [b - a for a, b in zip(centres, centres[1:])]
    tightest = min(gaps)
    groups = [[centres[0]]]
    for gap, c in zip(gaps, centres[1:]):
        if gap > GROUP_GAP * tightest:
            groups.append([c])
        else:
            groups[-1].append(c)
    mid = width / 2.0
    best = 0
    for i, g in enumerate(groups):
        if min(abs(c - mid) for c in g) < min(abs(c - mid) for c in groups[best]):
            best = i
    return groups[best], tightest / 2.0


def keeps(region, central, half_width):
    x0, x1 = region[0], region[2]
    cuts = lambda edge, c: c - half_width < edge < c + half_width  # noqa: E731
    return all(x0 <= c <= x1 and not cuts(x0, c) and not cuts(x1, c) for c in central)


def choose(regions, readings, pad, stretch, window=26):
    """readings: (digits, log P(digits), spans) per region; regions[0] is the whole image."""
    if len(readings) == 1:
        return 0
    whole = regions[0]
    centres = digit_centres(readings[0][2], whole, pad, stretch, window)
    central, hw = central_number(centres, whole[2], whole[3])
    votes = []  # [digits, vote, best index], in order of first appearance
    for i, (digits, log_p, _) in enumerate(readings):
        if i > 0 and not keeps(regions[i], central, hw):
            continue
        for v in votes:
            if v[0] == digits:
                v[1] += math.exp(log_p)
                if log_p > readings[v[2]][1]:
                    v[2] = i
                break
        else:
            votes.append([digits, math.exp(log_p), i])
    best = 0
    for k in range(1, len(votes)):
        if votes[k][1] > votes[best][1]:
            best = k
    return votes[best][2]


LOGIT_LIMIT = 35.0


def calibrate(log_p, cal):
    """Platt scaling stored in the model's metadata (`housenum.calibration`): sigmoid(a*logit(p)+b),
    the logit computed from log p (precise next to p = 1) and clamped like src/calibrate.rs."""
    if cal is None:
        cal = {"a": 1.0, "b": 0.0}
    log_p = min(log_p, 0.0)
    if log_p == 0.0:
        z = LOGIT_LIMIT
    elif log_p == -math.inf:
        z = -LOGIT_LIMIT
    else:
        z = min(max(log_p - math.log(-math.expm1(log_p)), -LOGIT_LIMIT), LOGIT_LIMIT)
    z = cal["a"] * z + cal["b"]
    return float(np.float32(1.0 / (1.0 + math.exp(-z))))


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default=os.path.join(here, "housenum.onnx"))
    ap.add_argument("--localiser", default=os.path.join(here, "localiser.onnx"))
    ap.add_argument("--protocol", choices=["locate", "search", "full"], default="locate")
    ap.add_argument("--views", type=int, choices=range(1, 8), default=7,
                    help="framings of the localiser's box read under locate (as `housenum read --views`)")
    ap.add_argument("--early-exit", default=str(EARLY_EXIT),
                    help="read the other framings only where the first one's confidence is below P "
                         "(as `housenum read --early-exit`); off reads them all")
    ap.add_argument("--second-look", default=str(SECOND_LOOK_BELOW),
                    help="look again where the answer is below P sure and small in the photo "
                         "(as `housenum read --second-look`); off never does")
    ap.add_argument("--look-with", choices=["tiles", "detector"], default="detector",
                    help="where the second look looks (as `housenum read --look-with`)")
    ap.add_argument("--look-area", type=float, default=SECOND_LOOK_MAX_AREA,
                    help="the second look runs only for regions under this share of the photo")
    ap.add_argument("--detector", default=os.path.join(here, "detector.onnx"))
    ap.add_argument("--margin", choices=["on", "off"], default="off",
                    help="where the localiser's box fills 35 %% of the photo's width, look again "
                         "with the photo in a margin of its border's colour (as `housenum read --margin`)")
    ap.add_argument("--no-number-below", default=str(NO_NUMBER_BELOW),
                    help="under locate, report a reading less than P sure as no number "
                         "(as `housenum read --no-number-below`); off gives every reading")
    ap.add_argument("images", nargs="+")
    args = ap.parse_args()
    early_exit = None if args.early_exit == "off" else float(np.float32(args.early_exit))
    second = None if args.second_look == "off" else float(np.float32(args.second_look))
    no_number_below = (None if args.no_number_below == "off"
                       else float(np.float32(args.no_number_below)))
    sess = ort.InferenceSession(args.model, providers=["CPUExecutionProvider"])
    loc_sess = None
    if args.protocol == "locate":
        loc_sess = ort.InferenceSession(args.localiser, providers=["CPUExecutionProvider"])
    det_sess = None
    if args.protocol == "locate" and args.look_with == "detector":
        det_sess = ort.InferenceSession(args.detector, providers=["CPUExecutionProvider"])
    meta = sess.get_modelmeta().custom_metadata_map
    cal = json.loads(meta["housenum.calibration"]) if "housenum.calibration" in meta else None
    pad = int(meta.get("housenum.pad", "0"))
    # The window's width: 26 px, wider in a reader with residual blocks.
    window = int(meta.get("housenum.window", "26"))
    # f32, as the Rust reader parses it.
    stretch = float(np.float32(meta.get("housenum.stretch", "1")))
    failed = none = 0
    for path in args.images:
        try:
            img = load(path)
            h, w = img.shape[:2]
            if loc_sess is not None:
                box = locate_box(img, loc_sess, MARGIN if args.margin == "on" else None)
            else:
                regs = regions(w, h, args.protocol == "search")
                strips = [to_strip(img[y0:y1, x0:x1], stretch) for x0, y0, x1, y1 in regs]
        except Exception as e:  # report and go on, like `housenum read`
            print(f"error: {path}: {e}", file=sys.stderr)
            failed += 1
            continue
        if loc_sess is not None:
            answer = read_box(sess, img, box, args.views, stretch, cal, early_exit)
            region = answer[0]
            if looks_again(region, calibrate(answer[2], cal), w, h, second, args.look_area,
                           det_sess is not None):
                if det_sess is not None:
                    answer = second_look_detected(sess, loc_sess, det_sess, img, answer,
                                                  args.views, stretch, cal, early_exit)
                else:
                    answer = second_look(sess, loc_sess, img, answer, args.views, stretch, cal,
                                         early_exit)
            answer = unstacked(sess, img, answer, stretch, cal)
            _, digits, log_p = answer
            # src/read/ctc.rs Decoded::withhold: too unsure a reading is no number.
            if no_number_below is not None and digits and calibrate(log_p, cal) < no_number_below:
                digits = ""
        else:
            per_strip = [member_log_probs(sess, x) for x in strips]
            readings = [combine_members(members) for members in per_strip]
            digits, log_p, _ = readings[choose(regs, readings, pad, stretch, window)]
        # src/cli/read.rs NO_NUMBER: what a photo without a number prints.
        print(f"{path}\t{digits or 'no number'}\t{calibrate(log_p, cal):.3f}")
        none += not digits
    # housenum read's exit codes: 1 some file unreadable, 4 some photo without a number.
    sys.exit(1 if failed else 4 if none else 0)


if __name__ == "__main__":
    main()
