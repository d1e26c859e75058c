//! k-means clustering of latents (cryoDRGN `analyze`: K = 20, `random_state` 0, `max_iter` 10), with
//! centres snapped to the nearest particle so that each centre is a real, on-data latent.
//!
//! - Initialisation: greedy k-means++ (as sklearn): each new centre is the best of `2 + ⌊ln k⌋`
//!   candidates drawn with probability ∝ D² (squared distance to the nearest chosen centre). When all
//!   D² are zero (fewer distinct points than k) candidates are drawn uniformly, so centres may coincide.
//! - Lloyd iterations: assignment and centre sums run in parallel over fixed chunks of rows whose
//!   partial sums are combined in chunk order, so a seed gives the same result on any number of threads.
//! - Empty clusters: the centre moves to the particle farthest from its current centre (as sklearn).
//! - Stops when the total squared centre shift is ≤ `tol` × mean per-dimension variance, or after
//!   `max_iter` iterations. `n_init` restarts (seeds derived from `seed`) keep the lowest inertia.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::latents::{sq_dist, Latents};

/// Rows per parallel chunk; fixed for thread-count-independent results.
const CHUNK: usize = 4096;

/// k-means settings. `Default` is cryoDRGN's `analyze` choice (K = 20, 10 iterations).
#[derive(Clone, Debug)]
pub struct KMeansParams {
    /// Number of clusters (`--ksample`).
    pub k: usize,
    /// Lloyd iterations per run.
    pub max_iter: usize,
    /// Independent k-means++ restarts; the lowest inertia wins.
    pub n_init: usize,
    /// Relative tolerance on the centre shift (sklearn's `tol`).
    pub tol: f64,
    /// Seed for the initialisations.
    pub seed: u64,
}

impl Default for KMeansParams {
    fn default() -> Self {
        Self { k: 20, max_iter: 10, n_init: 1, tol: 1e-4, seed: 0 }
    }
}

/// A k-means result.
#[derive(Clone, Debug, serde::Serialize)]
pub struct KMeans {
    /// Latent dimension.
    pub zdim: usize,
    /// Cluster of each particle (length N), in `0..k`.
    pub labels: Vec<u32>,
    /// Centres snapped to particles: k×zdim row-major, `centers[c] = z[center_indices[c]]`.
    pub centers: Vec<f32>,
    /// Particle index nearest to each Lloyd centre (`centers_ind.txt`).
    pub center_indices: Vec<usize>,
    /// Sum of squared distances of particles to their (un-snapped) Lloyd centre.
    pub inertia: f64,
    /// Lloyd iterations run in the winning restart.
    pub n_iter: usize,
}

/// Cluster latents with k-means.
///
/// Errors: [`Error::Param`] for `k == 0`, `n_init == 0` or `max_iter == 0`; [`Error::TooFew`] when
/// N < k. Never loops: at most `n_init × max_iter` Lloyd iterations.
pub fn kmeans(z: Latents<'_>, params: &KMeansParams) -> Result<KMeans> {
    for (name, v) in [("--ksample", params.k), ("n_init", params.n_init), ("max_iter", params.max_iter)] {
        if v == 0 {
            return Err(Error::Param { name, value: "0".into(), why: "must be at least 1".into() });
        }
    }
    if z.len() < params.k {
        return Err(Error::TooFew {
            what: format!("k-means with k = {}", params.k),
            needed: params.k,
            got: z.len(),
            hint: "Lower --ksample",
        });
    }
    let d = z.zdim();
    let mean_var = mean_variance(z);
    let run = |r: usize| {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        rng.set_stream(r as u64);
        let init = kmeanspp(z, params.k, &mut rng);
        lloyd(z, init, params.max_iter, params.tol * mean_var)
    };
    let (mut centers, mut labels, mut inertia, mut n_iter) = run(0);
    for r in 1..params.n_init {
        let candidate = run(r);
        if candidate.2 < inertia {
            (centers, labels, inertia, n_iter) = candidate;
        }
    }
    let center_indices: Vec<usize> = centers.chunks_exact(d).map(|c| nearest_particle(z, c)).collect();
    let snapped = center_indices.iter().flat_map(|&i| z.row(i).iter().copied()).collect();
    Ok(KMeans { zdim: d, labels, centers: snapped, center_indices, inertia, n_iter })
}

