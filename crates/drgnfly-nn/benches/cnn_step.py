"""PyTorch twin of cnn_step.rs: the same encoder layouts (no normalisation, zero-initialised second
convolutions), forward and backward at D = 64 and 128, batch 32, float32, on the CPU.

    OMP_NUM_THREADS=2 python cnn_step.py   (torch from the cryoDRGN virtualenv)
"""
import time

import torch
from torch import nn

torch.manual_seed(0)
BATCH = 32


class Block(nn.Module):
    def __init__(self, c_in, c_out, stride):
        super().__init__()
        self.conv1 = nn.Conv2d(c_in, c_out, 3, stride, 1)
        self.conv2 = nn.Conv2d(c_out, c_out, 3, 1, 1)
        nn.init.zeros_(self.conv2.weight)
        self.shortcut = nn.Conv2d(c_in, c_out, 1, stride) if stride != 1 or c_in != c_out else None

    def forward(self, x):
        skip = x if self.shortcut is None else self.shortcut(x)
        return torch.relu(self.conv2(torch.relu(self.conv1(x))) + skip)


class Encoder(nn.Module):
    def __init__(self, resnet, width, blocks, zdim=8, head=256):
        super().__init__()
        k = 7 if resnet else 3
        self.stem = nn.Conv2d(1, width, k, 2, k // 2)
        self.pool = nn.MaxPool2d(2) if resnet else nn.Identity()
        layers, c_in = [], width
        for s in range(4):
            c_out = width << s
            for b in range(blocks):
                layers.append(Block(c_in, c_out, 2 if s > 0 and b == 0 else 1))
                c_in = c_out
        self.trunk = nn.Sequential(*layers)
        mlp = lambda out: nn.Sequential(nn.Linear(c_in, head), nn.ReLU(), nn.Linear(head, out))
        self.rot, self.shift, self.z = mlp(6), mlp(2), mlp(2 * zdim)

    def forward(self, x):
        f = self.trunk(self.pool(torch.relu(self.stem(x[:, None])))).mean((2, 3))
        return self.rot(f), self.shift(f), self.z(f)


def median(v):
    return sorted(v)[len(v) // 2]


print("| layout | D | batch | forward ms | forward+backward ms | images/s (fwd+bwd) |")
print("|---|---|---|---|---|---|")
for name, resnet, width, blocks, d, reps in [
    ("small", False, 16, 1, 64, 7),
    ("small", False, 16, 1, 128, 5),
    ("resnet18", True, 64, 2, 64, 3),
    ("resnet18", True, 64, 2, 128, 3),
]:
    enc = Encoder(resnet, width, blocks)
    x = torch.randn(BATCH, d, d)
    fwd, both = [], []
    for rep in range(reps + 1):
        enc.zero_grad()
        t0 = time.perf_counter()
        r, s, z = enc(x)
        loss = (r**2).sum() + (s**2).sum() + (z**2).sum()
        t1 = time.perf_counter()
        loss.backward()
        t2 = time.perf_counter()
        if rep > 0:
            fwd.append(t1 - t0)
            both.append(t2 - t0)
    f, b = median(fwd), median(both)
    print(f"| {name} | {d} | {BATCH} | {f * 1e3:.0f} | {b * 1e3:.0f} | {BATCH / b:.0f} |")
