#!/usr/bin/env python3
"""The data of data/upper_bound.py (its docstring says how the two are run): crops of the labelled
photos and of the confidently read unlabelled ones, with context, and meta.json. Needs PIL."""
import argparse
import json

from PIL import Image


def prep(args):
    """Crops with context (the number's box grown 2.0x wide, 1.8x high, clamped to the photo),
    48 px high, JPEG q92, and meta.json: digits, box in crop pixels, split."""
    import csv, os
    S, OUT = args.svhn, args.root
    os.makedirs(f'{OUT}/crops', exist_ok=True)
    lab = {r['name']: r for r in csv.DictReader(open(f'{S}/labels/train_all.csv'))}
    val = {r['name'] for r in csv.DictReader(open(args.val_outcomes), delimiter='\t')}
    items = []

    def save(key, im, box, digits, split):
        x0, y0, x1, y1 = box
        w, h = x1 - x0, y1 - y0
        cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
        W, Hh = im.size
        c0, r0 = max(0, int(cx - w)), max(0, int(cy - 0.9 * h))
        c1, r1 = min(W, int(cx + w) + 1), min(Hh, int(cy + 0.9 * h) + 1)
        c = im.crop((c0, r0, c1, r1))
        s = 48 / c.height
        nw = max(1, min(400, round(c.width * s)))
        sx = nw / c.width
        c.resize((nw, 48), Image.BILINEAR).save(f'{OUT}/crops/{key}.jpg', quality=92)
        items.append(dict(file=f'{key}.jpg', digits=digits, split=split,
                          box=[(x0 - c0) * sx, (y0 - r0) * s, (x1 - c0) * sx, (y1 - r0) * s]))

    for n in sorted(os.listdir(f'{S}/train')):
        if not n.endswith('.png'):
            continue
        r = lab[n]
        bx = [list(map(int, b.split(':'))) for b in r['boxes_left_top_width_height'].split(';')]
        box = (min(b[0] for b in bx), min(b[1] for b in bx),
               max(b[0] + b[2] for b in bx), max(b[1] + b[3] for b in bx))
        save('t' + n[:-4], Image.open(f'{S}/train/{n}').convert('RGB'), box, r['digits'],
             'val' if n in val else 'train')
    for line in open(args.pool):  # `housenum read --region` listing: keep >= 0.9
        p, d, conf, reg = line.rstrip('\n').split('\t')
        if d in ('', '?', 'no number') or float(conf) < args.min_confidence:
            continue
        x0, y0, x1, y1 = map(int, reg.split(','))
        cx, cy, w, h = (x0 + x1) / 2, (y0 + y1) / 2, (x1 - x0) / 1.3, (y1 - y0) / 1.3
        save('u' + os.path.basename(p)[:-4], Image.open(p).convert('RGB'),
             (cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2), d, 'pool')
    json.dump(items, open(f'{OUT}/meta.json', 'w'))
    print({s: sum(i['split'] == s for i in items) for s in ('train', 'val', 'pool')})


if __name__ == '__main__':
    pp = argparse.ArgumentParser()
    pp.add_argument('--svhn', default='../shared/svhn')
    pp.add_argument('--val-outcomes', required=True, help='`housenum eval --outcomes` of the validation split')
    pp.add_argument('--pool', required=True, help='`housenum read --region` listing of the unlabelled photos')
    pp.add_argument('--root', default='ub')
    pp.add_argument('--min-confidence', type=float, default=0.9)
    prep(pp.parse_args())