impl KMeans {
    /// Renumber the classes in cryoDRGN's order: the leaf order of the average-linkage dendrogram of
    /// the snapped centres ([`crate::hierarchy::dendrogram_order`], seaborn's `clustermap`), so that
    /// similar classes get neighbouring numbers. New class `c` is old class `order[c]`; labels,
    /// centres and centre indices move together. Above [`crate::hierarchy::MAX_POINTS`] classes the
    /// numbering is left as it is.
    pub fn dendrogram_ordered(self) -> KMeans {
        let order = crate::hierarchy::dendrogram_order(&self.centers, self.zdim);
        self.renumbered(&order)
    }

    /// Renumber the classes so that new class `c` is old class `order[c]`. `order` must be a
    /// permutation of `0..k`; anything else leaves the result unchanged.
    pub fn renumbered(self, order: &[usize]) -> KMeans {
        let k = self.center_indices.len();
        let mut new_of_old = vec![usize::MAX; k];
        for (new, &old) in order.iter().enumerate() {
            match new_of_old.get_mut(old) {
                Some(slot) if *slot == usize::MAX => *slot = new,
                _ => return self,
            }
        }
        if order.len() != k {
            return self;
        }
        let d = self.zdim;
        let centers =
            order.iter().flat_map(|&old| self.centers[old * d..(old + 1) * d].iter().copied()).collect();
        let center_indices = order.iter().map(|&old| self.center_indices[old]).collect();
        let labels =
            self.labels.iter().map(|&l| new_of_old.get(l as usize).map_or(l, |&n| n as u32)).collect();
        KMeans { labels, centers, center_indices, ..self }
    }
}

/// Index of the particle nearest to `point` (lowest index on ties), as cryoDRGN's `get_nearest_point`.
///
/// # Panics
/// If `z` is empty or `point.len() != zdim`.
pub fn nearest_particle(z: Latents<'_>, point: &[f64]) -> usize {
    assert_eq!(point.len(), z.zdim(), "nearest_particle: point has the wrong dimension");
    assert!(!z.is_empty(), "nearest_particle: no particles");
    let p: Vec<f32> = point.iter().map(|&x| x as f32).collect();
    let best = z
        .as_slice()
        .par_chunks(CHUNK * z.zdim())
        .enumerate()
        .map(|(ci, chunk)| {
            chunk.chunks_exact(z.zdim()).enumerate().fold((f32::INFINITY, usize::MAX), |b, (i, row)| {
                let dist = sq_dist(row, &p);
                if dist < b.0 {
                    (dist, ci * CHUNK + i)
                } else {
                    b
                }
            })
        })
        .collect::<Vec<_>>();
    best.into_iter().fold((f32::INFINITY, 0), |b, x| if x.0 < b.0 { x } else { b }).1
}

/// Mean over dimensions of the per-dimension variance (sklearn scales `tol` by this).
fn mean_variance(z: Latents<'_>) -> f64 {
    let (n, d) = (z.len() as f64, z.zdim());
    let mut s = vec![0.0f64; d];
    let mut s2 = vec![0.0f64; d];
    for row in z.as_slice().chunks_exact(d) {
        for j in 0..d {
            s[j] += row[j] as f64;
            s2[j] += (row[j] as f64).powi(2);
        }
    }
    (0..d).map(|j| (s2[j] / n - (s[j] / n).powi(2)).max(0.0)).sum::<f64>() / d as f64
}

