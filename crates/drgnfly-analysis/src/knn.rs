//! k-nearest-neighbour graphs of latents (Euclidean): exact brute force and NN-descent.
//!
//! [`Knn`] stores, for each particle, its `k` nearest *other* particles sorted by increasing distance
//! (ties by lower index), with Euclidean (not squared) distances.
//!
//! [`knn_nn_descent`] is NN-descent (Dong, Moses & Li 2011; the local-join form used by pynndescent):
//! start from random neighbours, then repeatedly compare each point's neighbours with each other
//! ("a neighbour of my neighbour is likely my neighbour"), sampling at most `max_candidates` new and
//! old candidates per point, until fewer than `delta·k·N` heap updates happen in an iteration. It is
//! deterministic for a seed on any number of threads: random choices are hashes of (seed, iteration,
//! point), the local join runs over fixed blocks against a snapshot of the heap bounds, and updates are
//! applied per disjoint shard of target rows in a fixed order.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::latents::{sq_dist, Latents};

/// A kNN graph: row `i` holds the `k` nearest other particles of particle `i`.
#[derive(Clone, Debug)]
pub struct Knn {
    /// Neighbours per particle.
    pub k: usize,
    /// N×k neighbour indices, nearest first.
    pub indices: Vec<u32>,
    /// N×k Euclidean distances matching `indices`.
    pub dists: Vec<f32>,
}

impl Knn {
    /// Number of particles.
    pub fn len(&self) -> usize {
        self.indices.len().checked_div(self.k).unwrap_or(0)
    }

    /// Whether the graph has no particles.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// Neighbours of particle `i` and their distances.
    ///
    /// # Panics
    /// If `i >= len()`.
    pub fn neighbors(&self, i: usize) -> (&[u32], &[f32]) {
        (&self.indices[i * self.k..(i + 1) * self.k], &self.dists[i * self.k..(i + 1) * self.k])
    }

    /// Fraction of `exact`'s neighbour lists recovered by `self` (the standard ANN recall).
    pub fn recall(&self, exact: &Knn) -> f64 {
        let n = self.len().min(exact.len());
        let k = self.k.min(exact.k);
        if n == 0 || k == 0 {
            return 0.0;
        }
        let hits: usize = (0..n)
            .map(|i| {
                let mine = self.neighbors(i).0;
                exact.neighbors(i).0[..k].iter().filter(|j| mine.contains(j)).count()
            })
            .sum();
        hits as f64 / (n * k) as f64
    }
}

/// Check `1 ≤ k < N` for a kNN graph.
fn check_k(z: Latents<'_>, k: usize, flag: &'static str) -> Result<()> {
    if k == 0 {
        return Err(Error::Param { name: flag, value: "0".into(), why: "must be at least 1".into() });
    }
    if z.len() <= k {
        return Err(Error::TooFew {
            what: format!("a {k}-nearest-neighbour graph"),
            needed: k + 1,
            got: z.len(),
            hint: "Use fewer neighbours or more particles",
        });
    }
    if z.len() > u32::MAX as usize {
        return Err(Error::Param {
            name: "N",
            value: z.len().to_string(),
            why: "more than 2³² particles are not supported by the neighbour graph".into(),
        });
    }
    Ok(())
}

/// Exact kNN by brute force, O(N²·zdim), parallel over rows.
///
/// Errors: [`Error::Param`] for `k == 0`, [`Error::TooFew`] when N ≤ k.
pub fn knn_exact(z: Latents<'_>, k: usize) -> Result<Knn> {
    check_k(z, k, "k")?;
    let n = z.len();
    let mut indices = vec![u32::MAX; n * k];
    let mut dists = vec![f32::INFINITY; n * k];
    indices.par_chunks_mut(k).zip(dists.par_chunks_mut(k)).enumerate().for_each(|(i, (idx, dst))| {
        let row = z.row(i);
        let mut heap = RowHeap::new(idx, dst);
        for j in (0..n).filter(|&j| j != i) {
            heap.push(j as u32, sq_dist(row, z.row(j)));
        }
        heap.finish();
    });
    Ok(Knn { k, indices, dists })
}

