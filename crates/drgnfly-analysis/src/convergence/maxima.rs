//! Local maxima of the 2D (UMAP) particle density, and their tracking across epochs (cryoDRGN
//! `analyze_convergence`, plots 03/04 "UMAP sketching" and "maxima sketch consistency").
//!
//! Per epoch: a 2D histogram with `n_bins` bins per axis over the data range, smoothed with a Gaussian
//! of σ = 1 bin (truncated at 4σ, reflecting edges, as `scipy.ndimage.gaussian_filter`); every bin that
//! is ≥ its 8 neighbours (and > 0) is a local maximum; of two maxima closer than `radius` bins the
//! lower is dropped; the `pruned_maxima` highest survive, and of those the `final_maxima` with the most
//! particles (in the 3×3 bins around the maximum) are kept, largest first. A maximum's representative
//! is the particle nearest (in latent space) to the component-wise median latent of the particles in
//! its 3×3 bins: an on-data z to generate a volume from.
//!
//! Tracking: UMAP coordinates differ from epoch to epoch, so maxima are matched by the particles they
//! hold, not by position. Each maximum's *basin* is the set of particles within `radius` bins whose
//! nearest maximum it is; maxima of consecutive epochs are paired by the Hungarian algorithm on
//! 1 − Jaccard(basins).

use crate::error::{Error, Result};
use crate::latents::{sq_dist, Latents};
use crate::linalg::median;
use crate::metrics::hungarian;

/// Density-maxima settings; `Default` is cryoDRGN's (`--n-bins 30 --radius 5 --pruned-maxima 12
/// --final-maxima 10`).
#[derive(Clone, Debug)]
pub struct MaximaParams {
    /// Histogram bins per axis.
    pub n_bins: usize,
    /// Minimum distance between kept maxima, and basin radius, in bins.
    pub radius: f64,
    /// Maxima kept after pruning (highest density first).
    pub pruned_maxima: usize,
    /// Maxima finally reported (most particles first).
    pub final_maxima: usize,
}

impl Default for MaximaParams {
    fn default() -> Self {
        Self { n_bins: 30, radius: 5.0, pruned_maxima: 12, final_maxima: 10 }
    }
}

/// One local maximum of the smoothed 2D density.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct DensityMaximum {
    /// Histogram bin (x, y).
    pub bin: (usize, usize),
    /// Bin centre in the 2D coordinates.
    pub center: [f32; 2],
    /// Smoothed histogram value (particles per bin).
    pub height: f64,
    /// Particles in the 3×3 bins around the maximum.
    pub count: usize,
    /// On-data representative particle (index into the latents).
    pub representative: usize,
    /// Basin: particles within `radius` bins whose nearest maximum this is (sorted indices).
    pub basin: Vec<usize>,
}

