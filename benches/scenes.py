#!/usr/bin/env python3
"""House fronts as people photograph them, made up: a wall (plain, siding or brick) with windows
and a door, and a house number in one of the embedded fonts (data/fonts), set at 3-20 % of the
photo's shorter side, painted on the wall or on a plate, in photos of 800 x 600 to 4,000 x 3,000
(landscape and portrait), half of them blurred, with sensor noise, saved as JPEG. No SVHN image is
used, so the scenes can be shared. The number is in clear view: windows never cover it.

Writes DIR/NNNN.jpg (`--png`: NNNN.png, lossless, which every decoder reads alike: for comparing
runtimes exactly, as JPEG decoders differ in their last bits), DIR/labels.tsv (name, digits,
wall) as benches/rapidocr_peer.py reads it, and DIR/scenes.tsv (name, digits, wall, plate, font
size px, width, height, font, the digits' ink box l t r b).

  python3 benches/scenes.py /tmp/scenes --count 400 --seed 3 [--fonts all|training|held-out]
  housenum read /tmp/scenes --json > /tmp/scenes.jsonl
  python3 benches/rapidocr_peer.py /tmp/scenes --housenum /tmp/scenes.jsonl

Needs: pip install numpy pillow.
"""
import argparse
import glob
import os
import random

import numpy as np
from PIL import Image, ImageDraw, ImageFilter, ImageFont

HERE = os.path.dirname(os.path.abspath(__file__))
# src/data/synth.rs HELD_OUT_FAMILIES: the font families training never draws.
HELD_OUT = {"Cabin", "DancingScript", "Go", "LeagueSpartan", "OldStandard", "Quicksand",
            "YanoneKaffeesatz"}
SIZES = [(4000, 3000), (3000, 4000), (2000, 1500), (1600, 1200), (1024, 768), (800, 600)]


def family(path):
    name = os.path.basename(path)
    return name.replace("_", "-").split("-")[0].split(".")[0]


def fonts(which):
    every = sorted(glob.glob(os.path.join(HERE, "..", "data", "fonts", "*.ttf")))
    if which == "all":
        return every
    held = [f for f in every if family(f) in HELD_OUT]
    return held if which == "held-out" else [f for f in every if f not in held]


def darker(c, by):
    return tuple(max(0, v - by) for v in c)


def scene(rng, noise_rng, font_files):
    w, h = rng.choice(SIZES)
    wall = (tuple(rng.randint(120, 245) for _ in range(3)) if rng.random() < 0.7
            else tuple(rng.randint(30, 120) for _ in range(3)))
    img = Image.new("RGB", (w, h), wall)
    d = ImageDraw.Draw(img)
    kind = rng.choice(["plain", "siding", "brick"])
    if kind == "siding":
        step = rng.randint(h // 60, h // 20)
        for y in range(0, h, step):
            d.line([(0, y), (w, y)], fill=darker(wall, 40), width=max(1, step // 10))
    elif kind == "brick":
        bh = rng.randint(h // 80, h // 30)
        bw = bh * 3
        for r, y in enumerate(range(0, h, bh)):
            for x in range(-(r % 2) * bw // 2, w, bw):
                c = tuple(min(255, max(0, v + rng.randint(-25, 25))) for v in wall)
                d.rectangle([x + 1, y + 1, x + bw - 2, y + bh - 2], fill=c)
    digits = str(rng.randint(1, 9999)) if rng.random() < 0.8 else str(rng.randint(1, 99))
    font_file = rng.choice(font_files)
    px = int(rng.uniform(0.03, 0.2) * min(w, h))
    font = ImageFont.truetype(font_file, px)
    bx0, by0, bx1, by1 = d.textbbox((0, 0), digits, font=font)
    tw, th = bx1 - bx0, by1 - by0
    x, y = rng.randint(0, max(0, w - tw - 1)), rng.randint(0, max(0, h - th - 1))
    plate = rng.random() < 0.4
    ink = (20, 20, 20) if sum(wall) > 380 else (240, 240, 240)
    if plate:
        colour = tuple(rng.randint(0, 255) for _ in range(3))
        pad = th // 3
        d.rectangle([x - pad, y - pad, x + tw + pad, y + th + pad], fill=colour)
        ink = (20, 20, 20) if sum(colour) > 380 else (245, 245, 245)
    d.text((x - bx0, y - by0), digits, font=font, fill=ink)
    # Windows and a door, never over the number or its plate.
    m = th // 2 + 4
    keep = (x - tw // 3 - m, y - m, x + tw + tw // 3 + m, y + th + m)
    for _ in range(rng.randint(0, 4)):
        ww, wh = rng.randint(w // 10, w // 4), rng.randint(h // 8, h // 3)
        wx, wy = rng.randint(0, w - ww), rng.randint(0, h - wh)
        if wx < keep[2] and wx + ww > keep[0] and wy < keep[3] and wy + wh > keep[1]:
            continue
        d.rectangle([wx, wy, wx + ww, wy + wh], fill=(rng.randint(20, 90),) * 3,
                    outline=(250, 250, 250), width=max(2, w // 200))
        d.line([(wx + ww // 2, wy), (wx + ww // 2, wy + wh)], fill=(250, 250, 250),
               width=max(2, w // 300))
    if rng.random() < 0.5:
        img = img.filter(ImageFilter.GaussianBlur(rng.uniform(0.5, 2.0)))
    a = np.asarray(img).astype(np.float32)
    a += noise_rng.normal(0, rng.uniform(2, 8), a.shape)
    img = Image.fromarray(a.clip(0, 255).astype(np.uint8))
    row = (digits, kind, plate, px, w, h, os.path.basename(font_file), x, y, x + tw, y + th)
    return img, row


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("out")
    ap.add_argument("--count", type=int, default=400)
    ap.add_argument("--seed", type=int, default=1)
    ap.add_argument("--fonts", choices=["all", "training", "held-out"], default="all")
    ap.add_argument("--png", action="store_true", help="write PNG instead of JPEG")
    args = ap.parse_args()
    os.makedirs(args.out, exist_ok=True)
    rng = random.Random(args.seed)
    font_files = fonts(args.fonts)
    rows = []
    for i in range(args.count):
        img, row = scene(rng, np.random.default_rng([args.seed, i]), font_files)
        name = f"{i:04d}.png" if args.png else f"{i:04d}.jpg"
        img.save(os.path.join(args.out, name), **({} if args.png else {"quality": 88}))
        rows.append((name,) + row)
    with open(os.path.join(args.out, "scenes.tsv"), "w") as f:
        for r in rows:
            f.write("\t".join(map(str, r)) + "\n")
    with open(os.path.join(args.out, "labels.tsv"), "w") as f:
        for r in rows:
            f.write(f"{r[0]}\t{r[1]}\t{r[2]}\n")
    print(f"wrote {len(rows)} scenes to {args.out} (seed {args.seed}, fonts {args.fonts})")


if __name__ == "__main__":
    main()