/// NN-descent settings.
#[derive(Clone, Debug)]
pub struct NnDescentParams {
    /// Neighbours per particle (UMAP: `n_neighbors − 1`, as the particle itself is not stored).
    pub k: usize,
    /// Seed for the random initial graph and candidate sampling.
    pub seed: u64,
    /// Maximum iterations (pynndescent: `max(5, round(log₂ N))`).
    pub max_iter: usize,
    /// Stop when an iteration makes fewer than `delta·k·N` improvements.
    pub delta: f64,
    /// Candidates sampled per point per iteration, for new and for old neighbours each.
    pub max_candidates: usize,
}

impl NnDescentParams {
    /// pynndescent-like defaults for `k` neighbours on `n` points.
    pub fn new(k: usize, n: usize, seed: u64) -> Self {
        let max_iter = ((n.max(2) as f64).log2().round() as usize).max(5);
        Self { k, seed, max_iter, delta: 0.001, max_candidates: k.clamp(8, 60) }
    }
}

/// Approximate kNN by NN-descent. Small inputs (N ≤ 4·(k+1)) are solved exactly.
///
/// Errors: as [`knn_exact`].
pub fn knn_nn_descent(z: Latents<'_>, params: &NnDescentParams) -> Result<Knn> {
    let k = params.k;
    check_k(z, k, "k")?;
    let n = z.len();
    if n <= 4 * (k + 1) {
        return knn_exact(z, k);
    }
    let mut idx = vec![u32::MAX; n * k];
    let mut dist = vec![f32::INFINITY; n * k];
    let mut is_new = vec![true; n * k];
    // Random initial neighbours, one stream per row.
    idx.par_chunks_mut(k).zip(dist.par_chunks_mut(k)).enumerate().for_each(|(i, (ri, rd))| {
        let mut rng = ChaCha8Rng::seed_from_u64(params.seed);
        rng.set_stream(i as u64);
        let mut heap = RowHeap::new(ri, rd);
        while heap.len() < k {
            let j = rng.random_range(0..n);
            if j != i {
                heap.push(j as u32, sq_dist(z.row(i), z.row(j)));
            }
        }
    });
    let mc = params.max_candidates.max(1);
    let shards = 64.min(n);
    let rows_per_shard = n.div_ceil(shards);
    for iter in 0..params.max_iter {
        let (new_c, old_c) = build_candidates(&idx, &mut is_new, n, k, mc, params.seed ^ hash64(iter as u64));
        let mut updates = 0usize;
        const BLOCK: usize = 16384;
        const TASK: usize = 256;
        for b0 in (0..n).step_by(BLOCK) {
            let b1 = (b0 + BLOCK).min(n);
            // Heap bounds snapshot: the current k-th distance of every row.
            let bound: Vec<f32> = dist.par_chunks(k).map(|r| r[0]).collect();
            let tasks: Vec<Vec<Vec<(u32, u32, f32)>>> = (b0..b1)
                .collect::<Vec<_>>()
                .par_chunks(TASK)
                .map(|rows| {
                    let mut out = vec![Vec::new(); shards];
                    let mut emit = |a: u32, b: u32, d: f32| {
                        if d < bound[a as usize] {
                            out[a as usize / rows_per_shard].push((a, b, d));
                        }
                        if d < bound[b as usize] {
                            out[b as usize / rows_per_shard].push((b, a, d));
                        }
                    };
                    for &i in rows {
                        let nw = &new_c[i * mc..(i + 1) * mc];
                        let od = &old_c[i * mc..(i + 1) * mc];
                        for (p, &a) in nw.iter().enumerate().filter(|(_, &a)| a != u32::MAX) {
                            for &b in nw[p + 1..].iter().chain(od).filter(|&&b| b != u32::MAX && b != a) {
                                emit(a, b, sq_dist(z.row(a as usize), z.row(b as usize)));
                            }
                        }
                    }
                    out
                })
                .collect();
            let applied: usize = idx
                .par_chunks_mut(rows_per_shard * k)
                .zip(dist.par_chunks_mut(rows_per_shard * k))
                .zip(is_new.par_chunks_mut(rows_per_shard * k))
                .enumerate()
                .map(|(s, ((ri, rd), rn))| {
                    let mut count = 0;
                    for task in &tasks {
                        for &(t, o, d) in &task[s] {
                            let r = t as usize - s * rows_per_shard;
                            let mut heap =
                                RowHeap::new(&mut ri[r * k..(r + 1) * k], &mut rd[r * k..(r + 1) * k]);
                            if let Some(slot) = heap.push(o, d) {
                                rn[r * k + slot] = true;
                                count += 1;
                            }
                        }
                    }
                    count
                })
                .sum();
            updates += applied;
        }
        if (updates as f64) < params.delta * (k * n) as f64 {
            break;
        }
    }
    idx.par_chunks_mut(k).zip(dist.par_chunks_mut(k)).for_each(|(ri, rd)| RowHeap::new(ri, rd).finish());
    Ok(Knn { k, indices: idx, dists: dist })
}

