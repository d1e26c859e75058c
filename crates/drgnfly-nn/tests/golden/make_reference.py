"""Reference numbers for crates/drgnfly-nn/tests/golden.rs, computed by cryoDRGN itself.

Run from the repository root with cryoDRGN installed (CPU is enough):

    python crates/drgnfly-nn/tests/golden/make_reference.py /path/to/shared/data/cryodrgn

It prints Rust constants (paste them into tests/golden.rs) and writes tests/golden/ft_decoder.pt,
a small FTPositionalDecoder checkpoint (torch zip) used for the Fourier-decoder golden test.
"""

import sys
from pathlib import Path

import numpy as np
import torch

import cryodrgn
from cryodrgn import models
from cryodrgn.lattice import Lattice
from cryodrgn.models import FTPositionalDecoder, HetOnlyVAE

data = Path(sys.argv[1])
here = Path(__file__).resolve().parent
torch.set_printoptions(precision=10)


def rust(name, arr):
    flat = ", ".join(f"{v:.9e}" for v in np.asarray(arr, dtype=np.float64).ravel())
    print(f"const {name}: [f32; {np.asarray(arr).size}] = [{flat}];")


def identity_ihtn(x):
    # eval_volume ends with fft.ihtn_center(vol_f[:-1, :-1, :-1]); drgnfly returns that Hartley grid, so
    # capture it by making the inverse transform the identity.
    return x


models.fft.ihtn_center = identity_ihtn
print(f"// cryodrgn {cryodrgn.__version__}, torch {torch.__version__}, numpy {np.__version__}")

# ---- 1. het_weights.pkl: HetOnlyVAE, D_lat 65, zdim 8, hartley, gaussian PE (pe_dim 8), 8-wide layers.
model, lat = HetOnlyVAE.load(str(data / "het_config.yaml"), str(data / "het_weights.pkl"), device="cpu")
model.eval()

# Decoder at a few coordinates for two latents: (B=2, N=5, 3) + z (2, 8).
coords = torch.tensor(
    [[0.0, 0.0, 0.0], [0.1, -0.2, 0.3], [-0.5, 0.25, 0.0], [0.375, 0.4, -0.15], [0.0, -0.03125, 0.5]],
    dtype=torch.float32,
)
z = torch.tensor(
    [[0.5, -1.0, 0.25, 2.0, -0.75, 0.0, 1.5, -0.3], [-1.2, 0.8, 0.0, -0.4, 0.9, 1.1, -2.0, 0.6]],
    dtype=torch.float32,
)
with torch.no_grad():
    het_dec = model.decode(coords.expand(2, -1, -1), z)  # (2, 5, 1)
rust("HET_DECODER", het_dec[..., 0])

# Encoder on two synthetic masked images (3208 pixels): x_j = 0.5 sin(0.37 j + φ_b).
j = torch.arange(3208, dtype=torch.float32)
imgs = torch.stack([0.5 * torch.sin(0.37 * j), 0.5 * torch.sin(0.37 * j + 1.0) + 0.1 * torch.cos(0.05 * j)])
with torch.no_grad():
    out = model.encoder(imgs)
rust("HET_MU", out[:, :8])
rust("HET_LOGVAR", out[:, 8:])

# Volume (Hartley grid) for the first latent.
with torch.no_grad():
    vol = model.decoder.eval_volume(lat.coords, lat.D, lat.extent, (0.0, 94.4266), z[0].numpy())
vol = np.asarray(vol)
probe = [(32, 32, 32), (0, 0, 0), (10, 20, 30), (40, 33, 2), (63, 1, 47), (31, 32, 33)]
rust("HET_VOLUME_PROBE", [vol[p] for p in probe])
print(f"// HET_VOLUME_PROBE indices [z][y][x]: {probe}")
print(f"const HET_VOLUME_SUM: f64 = {vol.astype(np.float64).sum():.9e};")
print(f"const HET_VOLUME_SUMSQ: f64 = {(vol.astype(np.float64) ** 2).sum():.9e};")

# ---- 2. A small FTPositionalDecoder (Fourier domain) from a fixed seed, saved as a torch checkpoint.
torch.manual_seed(1234)
ft = FTPositionalDecoder(3 + 2, 17, 2, 16, torch.nn.ReLU, enc_type="gaussian", enc_dim=4, feat_sigma=0.5)
ft.eval()
torch.save({"epoch": 0, "model_state_dict": ft.state_dict()}, here / "ft_decoder.pt")

# A centrosymmetric masked slice (disc radius 8 of the 17-lattice, DC excluded) rotated by R = Rz(0.7) Rx(0.4).
lat17 = Lattice(17, extent=0.5)
mask = lat17.get_circular_mask(8)
a, b = 0.7, 0.4
rz = torch.tensor([[np.cos(a), -np.sin(a), 0], [np.sin(a), np.cos(a), 0], [0, 0, 1]], dtype=torch.float32)
rx = torch.tensor([[1, 0, 0], [0, np.cos(b), -np.sin(b)], [0, np.sin(b), np.cos(b)]], dtype=torch.float32)
rot = rz @ rx
slice_coords = lat17.coords[mask] @ rot  # (N, 3), row vectors times R as in cryoDRGN training
zf = torch.tensor([[0.3, -0.6]], dtype=torch.float32)
with torch.no_grad():
    lattice_in = torch.cat([slice_coords[None], zf[:, None, :].expand(1, slice_coords.shape[0], 2)], -1)
    ft_slice = ft(lattice_in)[0]  # (N,), Hartley values via the half evaluation
print(f"// FT slice: {slice_coords.shape[0]} points; rotation R = Rz(0.7) Rx(0.4) (float32)")
rust("FT_ROT", rot)
idx = [0, 1, 50, 100, 109, 110, 150, slice_coords.shape[0] - 1]
rust("FT_SLICE_PROBE", ft_slice[idx])
print(f"// FT_SLICE_PROBE point indices: {idx}")
print(f"const FT_SLICE_SUMSQ: f64 = {(ft_slice.double() ** 2).sum().item():.9e};")

with torch.no_grad():
    fvol = np.asarray(ft.eval_volume(lat17.coords, 17, 0.5, (0.5, 2.0), zf[0].numpy()))
fprobe = [(8, 8, 8), (0, 0, 0), (8, 3, 12), (2, 7, 9), (12, 15, 4), (8, 12, 4)]
rust("FT_VOLUME_PROBE", [fvol[p] for p in fprobe])
print(f"// FT_VOLUME_PROBE indices [z][y][x]: {fprobe}")
print(f"const FT_VOLUME_SUM: f64 = {fvol.astype(np.float64).sum():.9e};")
print(f"const FT_VOLUME_SUMSQ: f64 = {(fvol.astype(np.float64) ** 2).sum():.9e};")
