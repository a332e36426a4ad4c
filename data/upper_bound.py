#!/usr/bin/env python3
"""An upper bound, outside the project: how well do readers trained with far
more compute than the recipe's (a GPU) read the same 199 validation crops from the same data?

  # here (PIL): crops of the 2,026 labelled photos (validation = the names `eval --split val`
  # wrote) and of the unlabelled photos the shipped model reads at confidence >= 0.9 under locate
  housenum eval ../shared/svhn/train --split val --protocol crop --views 1 --outcomes val.tsv
  housenum read --region ../shared/svhn/unlabeled > pool.tsv
  data/upper_bound_prep.py --svhn ../shared/svhn --val-outcomes val.tsv --pool pool.tsv --root ub
  # on a machine with PyTorch and a GPU: ARCH:POOL(0/1):SEED:SECONDS per run, JSON lines out
  data/upper_bound.py --root ub --runs crnn:1:1:90,res:1:1:130 --out ub.jsonl

Protocol: crop (the labelled box grown 30 %), one framing, strip 32 px high stretched 1.4x with 12
zero columns each side (housenum's geometry), greedy CTC. Training: random framings (box grown
1.1-1.6x, shifted, turned up to 8 degrees, sheared), channel swaps, inversion, noise, sampled on the
GPU from the stored crops; AdamW, warm-up then cosine decay over a wall-clock budget, bf16. `crnn` is
housenum's architecture (benches/torch_train.py); `res` a ResNet CRNN (7.8 M parameters at width 64).
Not part of the build or the tests; docs/experiments.md, "Is it the data or the reader's size?".
"""

import argparse, json, math, os, random, sys, time
import numpy as np
import torch, torch.nn as nn, torch.nn.functional as F
from PIL import Image

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), '..', 'benches'))
from torch_train import Crnn as TorchTrainCrnn  # noqa: E402  (the benchmark's mirror of the model)

H, PAD, WMAX = 32, 12, 232  # output strip: 32 x 232 (region at most 208 px wide)


def load(root, dev):
    meta = json.load(open(f'{root}/meta.json'))
    n = len(meta)
    imgs = torch.zeros(n, 3, 48, 400, dtype=torch.uint8)
    for i, m in enumerate(meta):
        a = np.asarray(Image.open(f'{root}/crops/{m["file"]}').convert('RGB'))
        imgs[i, :, :, : a.shape[1]] = torch.from_numpy(a.copy()).permute(2, 0, 1)
    boxes = torch.tensor([m['box'] for m in meta], dtype=torch.float32)
    split = [m['split'] for m in meta]
    digits = [m['digits'] for m in meta]
    return imgs.to(dev), boxes.to(dev), split, digits


def strips(imgs, boxes, idx, train, gen, dev):
    """[B,3,48,400] crops + boxes -> normalised [B,3,32,WMAX] strips (zeros outside the region)."""
    B = len(idx)
    src = imgs[idx].float() / 255.0
    bx = boxes[idx]
    x0, y0, x1, y1 = bx.unbind(1)
    bw, bh = (x1 - x0).clamp(min=2), (y1 - y0).clamp(min=2)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    u = lambda lo, hi: lo + (hi - lo) * torch.rand(B, device=dev, generator=gen)
    if train:
        gw, gh = u(1.1, 1.6), u(1.1, 1.6)
        cx = cx + bw * u(-0.1, 0.1); cy = cy + bh * u(-0.1, 0.1)
        rot = u(-0.14, 0.14); shear = u(-0.25, 0.25); stretch = 1.4 * u(0.8, 1.25)
    else:
        gw = gh = torch.full((B,), 1.3, device=dev)
        rot = shear = torch.zeros(B, device=dev); stretch = torch.full((B,), 1.4, device=dev)
    rw, rh = bw * gw, bh * gh
    ow = (rw / rh * H * stretch).round().clamp(8, WMAX - 2 * PAD)
    # output pixel grid
    us = torch.arange(WMAX, device=dev).float()[None, None, :] + 0.5
    vs = torch.arange(H, device=dev).float()[None, :, None] + 0.5
    fx = (us - PAD) / ow[:, None, None] - 0.5  # -0.5..0.5 inside the region
    fy = vs / H - 0.5
    dx = fx * rw[:, None, None] + shear[:, None, None] * fy * rh[:, None, None]
    dy = fy * rh[:, None, None]
    c, s = torch.cos(rot)[:, None, None], torch.sin(rot)[:, None, None]
    sx = cx[:, None, None] + c * dx - s * dy
    sy = cy[:, None, None] + s * dx + c * dy
    grid = torch.stack([sx / 400 * 2 - 1, sy / 48 * 2 - 1], -1)
    out = F.grid_sample(src, grid, mode='bilinear', padding_mode='border', align_corners=False)
    inside = ((us - PAD >= 0) & (us - PAD < ow[:, None, None])).float().expand(B, H, WMAX)[:, None]
    if train:
        perm = torch.rand(B, 3, device=dev, generator=gen).argsort(1)
        out = torch.gather(out, 1, perm[:, :, None, None].expand_as(out))
        inv = (torch.rand(B, device=dev, generator=gen) < 0.2).float()[:, None, None, None]
        out = inv * (1 - out) + (1 - inv) * out
        out = out + 0.03 * u(0, 1)[:, None, None, None] * torch.randn(out.shape, device=dev, generator=gen)
    cnt = inside.sum((1, 2, 3), keepdim=True) * 3
    mean = (out * inside).sum((1, 2, 3), keepdim=True) / cnt
    var = (((out - mean) * inside) ** 2).sum((1, 2, 3), keepdim=True) / cnt
    out = (out - mean) / var.sqrt().clamp(min=0.01) * inside
    return out


