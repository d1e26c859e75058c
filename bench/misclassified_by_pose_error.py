"""How the latents' k-means(2) errors depend on each image's pose error (BENCHMARKS.md, "Heterogeneous ab initio").

    python bench/misclassified_by_pose_error.py z.pkl labels.pkl ind0.txt each0.txt ind1.txt each1.txt

ind{s}.txt: the indices of state s's particles; each{s}.txt: `drgnfly eval-poses --per-particle` for those
particles (each state aligned on its own). Needs numpy.
"""
import pickle
import sys

import numpy as np


def two_means(z, restarts=10, seed=0):
    rng = np.random.default_rng(seed)
    best = None
    for _ in range(restarts):
        centres = z[rng.choice(len(z), 2, replace=False)]
        for _ in range(50):
            label = np.argmin(((z[:, None, :] - centres[None]) ** 2).sum(-1), 1)
            centres = np.array([z[label == k].mean(0) if np.any(label == k) else centres[k] for k in (0, 1)])
        inertia = ((z - centres[label]) ** 2).sum()
        if best is None or inertia < best[0]:
            best = (inertia, label)
    return best[1]


def main():
    z = pickle.load(open(sys.argv[1], "rb"))
    z = np.asarray(z[0] if isinstance(z, tuple) else z)
    truth = np.asarray(pickle.load(open(sys.argv[2], "rb")))
    angle = np.zeros(len(truth))
    for ind, each in zip(sys.argv[3::2], sys.argv[4::2]):
        angle[np.loadtxt(ind, dtype=int)] = np.loadtxt(each, skiprows=1)[:, 0]
    label = two_means(z)
    wrong = label != truth if np.mean(label == truth) >= 0.5 else label == truth
    print(f"k-means accuracy {1 - wrong.mean():.4f}")
    for lo, hi in [(0, 5), (5, 10), (10, 20), (20, 60), (60, 181)]:
        m = (angle >= lo) & (angle < hi)
        print(f"pose error {lo}-{hi} deg: {m.sum()} images, misclassified {wrong[m].mean() if m.any() else 0:.3f}")


if __name__ == "__main__":
    main()