/// Find the density maxima of `points` (N×2 row-major, e.g. a UMAP embedding of `z`).
///
/// Errors: point count ≠ latent count, `n_bins < 3`, or non-finite points.
pub fn density_maxima(points: &[f32], z: Latents<'_>, params: &MaximaParams) -> Result<Vec<DensityMaximum>> {
    let n = z.len();
    if points.len() != 2 * n {
        return Err(Error::Shape {
            what: "2D embedding",
            expected: format!("{} values (N×2 for N = {n})", 2 * n),
            got: points.len().to_string(),
        });
    }
    Latents::new(points, 2)?;
    if params.n_bins < 3 {
        return Err(Error::Param {
            name: "--n-bins",
            value: params.n_bins.to_string(),
            why: "must be at least 3".into(),
        });
    }
    if n == 0 {
        return Ok(Vec::new());
    }
    let nb = params.n_bins;
    let (lo, width) = axis_range(points, nb);
    let bin_of = |p: &[f32]| -> (usize, usize) {
        let b = |a: usize| (((p[a] - lo[a]) / width[a]) as usize).min(nb - 1);
        (b(0), b(1))
    };
    let mut hist = vec![0.0f64; nb * nb];
    let bins: Vec<(usize, usize)> = points.chunks_exact(2).map(bin_of).collect();
    for &(bx, by) in &bins {
        hist[by * nb + bx] += 1.0;
    }
    let smooth = gaussian_smooth(&hist, nb, 1.0);
    // Local maxima (≥ all 8 neighbours, > 0).
    let mut maxima: Vec<(usize, usize, f64)> = Vec::new();
    for by in 0..nb {
        for bx in 0..nb {
            let h = smooth[by * nb + bx];
            let is_max = h > 0.0 && neighbours(bx, by, nb, 1).all(|(x, y)| smooth[y * nb + x] <= h);
            if is_max {
                maxima.push((bx, by, h));
            }
        }
    }
    maxima.sort_by(|a, b| b.2.total_cmp(&a.2));
    let mut kept: Vec<(usize, usize, f64)> = Vec::new();
    for m in maxima {
        let far = kept.iter().all(|k| bin_dist(k.0, k.1, m.0, m.1) >= params.radius);
        if far && kept.len() < params.pruned_maxima {
            kept.push(m);
        }
    }
    let mut out: Vec<DensityMaximum> = kept
        .into_iter()
        .map(|(bx, by, height)| {
            let near: Vec<usize> =
                (0..n).filter(|&i| bins[i].0.abs_diff(bx) <= 1 && bins[i].1.abs_diff(by) <= 1).collect();
            let med: Vec<f32> = (0..z.zdim())
                .map(|j| median(&near.iter().map(|&i| z.row(i)[j]).collect::<Vec<_>>()).unwrap_or(0.0) as f32)
                .collect();
            let representative = (0..n)
                .min_by(|&a, &b| sq_dist(z.row(a), &med).total_cmp(&sq_dist(z.row(b), &med)))
                .unwrap_or(0);
            let center = [lo[0] + (bx as f32 + 0.5) * width[0], lo[1] + (by as f32 + 0.5) * width[1]];
            DensityMaximum {
                bin: (bx, by),
                center,
                height,
                count: near.len(),
                representative,
                basin: Vec::new(),
            }
        })
        .collect();
    out.sort_by(|a, b| b.count.cmp(&a.count).then(b.height.total_cmp(&a.height)));
    out.truncate(params.final_maxima);
    // Basins: nearest maximum in bin units, within the radius.
    for (i, p) in points.chunks_exact(2).enumerate() {
        let pb = [(p[0] - lo[0]) / width[0], (p[1] - lo[1]) / width[1]];
        let best = out.iter().enumerate().map(|(m, dm)| {
            let (cx, cy) = (dm.bin.0 as f32 + 0.5, dm.bin.1 as f32 + 0.5);
            (m, ((pb[0] - cx).powi(2) + (pb[1] - cy).powi(2)).sqrt() as f64)
        });
        if let Some((m, d)) = best.min_by(|a, b| a.1.total_cmp(&b.1)) {
            if d <= params.radius {
                out[m].basin.push(i);
            }
        }
    }
    Ok(out)
}

/// Lower corner and bin width per axis (a zero range is spread over a unit width).
fn axis_range(points: &[f32], nb: usize) -> ([f32; 2], [f32; 2]) {
    let mut lo = [f32::INFINITY; 2];
    let mut hi = [f32::NEG_INFINITY; 2];
    for p in points.chunks_exact(2) {
        for a in 0..2 {
            lo[a] = lo[a].min(p[a]);
            hi[a] = hi[a].max(p[a]);
        }
    }
    // Nudge the upper edge so the maximum falls in the last bin.
    let w =
        |a: usize| if hi[a] > lo[a] { (hi[a] - lo[a]) * (1.0 + 1e-6) / nb as f32 } else { 1.0 / nb as f32 };
    ([lo[0], lo[1]], [w(0), w(1)])
}