/// New and old candidate lists (N×mc each, `u32::MAX` = empty), sampled by hashed priority; neighbours
/// chosen as new candidates lose their "new" flag (they are joined this iteration).
fn build_candidates(
    idx: &[u32],
    is_new: &mut [bool],
    n: usize,
    k: usize,
    mc: usize,
    salt: u64,
) -> (Vec<u32>, Vec<u32>) {
    let mut new_c = vec![u32::MAX; n * mc];
    let mut new_p = vec![u32::MAX; n * mc];
    let mut old_c = vec![u32::MAX; n * mc];
    let mut old_p = vec![u32::MAX; n * mc];
    for i in 0..n {
        for s in 0..k {
            let j = idx[i * k + s];
            if j == u32::MAX {
                continue;
            }
            let prio = hash64(salt ^ ((i as u64) << 32 | j as u64)) as u32;
            let (c, p) = if is_new[i * k + s] { (&mut new_c, &mut new_p) } else { (&mut old_c, &mut old_p) };
            cand_push(&mut c[i * mc..(i + 1) * mc], &mut p[i * mc..(i + 1) * mc], j, prio);
            let j = j as usize;
            cand_push(&mut c[j * mc..(j + 1) * mc], &mut p[j * mc..(j + 1) * mc], i as u32, prio);
        }
    }
    is_new.par_chunks_mut(k).zip(idx.par_chunks(k)).zip(new_c.par_chunks(mc)).for_each(
        |((flags, row), cand)| {
            for (f, j) in flags.iter_mut().zip(row) {
                if *f && cand.contains(j) {
                    *f = false;
                }
            }
        },
    );
    (new_c, old_c)
}

/// Keep the `mc` lowest-priority candidates (max-heap on priority at slot 0), without duplicates.
fn cand_push(c: &mut [u32], p: &mut [u32], j: u32, prio: u32) {
    if prio >= p[0] || c.contains(&j) {
        return;
    }
    c[0] = j;
    p[0] = prio;
    sift_down(p, c, 0);
}

fn sift_down<K: PartialOrd + Copy, V: Copy>(keys: &mut [K], vals: &mut [V], mut pos: usize) {
    let len = keys.len();
    loop {
        let (l, r) = (2 * pos + 1, 2 * pos + 2);
        let mut big = pos;
        if l < len && keys[l] > keys[big] {
            big = l;
        }
        if r < len && keys[r] > keys[big] {
            big = r;
        }
        if big == pos {
            return;
        }
        keys.swap(pos, big);
        vals.swap(pos, big);
        pos = big;
    }
}

/// A fixed-size max-heap of (squared distance, index) over one row of a kNN table; slot 0 holds the
/// largest distance. Empty slots are (∞, `u32::MAX`).
struct RowHeap<'a> {
    idx: &'a mut [u32],
    dist: &'a mut [f32],
}

impl<'a> RowHeap<'a> {
    fn new(idx: &'a mut [u32], dist: &'a mut [f32]) -> Self {
        Self { idx, dist }
    }

    fn len(&self) -> usize {
        self.idx.iter().filter(|&&j| j != u32::MAX).count()
    }