def forget_bias(lstm, hidden):
    """Biases 0 except the forget gate's (PyTorch's gate order i, f, g, o): 1 in each of b_ih, b_hh."""
    for name, p in lstm.named_parameters():
        if 'bias' in name:
            p.data.zero_()
            p.data[hidden:2 * hidden] = 1.0


class Crnn(TorchTrainCrnn):
    """housenum's architecture, the layers of benches/torch_train.py (valid convs, T = (W-26)/4+1),
    with dropout on the window embeddings and the LSTM outputs and the forget-gate bias at +1."""

    def __init__(self, channels=(48, 96, 192, 192), hidden=160, drop=0.1):
        super().__init__(channels, hidden, H)
        self.drop = nn.Dropout(drop)
        forget_bias(self.lstm, hidden)

    def forward(self, x):
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv4(F.relu(self.conv3(x))))
        x = self.drop(x.squeeze(2).permute(2, 0, 1))
        return self.fc(self.drop(self.lstm(x)[0])).log_softmax(-1)


class Block(nn.Module):
    def __init__(self, ci, co, stride):
        super().__init__()
        self.c1 = nn.Conv2d(ci, co, 3, stride, 1, bias=False); self.b1 = nn.BatchNorm2d(co)
        self.c2 = nn.Conv2d(co, co, 3, 1, 1, bias=False); self.b2 = nn.BatchNorm2d(co)
        self.sc = None if (ci == co and stride == 1) else nn.Sequential(
            nn.Conv2d(ci, co, 1, stride, bias=False), nn.BatchNorm2d(co))

    def forward(self, x):
        y = self.b2(self.c2(F.relu(self.b1(self.c1(x)))))
        return F.relu(y + (x if self.sc is None else self.sc(x)))


class Res(nn.Module):  # ResNet CRNN: 32xW -> 4 x W/4 -> height mean -> BiLSTM
    def __init__(self, w=64, hidden=256, drop=0.2):
        super().__init__()
        self.stem = nn.Sequential(nn.Conv2d(3, w, 3, 1, 1, bias=False), nn.BatchNorm2d(w), nn.ReLU())
        self.body = nn.Sequential(Block(w, w, 1), Block(w, 2 * w, 2), Block(2 * w, 2 * w, 1),
                                  Block(2 * w, 4 * w, 2), Block(4 * w, 4 * w, 1),
                                  Block(4 * w, 4 * w, (2, 1)), Block(4 * w, 4 * w, 1))
        self.lstm = nn.LSTM(4 * w * 4, hidden, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 11); self.drop = nn.Dropout(drop)
        forget_bias(self.lstm, hidden)

    def forward(self, x):
        x = self.body(self.stem(x))  # [B, 4w, 4, W/4]
        b, c, h, t = x.shape
        x = self.drop(x.reshape(b, c * h, t).permute(2, 0, 1))
        return self.fc(self.drop(self.lstm(x)[0])).log_softmax(-1)


def amp(dev):
    import contextlib
    return torch.autocast('cuda', dtype=torch.bfloat16) if dev == 'cuda' else contextlib.nullcontext()


def greedy(lp):  # [T,B,11] -> list of strings
    best = lp.argmax(-1).T.tolist()
    out = []
    for row in best:
        s, prev = [], 0
        for k in row:
            if k != prev and k != 0:
                s.append(str(k - 1))
            prev = k
        out.append(''.join(s))
    return out


