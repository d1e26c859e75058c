//! UMAP's fuzzy simplicial set: per-point smooth kNN distances (ρ, σ), directed memberships, and the
//! fuzzy-union symmetrisation into a sparse graph.

use rayon::prelude::*;

use crate::knn::Knn;

/// A symmetric sparse graph in CSR form: row `i`'s edges are `indices/weights[indptr[i]..indptr[i+1]]`.
#[derive(Clone, Debug)]
pub(crate) struct Graph {
    pub indptr: Vec<usize>,
    pub indices: Vec<u32>,
    pub weights: Vec<f32>,
}

impl Graph {
    pub fn n(&self) -> usize {
        self.indptr.len() - 1
    }
}

/// ρ_i (distance to the nearest neighbour) and σ_i such that
/// Σ_j exp(−max(0, d_ij − ρ_i)/σ_i) = log₂(n_neighbors), found by bisection (64 steps, tolerance 1e-5).
///
/// `n_neighbors` counts the point itself, as umap-learn does (the stored kNN excludes it). σ is floored
/// at 1e-3 × the mean neighbour distance (of the point, or of all points when ρ = 0), as umap-learn's
/// `MIN_K_DIST_SCALE`, so duplicates do not give σ = 0.
pub(crate) fn smooth_knn_dist(knn: &Knn, n_neighbors: usize) -> (Vec<f32>, Vec<f32>) {
    let target = (n_neighbors as f64).log2();
    let n = knn.len();
    let global_mean = knn.dists.iter().map(|&d| d as f64).sum::<f64>() / knn.dists.len().max(1) as f64;
    let res: Vec<(f32, f32)> = (0..n)
        .into_par_iter()
        .map(|i| {
            let d = knn.neighbors(i).1;
            let rho = d.iter().copied().find(|&x| x > 0.0).unwrap_or(0.0) as f64;
            let (mut lo, mut hi, mut mid) = (0.0f64, f64::INFINITY, 1.0f64);
            for _ in 0..64 {
                let psum: f64 = d.iter().map(|&x| (x as f64 - rho).max(0.0)).map(|e| (-e / mid).exp()).sum();
                if (psum - target).abs() < 1e-5 {
                    break;
                }
                if psum > target {
                    hi = mid;
                    mid = (lo + hi) / 2.0;
                } else {
                    lo = mid;
                    mid = if hi.is_infinite() { mid * 2.0 } else { (lo + hi) / 2.0 };
                }
            }
            let mean_i = d.iter().map(|&x| x as f64).sum::<f64>() / d.len().max(1) as f64;
            let floor = 1e-3 * if rho > 0.0 { mean_i } else { global_mean };
            (rho as f32, mid.max(floor) as f32)
        })
        .collect();
    res.into_iter().unzip()
}

/// Fuzzy simplicial set of a kNN graph: directed memberships a_ij = exp(−max(0, d_ij − ρ_i)/σ_i),
/// symmetrised by the fuzzy union w_ij = a_ij + a_ji − a_ij·a_ji (umap-learn, `set_op_mix_ratio` 1).
pub(crate) fn fuzzy_simplicial_set(knn: &Knn, n_neighbors: usize) -> Graph {
    let (rho, sigma) = smooth_knn_dist(knn, n_neighbors);
    let (n, k) = (knn.len(), knn.k);
    // (row, col, a_row→col, a_col→row), one entry per direction of each directed kNN edge.
    let mut entries: Vec<(u32, u32, f32, f32)> = Vec::with_capacity(2 * n * k);
    for i in 0..n {
        let (nb, d) = knn.neighbors(i);
        for (&j, &dij) in nb.iter().zip(d) {
            let e = (dij - rho[i]).max(0.0);
            let a = if e <= 0.0 { 1.0 } else { (-e / sigma[i]).exp() };
            entries.push((i as u32, j, a, 0.0));
            entries.push((j, i as u32, 0.0, a));
        }
    }
    entries.par_sort_unstable_by_key(|e| (e.0, e.1));
    let mut indptr = vec![0usize; n + 1];
    let mut indices = Vec::with_capacity(entries.len() / 2 + n);
    let mut weights = Vec::with_capacity(entries.len() / 2 + n);
    let mut s = 0;
    while s < entries.len() {
        let (r, c) = (entries[s].0, entries[s].1);
        let (mut a, mut at) = (0.0f32, 0.0f32);
        while s < entries.len() && entries[s].0 == r && entries[s].1 == c {
            a += entries[s].2;
            at += entries[s].3;
            s += 1;
        }
        let w = a + at - a * at;
        if w > 0.0 {
            indices.push(c);
            weights.push(w);
            indptr[r as usize + 1] += 1;
        }
    }
    for i in 0..n {
        indptr[i + 1] += indptr[i];
    }
    Graph { indptr, indices, weights }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sigma_solves_the_log2_k_equation_and_union_is_symmetric() {
        // 4 points on a line, k = 2 others; n_neighbors = 3 → target log₂ 3.
        let knn = Knn {
            k: 2,
            indices: vec![1, 2, 0, 2, 1, 3, 2, 1],
            dists: vec![1.0, 3.0, 1.0, 2.0, 2.0, 3.0, 3.0, 5.0],
        };
        let (rho, sigma) = smooth_knn_dist(&knn, 3);
        assert_eq!(rho, vec![1.0, 1.0, 2.0, 3.0]);
        for i in 0..4 {
            let d = knn.neighbors(i).1;
            let s: f32 = d.iter().map(|&x| (-(x - rho[i]).max(0.0) / sigma[i]).exp()).sum();
            assert!((s - 3f32.log2()).abs() < 1e-4, "row {i}: {s}");
        }
        let g = fuzzy_simplicial_set(&knn, 3);
        let w = |i: usize, j: u32| {
            let r = g.indptr[i]..g.indptr[i + 1];
            g.indices[r.clone()].iter().position(|&x| x == j).map(|p| g.weights[r.start + p])
        };
        // 0↔1 are mutual nearest neighbours: membership 1 both ways → union 1.
        assert_eq!(w(0, 1), Some(1.0));
        for i in 0..4 {
            for p in g.indptr[i]..g.indptr[i + 1] {
                assert_eq!(w(g.indices[p] as usize, i as u32), Some(g.weights[p]), "asymmetric at {i}");
            }
        }
    }
}
