//! UMAP's layout optimisation: SGD on the fuzzy cross-entropy with negative sampling.
//!
//! Per edge (i, j) of weight w the attractive gradient on y_i is
//! −2ab‖Δ‖^{2(b−1)} / (1 + a‖Δ‖^{2b}) · Δ with Δ = y_i − y_j; per negative sample k the repulsive one is
//! 2γb / ((0.001 + ‖Δ‖²)(1 + a‖Δ‖^{2b})) · Δ. Each component is clipped to ±4 and scaled by the learning
//! rate α = α₀(1 − epoch/n_epochs). Edge (i, j) is sampled every w_max/w epochs with
//! `negative_sample_rate` negatives per sample (umap-learn's `epochs_per_sample` schedule); edges with
//! w < w_max/n_epochs are dropped first, as in umap-learn.
//!
//! Parallel and deterministic: each epoch updates every point from the previous epoch's positions
//! (a synchronous, Jacobi-style step instead of umap-learn's racy in-place Hogwild updates). The graph is
//! symmetric, so where umap-learn moves both ends of a sampled edge, here each end applies the
//! attraction of its own copy of the edge twice. Negative samples are counter-based hashes of
//! (seed, epoch, edge, sample), so a seed gives the same layout on any number of threads.

use rayon::prelude::*;

use super::fuzzy::Graph;
use crate::knn::hash64;

/// SGD settings (see [`super::UmapParams`]).
pub(crate) struct LayoutParams {
    pub a: f32,
    pub b: f32,
    pub gamma: f32,
    pub learning_rate: f32,
    pub negative_sample_rate: usize,
    pub n_epochs: usize,
    pub seed: u64,
}

/// Rows per parallel block (fixed: the result must not depend on the thread count).
const BLOCK: usize = 1024;

#[inline]
fn clip(x: f32) -> f32 {
    x.clamp(-4.0, 4.0)
}

/// Optimise the N×2 embedding `y` in place.
pub(crate) fn optimize(graph: &Graph, y: &mut Vec<f32>, p: &LayoutParams) {
    let n = graph.n();
    if n == 0 || p.n_epochs == 0 {
        return;
    }
    let wmax = graph.weights.iter().copied().fold(0.0f32, f32::max);
    if wmax <= 0.0 {
        return;
    }
    let cutoff = wmax / p.n_epochs as f32;
    // epochs_per_sample = w_max / w; ∞ for dropped edges (never sampled).
    let eps: Vec<f32> =
        graph.weights.iter().map(|&w| if w >= cutoff { wmax / w } else { f32::INFINITY }).collect();
    let neg_rate = p.negative_sample_rate as f32;
    let mut next = eps.clone();
    let mut next_neg: Vec<f32> = eps.iter().map(|e| e / neg_rate).collect();
    // Split edge state by row blocks so each parallel task owns its rows' edges.
    let bounds: Vec<(usize, usize)> = (0..n).step_by(BLOCK).map(|r0| (r0, (r0 + BLOCK).min(n))).collect();
    let mut new_y = y.clone();
    for epoch in 0..p.n_epochs {
        let alpha = p.learning_rate * (1.0 - epoch as f32 / p.n_epochs as f32);
        let ep = epoch as f32;
        let epoch_salt = hash64(p.seed ^ hash64(epoch as u64));
        let old: &[f32] = y;
        let mut next_blocks = split_by_rows(&mut next, graph, &bounds);
        let mut neg_blocks = split_by_rows(&mut next_neg, graph, &bounds);
        new_y
            .par_chunks_mut(BLOCK * 2)
            .zip(next_blocks.par_iter_mut())
            .zip(neg_blocks.par_iter_mut())
            .zip(bounds.par_iter())
            .for_each(|(((out, nx), nn), &(r0, r1))| {
                let e0 = graph.indptr[r0];
                for i in r0..r1 {
                    let (yi0, yi1) = (old[2 * i], old[2 * i + 1]);
                    let (mut m0, mut m1) = (0.0f32, 0.0f32);
                    let row = graph.indptr[i]..graph.indptr[i + 1];
                    for ((e, &j), &eps_e) in row.clone().zip(&graph.indices[row.clone()]).zip(&eps[row]) {
                        let le = e - e0;
                        if nx[le] > ep {
                            continue;
                        }
                        let j = j as usize;
                        let (d0, d1) = (yi0 - old[2 * j], yi1 - old[2 * j + 1]);
                        let d2 = d0 * d0 + d1 * d1;
                        if d2 > 0.0 {
                            let pb = d2.powf(p.b);
                            let gc = -2.0 * p.a * p.b * (pb / d2) / (p.a * pb + 1.0);
                            // Twice: once as this edge's head, once as the reverse edge's tail.
                            m0 += 2.0 * clip(gc * d0) * alpha;
                            m1 += 2.0 * clip(gc * d1) * alpha;
                        }
                        nx[le] += eps_e;
                        let epsn = eps_e / neg_rate;
                        let n_neg = ((ep - nn[le]) / epsn).max(0.0) as usize;
                        for s in 0..n_neg {
                            let h = hash64(epoch_salt ^ ((e as u64) << 16 | s as u64));
                            let k = (h % n as u64) as usize;
                            if k == i {
                                continue;
                            }
                            let (d0, d1) = (yi0 - old[2 * k], yi1 - old[2 * k + 1]);
                            let d2 = d0 * d0 + d1 * d1;
                            if d2 > 0.0 {
                                let gc = 2.0 * p.gamma * p.b / ((0.001 + d2) * (p.a * d2.powf(p.b) + 1.0));
                                m0 += clip(gc * d0) * alpha;
                                m1 += clip(gc * d1) * alpha;
                            } else {
                                // Coincident with a non-neighbour: push apart by the clip value, as umap-learn.
                                m0 += 4.0 * alpha;
                                m1 += 4.0 * alpha;
                            }
                        }
                        nn[le] += n_neg as f32 * epsn;
                    }
                    out[2 * (i - r0)] = yi0 + m0;
                    out[2 * (i - r0) + 1] = yi1 + m1;
                }
            });
        std::mem::swap(y, &mut new_y);
    }
}

/// Split a per-edge array into the edge ranges of the row blocks `bounds`.
fn split_by_rows<'a>(v: &'a mut [f32], graph: &Graph, bounds: &[(usize, usize)]) -> Vec<&'a mut [f32]> {
    let mut out = Vec::with_capacity(bounds.len());
    let mut rest = v;
    for &(r0, r1) in bounds {
        let (head, tail) = rest.split_at_mut(graph.indptr[r1] - graph.indptr[r0]);
        out.push(head);
        rest = tail;
    }
    out
}
