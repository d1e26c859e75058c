#!/usr/bin/env python
"""Load a `drgnfly analyze` output the way cryoDRGN's notebook templates do, and check it.

Run with a Python that has cryoDRGN installed (tested with cryodrgn 4.3.1), e.g.

    /work/venv-cryodrgn/bin/python scripts/check_cryodrgn_notebooks.py WORKDIR EPOCH [--kmeans K]

The loading cells of cryodrgn/templates/cryoDRGN_{viz,filtering,figures,ET_viz}_template.ipynb are
replayed on WORKDIR (the training directory holding z.EPOCH.pkl, config.yaml, run.log and
analyze.EPOCH/), and what they load is compared with what drgnfly wrote:

- z.EPOCH.pkl read as two consecutive pickles (z_mu, z_logvar) and with `utils.load_pkl`;
- analyze.EPOCH/umap.pkl (zdim > 2): `utils.load_pkl`, N×2 float;
- kmeansK/labels.pkl: `utils.load_pkl`, N integers in 0…K−1, every class used;
- kmeansK/centers.txt: `np.loadtxt`, K×zdim, rows equal to z rows; `analysis.get_nearest_point(z,
  centers)` gives back kmeansK/centers_ind.txt (read with `np.loadtxt(dtype=int)`), and each centre
  particle carries its own class;
- the class numbering is cryoDRGN's: seaborn's clustermap (average-linkage dendrogram) of the
  centres, the reordering `analysis.cluster_kmeans` applies, leaves it unchanged;
- pcN/z_values.txt equals `analysis.get_pc_traj` between the 5th and 95th percentiles of
  `analysis.run_pca(z)` (as `cryodrgn analyze` computes it; the PC sign may differ, which reverses the
  path);
- `cryodrgn.config.load(config.yaml)` and the keys the templates read (`dataset_args.ind/ctf/poses/
  particles/datadir/do_pose_sgd`, `model_args.encode_mode`);
- `analysis.parse_loss(run.log)`: one finite loss per epoch up to EPOCH (NaN epochs excepted);
- `analysis.load_dataframe`, `plot_by_cluster`, `get_ind_for_cluster`, `_get_chimerax_colors` run;
- the volumes kmeansK/vol_*.mrc and pcN/vol_*.mrc parse with `cryodrgn.mrcfile.parse_mrc`.

Prints one line per check (ok / FAIL / note) and exits 1 if any check failed. Not part of CI (it
needs cryoDRGN's environment).
"""

import argparse
import glob
import os
import pickle
import sys

import numpy as np

import matplotlib

matplotlib.use("Agg")

from cryodrgn import analysis, utils  # noqa: E402
import cryodrgn.config  # noqa: E402
from cryodrgn.mrcfile import parse_mrc  # noqa: E402

failures = []


def check(ok, what, detail=""):
    print(f"{'ok  ' if ok else 'FAIL'} {what}" + (f": {detail}" if detail else ""))
    if not ok:
        failures.append(what)
    return ok