fn bin_dist(ax: usize, ay: usize, bx: usize, by: usize) -> f64 {
    ((ax as f64 - bx as f64).powi(2) + (ay as f64 - by as f64).powi(2)).sqrt()
}

/// Bins within Chebyshev distance `r` of (x, y), excluding itself.
fn neighbours(x: usize, y: usize, nb: usize, r: usize) -> impl Iterator<Item = (usize, usize)> {
    let xs = x.saturating_sub(r)..=(x + r).min(nb - 1);
    xs.flat_map(move |xx| (y.saturating_sub(r)..=(y + r).min(nb - 1)).map(move |yy| (xx, yy)))
        .filter(move |&(xx, yy)| (xx, yy) != (x, y))
}

/// Separable Gaussian filter (σ in bins, truncated at 4σ, `reflect` edges: d c b a | a b c d | d c b a).
fn gaussian_smooth(img: &[f64], nb: usize, sigma: f64) -> Vec<f64> {
    let r = (4.0 * sigma + 0.5) as isize;
    let kernel: Vec<f64> = (-r..=r).map(|k| (-(k * k) as f64 / (2.0 * sigma * sigma)).exp()).collect();
    let ksum: f64 = kernel.iter().sum();
    let reflect = |i: isize| -> usize {
        let n = nb as isize;
        let mut i = i.rem_euclid(2 * n);
        if i >= n {
            i = 2 * n - 1 - i;
        }
        i as usize
    };
    let pass = |src: &[f64], horizontal: bool| -> Vec<f64> {
        let mut dst = vec![0.0; nb * nb];
        for y in 0..nb {
            for x in 0..nb {
                dst[y * nb + x] = kernel
                    .iter()
                    .enumerate()
                    .map(|(t, w)| {
                        let o = t as isize - r;
                        let (sx, sy) = if horizontal {
                            (reflect(x as isize + o), y)
                        } else {
                            (x, reflect(y as isize + o))
                        };
                        w * src[sy * nb + sx]
                    })
                    .sum::<f64>()
                    / ksum;
            }
        }
        dst
    };
    pass(&pass(img, true), false)
}

/// How the maxima of one epoch correspond to those of the previous one.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct MaximaMatch {
    /// The later epoch.
    pub epoch: usize,
    /// `(previous maximum, current maximum, Jaccard of their basins)` for each matched pair.
    pub pairs: Vec<(usize, usize, f64)>,
    /// Mean Jaccard over the current epoch's maxima (an unmatched maximum counts 0).
    pub mean_jaccard: f64,
    /// Maxima in the previous and current epoch.
    pub counts: (usize, usize),
}

/// Pair the maxima of two epochs by basin overlap (Hungarian on 1 − Jaccard).
pub fn match_maxima(epoch: usize, previous: &[DensityMaximum], current: &[DensityMaximum]) -> MaximaMatch {
    let (np, nc) = (previous.len(), current.len());
    let jac: Vec<f64> =
        previous.iter().flat_map(|p| current.iter().map(move |c| jaccard(&p.basin, &c.basin))).collect();
    let pairs: Vec<(usize, usize, f64)> = if np == 0 || nc == 0 {
        Vec::new()
    } else if np <= nc {
        let cost: Vec<f64> = jac.iter().map(|j| 1.0 - j).collect();
        hungarian(&cost, np, nc).into_iter().enumerate().map(|(p, c)| (p, c, jac[p * nc + c])).collect()
    } else {
        let cost: Vec<f64> = (0..nc * np).map(|x| 1.0 - jac[(x % np) * nc + x / np]).collect();
        hungarian(&cost, nc, np).into_iter().enumerate().map(|(c, p)| (p, c, jac[p * nc + c])).collect()
    };
    let mean_jaccard = if nc == 0 { 0.0 } else { pairs.iter().map(|p| p.2).sum::<f64>() / nc as f64 };
    MaximaMatch { epoch, pairs, mean_jaccard, counts: (np, nc) }
}