    /// Insert `j` at squared distance `d` if it beats the worst and is not present; returns the slot.
    fn push(&mut self, j: u32, d: f32) -> Option<usize> {
        // Ties with the worst are refused, so the lower index (seen first in order) is kept.
        if d >= self.dist[0] || self.idx.contains(&j) {
            return None;
        }
        self.idx[0] = j;
        self.dist[0] = d;
        sift_down(self.dist, self.idx, 0);
        self.idx.iter().position(|&x| x == j)
    }

    /// Sort ascending by (distance, index) and turn squared distances into distances.
    fn finish(self) {
        let mut pairs: Vec<(f32, u32)> = self.dist.iter().copied().zip(self.idx.iter().copied()).collect();
        pairs.sort_by(|a, b| a.0.total_cmp(&b.0).then(a.1.cmp(&b.1)));
        for ((d, j), (od, oj)) in pairs.into_iter().zip(self.dist.iter_mut().zip(self.idx.iter_mut())) {
            *od = d.sqrt();
            *oj = j;
        }
    }
}

/// SplitMix64 finaliser: a fast, well-mixed hash used as a counter-based random source (deterministic
/// for a given input on any thread).
pub(crate) fn hash64(x: u64) -> u64 {
    let mut z = x.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand_distr::{Distribution, Normal};

    fn gaussian(n: usize, d: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let normal = Normal::new(0.0f32, 1.0).unwrap();
        (0..n * d).map(|_| normal.sample(&mut rng)).collect()
    }

    #[test]
    fn exact_knn_on_a_line() {
        let z: Vec<f32> = [0.0, 1.0, 3.0, 6.0, 10.0].to_vec();
        let knn = knn_exact(Latents::new(&z, 1).unwrap(), 2).unwrap();
        assert_eq!(knn.neighbors(0), (&[1u32, 2][..], &[1.0f32, 3.0][..]));
        // Particle 2 (z = 3) is 3 away from both 0 and 3: the tie goes to the lower index.
        assert_eq!(knn.neighbors(2), (&[1u32, 0][..], &[2.0f32, 3.0][..]));
        assert_eq!(knn.neighbors(4).0, &[3, 2]);
        assert!(matches!(knn_exact(Latents::new(&z, 1).unwrap(), 5), Err(Error::TooFew { .. })));
    }

    #[test]
    fn nn_descent_recall_vs_brute_force() {
        let z = gaussian(2000, 8, 3);
        let l = Latents::new(&z, 8).unwrap();
        let exact = knn_exact(l, 14).unwrap();
        let approx = knn_nn_descent(l, &NnDescentParams::new(14, 2000, 42)).unwrap();
        let recall = approx.recall(&exact);
        eprintln!("NN-descent recall on 2000×8D, k = 14: {recall:.4}");
        assert!(recall >= 0.9, "recall {recall}");
        // Sorted rows, no self, no duplicates.
        for i in 0..2000 {
            let (nb, d) = approx.neighbors(i);
            assert!(d.windows(2).all(|w| w[0] <= w[1]));
            assert!(!nb.contains(&(i as u32)));
            let mut s = nb.to_vec();
            s.sort();
            s.dedup();
            assert_eq!(s.len(), 14);
        }
    }

    #[test]
    fn nn_descent_is_thread_count_independent() {
        let z = gaussian(1500, 4, 5);
        let l = Latents::new(&z, 4).unwrap();
        let p = NnDescentParams::new(10, 1500, 1);
        let one = rayon::ThreadPoolBuilder::new()
            .num_threads(1)
            .build()
            .unwrap()
            .install(|| knn_nn_descent(l, &p).unwrap());
        let many = rayon::ThreadPoolBuilder::new()
            .num_threads(4)
            .build()
            .unwrap()
            .install(|| knn_nn_descent(l, &p).unwrap());
        assert_eq!(one.indices, many.indices);
    }

    #[test]
    fn identical_points_do_not_hang() {
        let z = vec![1.0f32; 3 * 200];
        let knn = knn_nn_descent(Latents::new(&z, 3).unwrap(), &NnDescentParams::new(5, 200, 0)).unwrap();
        assert!(knn.dists.iter().all(|&d| d == 0.0));
    }
}
