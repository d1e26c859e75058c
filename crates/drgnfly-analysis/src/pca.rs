//! Principal component analysis of latents, as `sklearn.decomposition.PCA()` (all components).
//!
//! Covariance `C = (Z−μ)ᵀ(Z−μ)/(N−1)` accumulated in f64, eigendecomposed by [`symmetric_eigen`];
//! components are the eigenvectors sorted by decreasing variance. Sign convention (sklearn's `svd_flip`
//! with `u_based_decision=False`, as in sklearn ≥ 1.5): each component's largest-|loading| entry is
//! positive, so the result is deterministic. Projections `y = (z − μ)·Vᵀ`; inverse `z = μ + y·V`.
//!
//! The accumulation uses fixed-size row chunks summed in order, so results do not depend on the number
//! of threads.

use rayon::prelude::*;

use crate::error::{Error, Result};
use crate::latents::Latents;
use crate::linalg::symmetric_eigen;

/// Rows per parallel chunk; fixed so sums are reproducible on any thread count.
const CHUNK: usize = 4096;

/// A fitted PCA with all zdim components.
#[derive(Clone, Debug, serde::Serialize)]
pub struct Pca {
    /// Latent dimension.
    pub zdim: usize,
    /// Per-dimension mean μ (length zdim).
    pub mean: Vec<f64>,
    /// Components as rows (zdim×zdim, row-major): component `k` is `components[k*zdim..(k+1)*zdim]`.
    pub components: Vec<f64>,
    /// Variance along each component (eigenvalues of C, N−1 denominator), decreasing.
    pub explained_variance: Vec<f64>,
    /// `explained_variance / Σ explained_variance` (all zeros when the latents are constant).
    pub explained_variance_ratio: Vec<f64>,
}

impl Pca {
    /// Fit on latents. Needs N ≥ 2 (the N−1 variance is undefined otherwise).
    pub fn fit(z: Latents<'_>) -> Result<Self> {
        let (n, d) = (z.len(), z.zdim());
        if n < 2 {
            return Err(Error::TooFew {
                what: "PCA".into(),
                needed: 2,
                got: n,
                hint: "A variance needs at least two particles",
            });
        }
        let data = z.as_slice();
        let sum = chunked_sum(data, d, d, |row, acc| {
            for (a, &x) in acc.iter_mut().zip(row) {
                *a += x as f64;
            }
        });
        let mean: Vec<f64> = sum.iter().map(|s| s / n as f64).collect();
        let mut cov = chunked_sum(data, d, d * d, |row, acc| {
            for i in 0..d {
                let ci = row[i] as f64 - mean[i];
                for j in i..d {
                    acc[i * d + j] += ci * (row[j] as f64 - mean[j]);
                }
            }
        });
        for i in 0..d {
            for j in i..d {
                let c = cov[i * d + j] / (n - 1) as f64;
                cov[i * d + j] = c;
                cov[j * d + i] = c;
            }
        }
        let (values, mut components) = symmetric_eigen(&cov, d);
        // Rounding can leave tiny negative eigenvalues of a PSD matrix.
        let explained_variance: Vec<f64> = values.iter().map(|v| v.max(0.0)).collect();
        let total: f64 = explained_variance.iter().sum();
        let explained_variance_ratio =
            explained_variance.iter().map(|v| if total > 0.0 { v / total } else { 0.0 }).collect();
        for comp in components.chunks_exact_mut(d) {
            // svd_flip: make the largest-|loading| entry positive (first one on ties).
            let imax = (0..d).fold(0, |b, i| if comp[i].abs() > comp[b].abs() { i } else { b });
            if comp[imax] < 0.0 {
                comp.iter_mut().for_each(|c| *c = -*c);
            }
        }
        Ok(Self { zdim: d, mean, components, explained_variance, explained_variance_ratio })
    }

    /// Component `k` (0-based) as a zdim vector.
    ///
    /// # Panics
    /// If `k >= zdim`.
    pub fn component(&self, k: usize) -> &[f64] {
        &self.components[k * self.zdim..(k + 1) * self.zdim]
    }

    /// Project latents onto the first `ncomp` components: N×ncomp row-major f32.
    pub fn transform(&self, z: Latents<'_>, ncomp: usize) -> Result<Vec<f32>> {
        self.check_dims(z.zdim(), ncomp)?;
        let d = self.zdim;
        let mut out = vec![0.0f32; z.len() * ncomp];
        out.par_chunks_mut(ncomp.max(1)).zip(z.as_slice().par_chunks(d)).for_each(|(o, row)| {
            for (k, ok) in o.iter_mut().enumerate() {
                let comp = self.component(k);
                *ok = row.iter().zip(&self.mean).zip(comp).map(|((&x, m), c)| (x as f64 - m) * c).sum::<f64>()
                    as f32;
            }
        });
        Ok(out)
    }