/// |A ∩ B| / |A ∪ B| of two sorted index lists (0 for two empty sets).
fn jaccard(a: &[usize], b: &[usize]) -> f64 {
    let (mut i, mut j, mut inter) = (0, 0, 0usize);
    while i < a.len() && j < b.len() {
        match a[i].cmp(&b[j]) {
            std::cmp::Ordering::Less => i += 1,
            std::cmp::Ordering::Greater => j += 1,
            std::cmp::Ordering::Equal => {
                inter += 1;
                i += 1;
                j += 1;
            }
        }
    }
    let union = a.len() + b.len() - inter;
    if union == 0 {
        0.0
    } else {
        inter as f64 / union as f64
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// Blobs of 600, 300 and 150 points at (0,0), (10,0), (0,10), σ = 0.7.
    fn blobs(seed: u64) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let nd = Normal::new(0.0f32, 0.7).unwrap();
        let mut p = Vec::new();
        for (cx, cy, n) in [(0.0, 0.0, 600), (10.0, 0.0, 300), (0.0, 10.0, 150)] {
            for _ in 0..n {
                p.extend([cx + nd.sample(&mut rng), cy + nd.sample(&mut rng)]);
            }
        }
        p
    }

    #[test]
    fn finds_three_blobs_largest_first() {
        let p = blobs(3);
        let l = Latents::new(&p, 2).unwrap();
        let m = density_maxima(&p, l, &MaximaParams::default()).unwrap();
        assert_eq!(m.len(), 3, "{:?}", m.iter().map(|x| x.center).collect::<Vec<_>>());
        let expect = [(0.0, 0.0), (10.0, 0.0), (0.0, 10.0)];
        for (mx, (ex, ey)) in m.iter().zip(expect) {
            let r = l.row(mx.representative);
            assert!(
                (r[0] - ex).abs() < 0.7 && (r[1] - ey).abs() < 0.7,
                "representative {r:?} vs ({ex}, {ey})"
            );
        }
        assert!(m[0].count > m[1].count && m[1].count > m[2].count);
        // Basins hold their own blob: the first basin is within the first 600 particles.
        assert!(m[0].basin.iter().all(|&i| i < 600) && m[0].basin.len() > 500);
    }

    #[test]
    fn smoothing_preserves_mass_and_matches_a_point_spread() {
        let nb = 15;
        let mut img = vec![0.0; nb * nb];
        img[7 * nb + 7] = 1.0;
        let s = gaussian_smooth(&img, nb, 1.0);
        assert!((s.iter().sum::<f64>() - 1.0).abs() < 1e-12);
        // Normalised 1D weights w(0) = 1/Σ_k e^{−k²/2}, so the centre is w(0)².
        let w0 = 1.0 / (-4i32..=4).map(|k| (-(k * k) as f64 / 2.0).exp()).sum::<f64>();
        assert!((s[7 * nb + 7] - w0 * w0).abs() < 1e-12);
    }

    #[test]
    fn tracking_by_basin_overlap() {
        let p = blobs(3);
        let l = Latents::new(&p, 2).unwrap();
        let a = density_maxima(&p, l, &MaximaParams::default()).unwrap();
        // The same particles mirrored in x (as a new UMAP might be): maxima match perfectly.
        let mirrored: Vec<f32> = p.chunks(2).flat_map(|q| [-q[0], q[1]]).collect();
        let b = density_maxima(&mirrored, l, &MaximaParams::default()).unwrap();
        let m = match_maxima(2, &a, &b);
        assert_eq!(m.counts, (3, 3));
        assert!(m.mean_jaccard > 0.99, "{m:?}");
        assert_eq!(jaccard(&[1, 2, 3], &[2, 3, 4]), 0.5);
        assert_eq!(match_maxima(2, &a, &[]).mean_jaccard, 0.0);
    }
}