def run(args, data, dev):
    imgs, boxes, split, digits = data
    torch.manual_seed(args.seed); random.seed(args.seed)
    gen = torch.Generator(device=dev); gen.manual_seed(args.seed)
    tr = [i for i, s in enumerate(split) if s == 'train' or (args.pool and s == 'pool')]
    va = [i for i, s in enumerate(split) if s == 'val']
    tr = tr[: args.limit] if args.limit else tr
    model = (Crnn() if args.arch == 'crnn' else Res(args.width)).to(dev)
    nparam = sum(p.numel() for p in model.parameters())
    opt = torch.optim.AdamW(model.parameters(), lr=args.lr, weight_decay=args.wd)
    steps_per = math.ceil(len(tr) / args.batch)

    def set_lr():  # warm-up over 3 % of the time budget, cosine to 1 % by its end
        f = (time.time() - t0) / args.budget
        lr = args.lr * (f / 0.03 if f < 0.03 else 0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, (f - 0.03) / 0.97))))
        for g in opt.param_groups:
            g['lr'] = lr
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    t0 = time.time(); hist = []; ep = 0

    def evaluate():
        model.eval(); right = 0; reads = []
        with torch.no_grad():
            for k in range(0, len(va), 256):
                idx = torch.tensor(va[k:k + 256], device=dev)
                x = strips(imgs, boxes, idx, False, gen, dev)
                with amp(dev):
                    lp = model(x).float()
                for j, r in zip(va[k:k + 256], greedy(lp)):
                    right += r == digits[j]; reads.append(r)
        model.train()
        return right / len(va), reads

    for ep in range(10 ** 6):
        perm = torch.randperm(len(tr), generator=torch.Generator().manual_seed(args.seed * 1000 + ep)).tolist()
        lsum = 0.0
        for k in range(0, len(tr), args.batch):
            bi = [tr[i] for i in perm[k:k + args.batch]]
            idx = torch.tensor(bi, device=dev)
            x = strips(imgs, boxes, idx, True, gen, dev)
            tg = torch.tensor([int(c) + 1 for i in bi for c in digits[i]], device=dev)
            tl = torch.tensor([len(digits[i]) for i in bi], device=dev)
            with amp(dev):
                lp = model(x)
            lp = lp.float().log_softmax(-1)
            il = torch.full((len(bi),), lp.shape[0], dtype=torch.long, device=dev)
            loss = ctc(lp, tg, il, tl)
            opt.zero_grad(set_to_none=True); loss.backward()
            nn.utils.clip_grad_norm_(model.parameters(), 5.0); set_lr(); opt.step()
            lsum += loss.item()
        if (ep + 1) % args.eval_every == 0:
            acc, _ = evaluate()
            hist.append((ep + 1, round(lsum / steps_per, 4), round(100 * acc, 2), round(time.time() - t0, 1)))
            print(args.arch, args.pool, args.seed, *hist[-1], flush=True)
        if time.time() - t0 > args.budget:
            break
    acc, reads = evaluate()
    return dict(arch=args.arch, pool=args.pool, seed=args.seed, width=args.width, params=nparam,
                epochs_done=ep + 1, budget=args.budget, seconds=round(time.time() - t0, 1),
                val_crop=round(100 * acc, 2), hist=hist, reads=reads,
                train_images=len(tr))


if __name__ == '__main__':
    ap = argparse.ArgumentParser()
    ap.add_argument('--root', default='ub'); ap.add_argument('--runs', default='crnn:1:1:200')
    ap.add_argument('--batch', type=int, default=128); ap.add_argument('--lr', type=float, default=2e-3)
    ap.add_argument('--wd', type=float, default=1e-4); ap.add_argument('--width', type=int, default=64)
    ap.add_argument('--eval-every', type=int, default=10)
    ap.add_argument('--out', default='-'); ap.add_argument('--limit', type=int, default=0)
    a = ap.parse_args()
    dev = 'cuda' if torch.cuda.is_available() else 'cpu'
    torch.backends.cudnn.benchmark = True
    data = load(a.root, dev)
    out = open(a.out, 'a') if a.out != '-' else None
    for spec in a.runs.split(','):  # arch:pool:seed:seconds
        arch, pool, seed, secs = spec.split(':')
        a.arch, a.pool, a.seed, a.budget = arch, pool == '1', int(seed), float(secs)
        r = run(a, data, dev)
        line = json.dumps(r)
        print(json.dumps({k: v for k, v in r.items() if k != 'reads'}), flush=True)
        if out:
            out.write(line + '\n'); out.flush()