def note(what):
    print(f"note {what}")


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("workdir")
    ap.add_argument("epoch", type=int)
    ap.add_argument("--kmeans", type=int, help="K of the kmeansK directory (default: the only one)")
    args = ap.parse_args()
    WORKDIR, EPOCH = args.workdir, args.epoch
    adir = f"{WORKDIR}/analyze.{EPOCH}"

    # z, as the viz/filtering/ET templates read it (two pickles) and as the figures template does.
    with open(f"{WORKDIR}/z.{EPOCH}.pkl", "rb") as f:
        z = pickle.load(f)
        z_logvar = pickle.load(f)
    check(isinstance(z, np.ndarray) and z.ndim == 2, "z.pkl: z_mu is an N×zdim array", f"{type(z)} {getattr(z, 'shape', '')}")
    check(z_logvar.shape == z.shape, "z.pkl: z_logvar follows z_mu with the same shape", str(z_logvar.shape))
    check(z.dtype == np.float32, "z.pkl: float32", str(z.dtype))
    check(np.array_equal(utils.load_pkl(f"{WORKDIR}/z.{EPOCH}.pkl"), z), "z.pkl: utils.load_pkl gives z_mu")
    n, zdim = z.shape

    # UMAP.
    if zdim > 2:
        umap = utils.load_pkl(f"{adir}/umap.pkl")
        check(isinstance(umap, np.ndarray) and umap.shape == (n, 2), "umap.pkl: N×2 array", str(getattr(umap, "shape", type(umap))))
        check(umap.dtype.kind == "f" and bool(np.isfinite(umap).all()), "umap.pkl: finite floats", str(umap.dtype))
    else:
        umap = None
        note(f"zdim {zdim}: no UMAP (as cryoDRGN)")

    # k-means.
    kdirs = sorted(glob.glob(f"{adir}/kmeans*"))
    K = args.kmeans
    if K is None:
        if len(kdirs) != 1:
            sys.exit(f"{adir}: {len(kdirs)} kmeans directories; pass --kmeans K")
        K = int(os.path.basename(kdirs[0])[len("kmeans"):])
    kdir = f"{adir}/kmeans{K}"
    kmeans_labels = utils.load_pkl(f"{kdir}/labels.pkl")
    check(isinstance(kmeans_labels, np.ndarray) and kmeans_labels.shape == (n,), "labels.pkl: N labels", str(getattr(kmeans_labels, "shape", "")))
    check(kmeans_labels.dtype.kind in "iu", "labels.pkl: integers", str(kmeans_labels.dtype))
    check(set(kmeans_labels.tolist()) == set(range(K)), f"labels.pkl: classes 0…{K - 1}, all used", f"K in the notebooks = len(set(labels)) = {len(set(kmeans_labels.tolist()))}")
    kmeans_centers = np.loadtxt(f"{kdir}/centers.txt", ndmin=2)
    if zdim == 1:
        note("zdim 1: cryoDRGN writes no k-means; plain np.loadtxt(centers.txt) gives a 1D array there")
    check(kmeans_centers.shape == (K, zdim), "centers.txt: K×zdim", str(kmeans_centers.shape))
    centers_on_data, centers_ind = analysis.get_nearest_point(z, kmeans_centers)
    ind_txt = np.loadtxt(f"{kdir}/centers_ind.txt", dtype=int).reshape(-1)
    check(np.array_equal(centers_ind, ind_txt), "get_nearest_point(z, centers) == centers_ind.txt", f"{centers_ind.tolist()} vs {ind_txt.tolist()}")
    err = float(np.abs(z[ind_txt] - kmeans_centers).max())
    check(err <= 1e-6 * max(1.0, float(np.abs(z).max())), "centers.txt rows are the z rows of centers_ind.txt", f"max |Δ| {err:.2e}")
    # Not an invariant (in cryoDRGN either): labels come from the Lloyd centres, and the particle nearest
    # a centre that sits between clusters may belong to a neighbouring class.
    own = int((kmeans_labels[ind_txt] == np.arange(K)).sum())
    note(f"{own} of {K} centre particles are in their own class")

    # Class order: what cluster_kmeans(reorder=True) would do to these centres.
    if K >= 2:
        import seaborn as sns
        from scipy.cluster.hierarchy import leaves_list, linkage

        # (cryoDRGN calls clustermap(centers); a single column has no column dendrogram.)
        g = sns.clustermap(kmeans_centers.astype(np.float32), col_cluster=zdim > 1)
        reordered = list(g.dendrogram_row.reordered_ind)
        leaves = leaves_list(linkage(kmeans_centers.astype(np.float32), "average")).tolist()
        check(reordered == list(range(K)), "classes are in seaborn clustermap (dendrogram) order", str(reordered))
        check(leaves == list(range(K)), "scipy leaves_list(linkage(centers, 'average')) is the identity", str(leaves))

    # PCA and PC traversals as `cryodrgn analyze` makes them.
    if zdim >= 2:
        pc, pca = analysis.run_pca(z)
        for d in range(1, zdim + 1):
            path = f"{adir}/pc{d}/z_values.txt"
            if not os.path.exists(path):
                continue
            ours = np.loadtxt(path, ndmin=2)
            start, end = np.percentile(pc[:, d - 1], (5, 95))
            theirs = analysis.get_pc_traj(pca, zdim, len(ours), d, start, end)
            scale = max(1.0, float(np.abs(theirs).max()))
            e_same = float(np.abs(ours - theirs).max()) / scale
            e_flip = float(np.abs(ours[::-1] - theirs).max()) / scale
            check(min(e_same, e_flip) < 1e-3, f"pc{d}/z_values.txt == get_pc_traj (5th–95th percentile)", f"rel. max |Δ| {min(e_same, e_flip):.1e}{' (PC sign flipped)' if e_flip < e_same else ''}")
    else:
        pc = np.column_stack([z[:, 0], np.zeros(n)])
        note("zdim 1: PCA skipped, as cryoDRGN")

    # Config, as the templates load and use it.
    config = cryodrgn.config.load(f"{WORKDIR}/config.yaml")
    ds = config.get("dataset_args", {})
    # config.yaml is the training command's (train-vae), not analyze's.
    for key in ["ind", "ctf", "particles", "datadir"]:
        check(key in ds, f"config.yaml: dataset_args.{key} (read by the templates)", repr(ds.get(key, "missing")))
    if "poses" in ds:
        # viz/filtering: `if "poses" not in dataset_args or dataset_args["do_pose_sgd"]` → KeyError without it.
        check("do_pose_sgd" in ds, "config.yaml: dataset_args.do_pose_sgd (read next to poses)", repr(ds.get("do_pose_sgd", "missing")))
    else:
        note("config.yaml: no dataset_args.poses; the templates would load pose.EPOCH.pkl instead")
    check("encode_mode" in config.get("model_args", {}), "config.yaml: model_args.encode_mode (ET template)")

    # Learning curve.
    if os.path.exists(f"{WORKDIR}/run.log"):
        loss = analysis.parse_loss(f"{WORKDIR}/run.log")
        with open(f"{WORKDIR}/run.log") as f:
            epochs_logged = sum("=====> Epoch" in line for line in f)
        check(len(loss) >= 1 and bool(np.isfinite(loss).all()), "run.log: parse_loss gives finite losses", f"{len(loss)} values")
        if len(loss) != epochs_logged:
            note(f"run.log: parse_loss found {len(loss)} of {epochs_logged} epoch lines (NaN losses are not matched by its regex)")
    else:
        note("no run.log")

    # The notebooks' plotting and selection helpers on what we wrote.
    df = analysis.load_dataframe(z=z, pc=pc, labels=kmeans_labels, umap=umap)
    check(len(df) == n and "labels" in df.columns, "analysis.load_dataframe", f"columns {list(df.columns)}")
    analysis.plot_by_cluster(pc[:, 0], pc[:, 1], K, kmeans_labels, centers_ind=centers_ind, annotate=True)
    if umap is not None:
        analysis.plot_by_cluster(umap[:, 0], umap[:, 1], K, kmeans_labels, centers_ind=centers_ind, annotate=True)
    check(True, "analysis.plot_by_cluster on PCA and UMAP")
    sel = analysis.get_ind_for_cluster(kmeans_labels, [0, K - 1])
    check(len(sel) == int(np.isin(kmeans_labels, [0, K - 1]).sum()), "analysis.get_ind_for_cluster")
    check(len(analysis._get_chimerax_colors(K)) == K, "analysis._get_chimerax_colors(K)")

    # Volumes.
    vols = sorted(glob.glob(f"{kdir}/vol_*.mrc")) + sorted(glob.glob(f"{adir}/pc*/vol_*.mrc"))
    if vols:
        check(len(glob.glob(f"{kdir}/vol_*.mrc")) == K, f"kmeans{K}: one vol_NNN.mrc per class")
        shapes = set()
        for v in vols:
            data, header = parse_mrc(v)
            shapes.add(data.shape)
            if not np.isfinite(data).all():
                check(False, f"{v}: finite values")
        check(len(shapes) == 1, "volumes parse with cryodrgn.mrcfile.parse_mrc, one box size", f"{len(vols)} maps, {shapes}, apix {header.apix}")
    else:
        note("no volumes written")

    print(f"{len(failures)} failure(s)" + (": " + "; ".join(failures) if failures else ""))
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main())
