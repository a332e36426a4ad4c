#!/usr/bin/env python3
"""The reference side of the training-step benchmark: the same architecture as housenum's
`Crnn` (conv 3x3 -> ReLU -> maxpool -> conv 3x3 -> ReLU -> maxpool -> conv 3x3 -> ReLU ->
conv (h x 3) -> ReLU, BiLSTM, linear to 11 classes, CTC with blank 0) trained with Adam on
random strips, PyTorch CPU.

  python3 benches/torch_train.py --batch 32 --width 128 --steps 20 --runs 5 --threads 2
    prints {"images_per_second": median, ...} as JSON.
  python3 benches/torch_train.py --ctc-fixture tests/fixtures/ctc_torch.json
    writes fixed CTC inputs with PyTorch's losses and logit gradients (the Rust test
    tests/ctc_torch.rs checks housenum's CTC against them).

Needs torch (CPU). Debian: `apt-get install python3-torch` (then run with /usr/bin/python3);
PyPI: `pip install torch --index-url https://download.pytorch.org/whl/cpu`.
"""
import argparse
import json
import statistics
import time

import torch
import torch.nn as nn
import torch.nn.functional as F


class Crnn(nn.Module):
    def __init__(self, channels=(48, 96, 192, 192), hidden=160, height=32):
        super().__init__()
        c1, c2, c3, c4 = channels
        kh = ((height - 2) // 2 - 2) // 2 - 2
        self.conv1 = nn.Conv2d(3, c1, 3)
        self.conv2 = nn.Conv2d(c1, c2, 3)
        self.conv3 = nn.Conv2d(c2, c3, 3)
        self.conv4 = nn.Conv2d(c3, c4, (kh, 3))
        self.lstm = nn.LSTM(c4, hidden, bidirectional=True)
        self.fc = nn.Linear(2 * hidden, 11)

    def forward(self, x):  # x [N, 3, 32, W] -> log_probs [T, N, 11]
        x = F.max_pool2d(F.relu(self.conv1(x)), 2)
        x = F.max_pool2d(F.relu(self.conv2(x)), 2)
        x = F.relu(self.conv3(x))
        x = F.relu(self.conv4(x))  # [N, c4, 1, T]
        x = x.squeeze(2).permute(2, 0, 1)  # [T, N, c4]
        x, _ = self.lstm(x)
        return F.log_softmax(self.fc(x), dim=-1)


def bench(a):
    torch.set_num_threads(a.threads)
    torch.manual_seed(0)
    model = Crnn(tuple(int(c) for c in a.channels.split(",")), a.hidden)
    opt = torch.optim.Adam(model.parameters(), lr=1e-3)
    ctc = nn.CTCLoss(blank=0, zero_infinity=True)
    x = torch.randn(a.batch, 3, 32, a.width)
    g = torch.Generator().manual_seed(1)
    lens = torch.randint(1, 6, (a.batch,), generator=g)
    targets = torch.randint(1, 11, (int(lens.sum()),), generator=g)

    def step():
        opt.zero_grad()
        lp = model(x)
        t = torch.full((a.batch,), lp.shape[0], dtype=torch.long)
        loss = ctc(lp, targets, t, lens)
        loss.backward()
        nn.utils.clip_grad_norm_(model.parameters(), 5.0)
        opt.step()

    for _ in range(3):
        step()
    rates = []
    for _ in range(a.runs):
        t0 = time.perf_counter()
        for _ in range(a.steps):
            step()
        rates.append(a.batch * a.steps / (time.perf_counter() - t0))
    print(json.dumps({
        "images_per_second": statistics.median(rates), "runs": rates, "batch": a.batch,
        "width": a.width, "threads": torch.get_num_threads(), "torch": torch.__version__,
        "parameters": sum(p.numel() for p in model.parameters()),
    }))


def ctc_fixture(path):
    g = torch.Generator().manual_seed(1234)
    cases = []
    for t, labels in [(1, [3]), (4, [1, 1]), (6, [2, 5, 2]), (12, [10, 10, 10]),
                      (20, [1, 2, 3, 4, 5, 6, 7]), (9, [4]), (30, [7, 7, 1, 9, 9, 9, 2, 3])]:
        logits = (torch.randn(t, 11, generator=g) * 2.0).double().requires_grad_()
        lp = F.log_softmax(logits, dim=-1)
        loss = F.ctc_loss(lp.unsqueeze(1), torch.tensor([labels]), torch.tensor([t]),
                          torch.tensor([len(labels)]), blank=0, reduction="sum")
        loss.backward()
        cases.append({"t": t, "labels": labels, "logits": logits.detach().flatten().tolist(),
                      "loss": loss.item(), "grad": logits.grad.flatten().tolist()})
    with open(path, "w") as f:
        json.dump({"source": f"torch {torch.__version__} F.ctc_loss(blank=0, reduction='sum'), "
                   "float64; grad is d loss / d logits through log_softmax",
                   "cases": cases}, f)


if __name__ == "__main__":
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=32)
    p.add_argument("--width", type=int, default=128)
    p.add_argument("--steps", type=int, default=20)
    p.add_argument("--runs", type=int, default=5)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--channels", default="48,96,192,192")
    p.add_argument("--hidden", type=int, default=160)
    p.add_argument("--ctc-fixture")
    a = p.parse_args()
    if a.ctc_fixture:
        ctc_fixture(a.ctc_fixture)
    else:
        bench(a)
