"""The rotation that best superposes two maps by density correlation, at full resolution and low-passed.

    python bench/superpose_maps.py A.mrc B.mrc        # needs numpy and scipy

For two conformations of one molecule there is no single right relative frame: this shows how the best
superposition depends on the resolution it is judged at (BENCHMARKS.md, "Heterogeneous ab initio").
"""
import sys

import numpy as np
from scipy import ndimage, optimize
from scipy.spatial.transform import Rotation


def read_mrc(path):
    raw = open(path, "rb").read()
    header = np.frombuffer(raw[:1024], dtype=np.int32)
    nx, ny, nz = header[:3]
    extended = header[23]
    data = np.frombuffer(raw[1024 + extended:], dtype=np.float32)[: nx * ny * nz]
    return data.reshape(nz, ny, nx).astype(np.float64)


def best_superposition(a, b, starts=5, seed=0):
    """(correlation, rotation vector, shift in voxels) of b moved onto a, best of `starts` Powell searches."""
    centre = (np.array(a.shape) - 1) / 2

    def cost(p):
        r = Rotation.from_rotvec(p[:3]).as_matrix()
        moved = ndimage.affine_transform(b, r, offset=centre - r @ centre + p[3:], order=1)
        return -np.sum(a * moved) / np.sqrt(np.sum(moved * moved) * np.sum(a * a))

    rng = np.random.default_rng(seed)
    tries = [np.zeros(6)] + [np.r_[rng.normal(0, 0.2, 3), 0, 0, 0] for _ in range(starts - 1)]
    best = min((optimize.minimize(cost, x, method="Powell", options={"xtol": 1e-4, "ftol": 1e-7}) for x in tries),
               key=lambda r: r.fun)
    return -best.fun, best.x[:3], best.x[3:]


def main():
    a, b = read_mrc(sys.argv[1]), read_mrc(sys.argv[2])
    for sigma in (0.0, 1.5, 3.0):
        fa = ndimage.gaussian_filter(a, sigma) if sigma else a
        fb = ndimage.gaussian_filter(b, sigma) if sigma else b
        corr, rotvec, shift = best_superposition(fa, fb)
        print(f"low-pass sigma {sigma} px: correlation {corr:.4f}, rotation {np.degrees(np.linalg.norm(rotvec)):.2f} deg, "
              f"shift {np.round(shift, 2)} px")


if __name__ == "__main__":
    main()