    /// Map PC coordinates (M×ncomp row-major, first `ncomp` components) back to latents (M×zdim):
    /// `z = μ + Σ_k y_k v_k`.
    pub fn inverse_transform(&self, y: &[f32], ncomp: usize) -> Result<Vec<f32>> {
        self.check_dims(self.zdim, ncomp)?;
        if ncomp == 0 || !y.len().is_multiple_of(ncomp) {
            return Err(Error::Shape {
                what: "PC coordinates",
                expected: format!("a multiple of {ncomp} values"),
                got: format!("{} values", y.len()),
            });
        }
        let d = self.zdim;
        let mut out = Vec::with_capacity(y.len() / ncomp * d);
        for row in y.chunks_exact(ncomp) {
            for j in 0..d {
                let v: f64 = self.mean[j]
                    + row
                        .iter()
                        .enumerate()
                        .map(|(k, &yk)| yk as f64 * self.components[k * d + j])
                        .sum::<f64>();
                out.push(v as f32);
            }
        }
        Ok(out)
    }

    fn check_dims(&self, zdim: usize, ncomp: usize) -> Result<()> {
        if zdim != self.zdim {
            return Err(Error::Shape {
                what: "latents for PCA",
                expected: format!("zdim = {}", self.zdim),
                got: format!("zdim = {zdim}"),
            });
        }
        if ncomp > self.zdim {
            return Err(Error::Param {
                name: "--pc",
                value: ncomp.to_string(),
                why: format!("at most zdim = {} principal components exist", self.zdim),
            });
        }
        Ok(())
    }
}

/// Sum a per-row f64 accumulation of width `width` over fixed chunks, combined in chunk order.
fn chunked_sum(data: &[f32], d: usize, width: usize, f: impl Fn(&[f32], &mut [f64]) + Sync) -> Vec<f64> {
    let partials: Vec<Vec<f64>> = data
        .par_chunks(CHUNK * d)
        .map(|chunk| {
            let mut acc = vec![0.0; width];
            chunk.chunks_exact(d).for_each(|row| f(row, &mut acc));
            acc
        })
        .collect();
    let mut total = vec![0.0; width];
    for p in partials {
        total.iter_mut().zip(p).for_each(|(t, x)| *t += x);
    }
    total
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    /// Points along a known direction plus smaller orthogonal noise.
    fn anisotropic(n: usize) -> Vec<f32> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let dir = [0.6f32, -0.8, 0.0];
        let mut z = Vec::new();
        for _ in 0..n {
            let t: f32 = rng.random_range(-3.0..3.0);
            let e: f32 = rng.random_range(-0.1..0.1);
            let f: f32 = rng.random_range(-0.05..0.05);
            z.extend([1.0 + t * dir[0] + e * 0.8, 2.0 + t * dir[1] + e * 0.6, -1.0 + f]);
        }
        z
    }

    #[test]
    fn finds_the_main_axis_with_sign_convention() {
        let z = anisotropic(2000);
        let l = Latents::new(&z, 3).unwrap();
        let pca = Pca::fit(l).unwrap();
        // Largest |loading| of the first PC is the −0.8 entry, flipped to positive.
        let c0 = pca.component(0);
        assert!((c0[0] + 0.6).abs() < 0.01 && (c0[1] - 0.8).abs() < 0.01, "{c0:?}");
        assert!(pca.explained_variance_ratio[0] > 0.99);
        let s: f64 = pca.explained_variance_ratio.iter().sum();
        assert!((s - 1.0).abs() < 1e-12);
        // Variance of a uniform on [−3, 3] is 3.
        assert!((pca.explained_variance[0] - 3.0).abs() < 0.2);
    }

    #[test]
    fn transform_then_inverse_is_identity_with_all_components() {
        let z = anisotropic(300);
        let l = Latents::new(&z, 3).unwrap();
        let pca = Pca::fit(l).unwrap();
        let y = pca.transform(l, 3).unwrap();
        // Projections are centred and sorted by variance.
        let m0: f64 = y.chunks(3).map(|r| r[0] as f64).sum::<f64>() / 300.0;
        assert!(m0.abs() < 1e-5);
        let back = pca.inverse_transform(&y, 3).unwrap();
        let max_err = z.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(max_err < 1e-5, "max |Δ| = {max_err}");
    }

    #[test]
    fn degenerate_inputs() {
        let z = [1.0f32; 12];
        let pca = Pca::fit(Latents::new(&z, 3).unwrap()).unwrap();
        assert!(pca.explained_variance.iter().all(|&v| v == 0.0));
        assert!(pca.explained_variance_ratio.iter().all(|&v| v == 0.0));
        assert!(matches!(Pca::fit(Latents::new(&z[..3], 3).unwrap()), Err(Error::TooFew { .. })));
        assert!(matches!(pca.transform(Latents::new(&z, 3).unwrap(), 4), Err(Error::Param { .. })));
    }
}
