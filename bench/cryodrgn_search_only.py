"""Time and score cryoDRGN 4.3.1's pose search alone (PoseSearch.opt_theta_trans), no training.

Loads a decoder trained by `cryodrgn train_nn` (Hartley domain), prepares images and CTF exactly as
`cryodrgn abinit_homo_old` does, searches the first N images in batches, and writes the found poses
as a cryoDRGN pose.pkl (translations as box fractions) so `drgnfly eval-poses` can score them.

    python bench/cryodrgn_search_only.py PARTICLES CTF WEIGHTS OUT.pkl [-n N] [--l-start 12 --l-end 16]
"""
import argparse
import pickle
import time

import numpy as np
import torch
from cryodrgn import ctf, dataset
from cryodrgn.commands.abinit_homo_old import make_model
from cryodrgn.lattice import Lattice
from cryodrgn.pose_search import PoseSearch

p = argparse.ArgumentParser()
p.add_argument("particles")
p.add_argument("ctf")
p.add_argument("weights")
p.add_argument("out")
p.add_argument("-n", type=int, default=100)
p.add_argument("-b", type=int, default=16)
p.add_argument("--l-start", type=int, default=12)
p.add_argument("--l-end", type=int, default=32)
p.add_argument("--t-extent", type=float, default=10)
p.add_argument("--niter", type=int, default=4)
a = p.parse_args()

torch.manual_seed(0)
np.random.seed(0)
data = dataset.ImageDataset(mrcfile=a.particles, invert_data=True, window=True, window_r=0.85)
D = data.D
ctf_params = torch.tensor(ctf.load_ctf_for_training(D - 1, a.ctf))
margs = argparse.Namespace(activation="relu", layers=3, dim=256, domain="hartley",
                           pe_type="gaussian", pe_dim=None, feat_sigma=0.5)
model = make_model(margs, D)
model.load_state_dict(torch.load(a.weights, weights_only=False)["model_state_dict"])
model.eval()
lattice = Lattice(D, extent=0.5)
ps = PoseSearch(model, lattice, a.l_start, a.l_end, None, t_extent=a.t_extent, t_ngrid=7,
                niter=a.niter, nkeptposes=8, base_healpy=2)
n = min(a.n, data.N)
rots, trans = [], []
t0 = time.time()
for s in range(0, n, a.b):
    idx = np.arange(s, min(s + a.b, n))
    y = torch.stack([data[i]["y"] for i in idx])
    B = len(idx)
    c = ctf_params[idx]
    freqs = lattice.freqs2d.unsqueeze(0).expand(B, *lattice.freqs2d.shape) / c[:, 0].view(B, 1, 1)
    ctf_i = ctf.compute_ctf(freqs, *torch.split(c[:, 1:], 1, 1)).view(B, D, D)
    with torch.no_grad():
        r, t, _ = ps.opt_theta_trans(y, ctf_i=ctf_i)
    rots.append(r.numpy())
    trans.append(t.numpy())
    print(f"{s + B}/{n} images, {time.time() - t0:.1f} s", flush=True)
dt = time.time() - t0
print(f"search: {n} images in {dt:.1f} s = {n / dt:.2f} images/s")
with open(a.out, "wb") as f:
    pickle.dump((np.concatenate(rots), np.concatenate(trans) / (D - 1)), f)