/// Greedy k-means++: returns k×zdim centres (f64).
fn kmeanspp(z: Latents<'_>, k: usize, rng: &mut ChaCha8Rng) -> Vec<f64> {
    let (n, d) = (z.len(), z.zdim());
    let trials = 2 + (k as f64).ln().floor() as usize;
    let mut centers: Vec<f64> = Vec::with_capacity(k * d);
    let first = rng.random_range(0..n);
    centers.extend(z.row(first).iter().map(|&x| x as f64));
    let mut closest = sq_dist_to(z, z.row(first));
    for _ in 1..k {
        let potential: f64 = chunk_sum(&closest);
        let mut best: Option<(f64, Vec<f32>, usize)> = None;
        for _ in 0..trials {
            let cand = sample_d2(&closest, potential, rng);
            let dcand = sq_dist_to(z, z.row(cand));
            let merged: Vec<f32> = closest.par_iter().zip(&dcand).map(|(&a, &b)| a.min(b)).collect();
            let pot = chunk_sum(&merged);
            if best.as_ref().is_none_or(|b| pot < b.0) {
                best = Some((pot, merged, cand));
            }
        }
        if let Some((_, merged, cand)) = best {
            closest = merged;
            centers.extend(z.row(cand).iter().map(|&x| x as f64));
        }
    }
    centers
}

/// Draw an index with probability ∝ `weights` (uniformly when all are zero).
fn sample_d2(weights: &[f32], total: f64, rng: &mut ChaCha8Rng) -> usize {
    if total <= 0.0 {
        return rng.random_range(0..weights.len());
    }
    let target = rng.random::<f64>() * total;
    let mut acc = 0.0f64;
    for (i, &w) in weights.iter().enumerate() {
        acc += w as f64;
        if acc > target {
            return i;
        }
    }
    // Rounding left `target` beyond the running sum: take the last non-zero weight.
    weights.iter().rposition(|&w| w > 0.0).unwrap_or(0)
}

fn sq_dist_to(z: Latents<'_>, p: &[f32]) -> Vec<f32> {
    z.as_slice().par_chunks(z.zdim()).map(|row| sq_dist(row, p)).collect()
}

/// Sum of f32 values in f64 over fixed chunks, in chunk order.
fn chunk_sum(v: &[f32]) -> f64 {
    let parts: Vec<f64> = v.par_chunks(CHUNK).map(|c| c.iter().map(|&x| x as f64).sum()).collect();
    parts.iter().sum()
}

/// Nearest centre of `row` and its squared distance (lowest index on ties).
fn assign(row: &[f32], centers: &[f32], d: usize) -> (u32, f32) {
    centers.chunks_exact(d).enumerate().fold((0, f32::INFINITY), |b, (c, cen)| {
        let dist = sq_dist(row, cen);
        if dist < b.1 {
            (c as u32, dist)
        } else {
            b
        }
    })
}

