"""PyTorch twin of decoder_step.rs: one training step of cryoDRGN's FTPositionalDecoder (256x3, gaussian PE
pe_dim 32, zdim 8) on 8 images at D = 64 (3208 masked points, half decoded), Adam lr 1e-4.

    /path/to/venv/bin/python crates/drgnfly-nn/benches/decoder_step.py
"""

import time

import numpy as np
import torch

from cryodrgn.lattice import Lattice
from cryodrgn.models import FTPositionalDecoder

torch.manual_seed(0)
B, ZDIM = 8, 8
lat = Lattice(65, extent=0.5)
mask = lat.get_circular_mask(32)
pts = lat.coords[mask]
n = pts.shape[0]
q = torch.nn.functional.normalize(torch.rand(B, 4) - 0.5, dim=1)
w, x, y, z = q.unbind(1)
rot = torch.stack(
    [
        torch.stack([1 - 2 * (y * y + z * z), 2 * (x * y - w * z), 2 * (x * z + w * y)], -1),
        torch.stack([2 * (x * y + w * z), 1 - 2 * (x * x + z * z), 2 * (y * z - w * x)], -1),
        torch.stack([2 * (x * z - w * y), 2 * (y * z + w * x), 1 - 2 * (x * x + y * y)], -1),
    ],
    1,
)
coords = pts @ rot  # (B, n, 3)
zval = torch.rand(B, ZDIM) - 0.5
target = torch.rand(B, n) - 0.5
model = FTPositionalDecoder(3 + ZDIM, 65, 3, 256, torch.nn.ReLU, enc_type="gaussian", enc_dim=32, feat_sigma=0.5)
opt = torch.optim.Adam(model.parameters(), lr=1e-4)
inp = torch.cat([coords, zval[:, None, :].expand(B, n, ZDIM)], -1)


def step():
    opt.zero_grad()
    loss = ((model(inp) - target) ** 2).mean()
    loss.backward()
    opt.step()
    return loss.item()


for _ in range(3):
    step()
times, cpu = [], []
for _ in range(20):
    t, c = time.perf_counter(), time.process_time()
    loss = step()
    times.append((time.perf_counter() - t) * 1e3)
    cpu.append((time.process_time() - c) * 1e3)
times.sort()
cpu.sort()
print(
    f"pytorch {torch.__version__} ({torch.get_num_threads()} threads): {B} images x {n} masked points: "
    f"median {times[len(times) // 2]:.1f} ms/step (min {times[0]:.1f}, max {times[-1]:.1f}), CPU {cpu[len(cpu) // 2]:.1f} ms/step, final loss {loss:.4f}"
)