/// Lloyd iterations from `init`; returns (centres, labels, inertia, iterations).
fn lloyd(z: Latents<'_>, init: Vec<f64>, max_iter: usize, tol: f64) -> (Vec<f64>, Vec<u32>, f64, usize) {
    let d = z.zdim();
    let k = init.len() / d;
    let mut centers = init;
    let mut labels = vec![0u32; z.len()];
    let mut dists = vec![0.0f32; z.len()];
    let mut n_iter = 0;
    for _ in 0..max_iter {
        n_iter += 1;
        let c32: Vec<f32> = centers.iter().map(|&c| c as f32).collect();
        // Parallel assignment + per-chunk sums (k×d sums then k counts), combined in order.
        let partials: Vec<Vec<f64>> = z
            .as_slice()
            .par_chunks(CHUNK * d)
            .zip(labels.par_chunks_mut(CHUNK))
            .zip(dists.par_chunks_mut(CHUNK))
            .map(|((rows, lab), dis)| {
                let mut acc = vec![0.0f64; k * d + k];
                for ((row, l), dd) in rows.chunks_exact(d).zip(lab).zip(dis) {
                    let (c, dist) = assign(row, &c32, d);
                    *l = c;
                    *dd = dist;
                    let c = c as usize;
                    acc[c * d..(c + 1) * d].iter_mut().zip(row).for_each(|(a, &x)| *a += x as f64);
                    acc[k * d + c] += 1.0;
                }
                acc
            })
            .collect();
        let mut acc = vec![0.0f64; k * d + k];
        for p in partials {
            acc.iter_mut().zip(p).for_each(|(a, x)| *a += x);
        }
        let mut new = centers.clone();
        let mut taken: Vec<usize> = Vec::new();
        for c in 0..k {
            let count = acc[k * d + c];
            if count > 0.0 {
                for j in 0..d {
                    new[c * d + j] = acc[c * d + j] / count;
                }
            } else {
                // Empty cluster: relocate to the particle farthest from its centre not used yet.
                let far = (0..z.len())
                    .filter(|i| !taken.contains(i))
                    .fold(None, |b: Option<usize>, i| match b {
                        Some(bi) if dists[bi] >= dists[i] => Some(bi),
                        _ => Some(i),
                    })
                    .unwrap_or(0);
                taken.push(far);
                dists[far] = 0.0;
                new[c * d..(c + 1) * d].iter_mut().zip(z.row(far)).for_each(|(a, &x)| *a = x as f64);
            }
        }
        let shift: f64 = centers.iter().zip(&new).map(|(a, b)| (a - b).powi(2)).sum();
        centers = new;
        if shift <= tol {
            break;
        }
    }
    // Final assignment against the final centres, so labels and inertia describe them.
    let c32: Vec<f32> = centers.iter().map(|&c| c as f32).collect();
    let inertia_parts: Vec<f64> = z
        .as_slice()
        .par_chunks(CHUNK * d)
        .zip(labels.par_chunks_mut(CHUNK))
        .map(|(rows, lab)| {
            let mut s = 0.0f64;
            for (row, l) in rows.chunks_exact(d).zip(lab) {
                let (c, dist) = assign(row, &c32, d);
                *l = c;
                s += dist as f64;
            }
            s
        })
        .collect();
    (centers, labels, inertia_parts.iter().sum(), n_iter)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    /// `per` points around each of `centres` (σ = 0.1), labels in blocks.
    pub(crate) fn blobs(centres: &[&[f32]], per: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 0.1).unwrap();
        let mut z = Vec::new();
        let mut labels = Vec::new();
        for (c, centre) in centres.iter().enumerate() {
            for _ in 0..per {
                z.extend(centre.iter().map(|&m| m + normal.sample(&mut rng)));
                labels.push(c as u32);
            }
        }
        (z, labels)
    }

    #[test]
    fn recovers_blobs_and_snaps_to_particles() {
        let (z, truth) = blobs(&[&[0.0, 0.0], &[5.0, 0.0], &[0.0, 5.0]], 100, 1);
        let l = Latents::new(&z, 2).unwrap();
        let km = kmeans(l, &KMeansParams { k: 3, max_iter: 50, n_init: 3, ..Default::default() }).unwrap();
        let acc = crate::metrics::best_match_accuracy(&km.labels, &truth).unwrap();
        assert_eq!(acc.accuracy, 1.0);
        for (c, &i) in km.center_indices.iter().enumerate() {
            assert_eq!(&km.centers[c * 2..c * 2 + 2], l.row(i));
            assert_eq!(km.labels[i], c as u32, "a snapped centre belongs to its own cluster");
        }
        // Inertia ≈ N·d·σ² = 300·2·0.01.
        assert!((km.inertia - 6.0).abs() < 1.5, "inertia {}", km.inertia);
    }

    /// Centres of `hierarchy::tests` (scipy leaves `[5, 7, 0, 2, 1, 4, 3, 6]`): class numbers follow
    /// the dendrogram, and labels, centres and centre indices move together.
    #[test]
    fn dendrogram_order_renumbers_consistently() {
        let centers: Vec<f32> = vec![
            0.0, 0.0, 0.0, 5.0, 5.1, 0.2, 0.3, 0.1, -0.2, 9.0, -1.0, 2.0, 5.2, 4.8, 0.0, -3.0, 2.0, 1.0, 8.7,
            -0.6, 2.4, 0.1, 0.5, 0.1,
        ];
        let km = KMeans {
            zdim: 3,
            labels: vec![0, 1, 2, 3, 4, 5, 6, 7, 3, 3],
            centers: centers.clone(),
            center_indices: (10..18).collect(),
            inertia: 1.0,
            n_iter: 1,
        };
        let r = km.dendrogram_ordered();
        let order = [5, 7, 0, 2, 1, 4, 3, 6];
        assert_eq!(r.labels, [2, 4, 3, 6, 5, 0, 7, 1, 6, 6]);
        assert_eq!(r.center_indices, order.map(|o| 10 + o));
        for (new, &old) in order.iter().enumerate() {
            assert_eq!(&r.centers[3 * new..3 * new + 3], &centers[3 * old..3 * old + 3]);
        }
        // Already in dendrogram order: unchanged (the order is idempotent when heights do not tie).
        assert_eq!(r.clone().dendrogram_ordered().labels, r.labels);
        // Not a permutation: unchanged.
        assert_eq!(r.clone().renumbered(&[0, 0, 1, 2, 3, 4, 5, 6]).labels, r.labels);
        assert_eq!(r.clone().renumbered(&[0, 1]).labels, r.labels);
    }

    #[test]
    fn same_result_on_one_and_many_threads() {
        let (z, _) =
            blobs(&[&[0.0, 0.0, 0.0], &[1.0, 0.0, 0.0], &[0.0, 1.0, 0.0], &[0.0, 0.0, 1.0]], 3000, 2);
        let l = Latents::new(&z, 3).unwrap();
        let p = KMeansParams { k: 6, ..Default::default() };
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| kmeans(l, &p).unwrap());
        let many = rayon::ThreadPoolBuilder::new()
            .num_threads(3)
            .build()
            .unwrap()
            .install(|| kmeans(l, &p).unwrap());
        assert_eq!(one.labels, many.labels);
        assert_eq!(one.center_indices, many.center_indices);
        assert_eq!(one.inertia.to_bits(), many.inertia.to_bits());
    }

    #[test]
    fn degenerate_inputs_do_not_panic() {
        // All z equal: k-means still returns k (coinciding) centres and zero inertia.
        let z = vec![0.5f32; 40];
        let km = kmeans(Latents::new(&z, 2).unwrap(), &KMeansParams { k: 5, ..Default::default() }).unwrap();
        assert_eq!(km.center_indices.len(), 5);
        assert_eq!(km.inertia, 0.0);
        // N < k.
        let err = kmeans(Latents::new(&z[..6], 2).unwrap(), &KMeansParams { k: 5, ..Default::default() });
        assert!(matches!(err, Err(Error::TooFew { needed: 5, got: 3, .. })));
        // zdim 1 with two well separated groups.
        let z1: Vec<f32> =
            (0..20).map(|i| if i < 10 { i as f32 * 0.01 } else { 10.0 + i as f32 * 0.01 }).collect();
        let km = kmeans(Latents::new(&z1, 1).unwrap(), &KMeansParams { k: 2, ..Default::default() }).unwrap();
        assert!(km.labels[..10].iter().all(|&l| l == km.labels[0]));
        assert!(km.labels[10..].iter().all(|&l| l != km.labels[0]));
        // k = 0.
        assert!(matches!(
            kmeans(Latents::new(&z1, 1).unwrap(), &KMeansParams { k: 0, ..Default::default() }),
            Err(Error::Param { .. })
        ));
    }
}
