//! One analysed epoch as the encoder diagnostics see it: the followed subset of particles
//! ([`take_rows`]), its 2D layout ([`embed_2d`]: z itself, PCA or UMAP) and the density maxima on that
//! layout ([`LatentView`]). The binary reads `z.N.pkl` and draws the pictures.

use crate::convergence::maxima::{density_maxima, DensityMaximum, MaximaParams};
use crate::error::{Error, Result};
use crate::latents::Latents;
use crate::pca::Pca;
use crate::umap::{umap, UmapParams};

/// How latents with `zdim > 2` are laid out in 2D (cryoDRGN: UMAP, or PC1/PC2 with `--skip-umap`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Embedding2d {
    /// First two principal components (fast).
    Pca,
    /// UMAP with default parameters and this seed.
    Umap {
        /// UMAP seed.
        seed: u64,
    },
}

/// Rows `rows` (in that order) of the row-major `N × zdim` matrix `z`: the same particles picked from
/// every epoch.
///
/// Errors: [`Error::Param`] for `zdim = 0`, [`Error::Shape`] when `z` is not `N × zdim` or a row index
/// is `≥ N`.
pub fn take_rows(z: &[f32], zdim: usize, rows: &[usize]) -> Result<Vec<f32>> {
    if zdim == 0 {
        return Err(Error::Param { name: "zdim", value: "0".into(), why: "must be at least 1".into() });
    }
    let n = z.len() / zdim;
    if !z.len().is_multiple_of(zdim) {
        return Err(Error::Shape {
            what: "latents",
            expected: format!("a multiple of zdim = {zdim} values (N×zdim)"),
            got: format!("{} values", z.len()),
        });
    }
    if let Some(&bad) = rows.iter().find(|&&i| i >= n) {
        return Err(Error::Shape {
            what: "row selection",
            expected: format!("row indices < N = {n}"),
            got: format!("row {bad}"),
        });
    }
    Ok(rows.iter().flat_map(|&i| z[i * zdim..(i + 1) * zdim].iter().copied()).collect())
}

/// 2D coordinates (N×2, row-major) of the latents: none for zdim 1, z itself for zdim 2, otherwise
/// `method` (PCA also when there are fewer than 3 particles, too few for UMAP).
pub fn embed_2d(z: Latents<'_>, method: Embedding2d) -> Result<Option<Vec<f32>>> {
    Ok(match (z.zdim(), method) {
        (1, _) => None,
        (2, _) => Some(z.as_slice().to_vec()),
        (_, Embedding2d::Pca) => Some(Pca::fit(z)?.transform(z, 2)?),
        _ if z.len() < 3 => Some(Pca::fit(z)?.transform(z, 2)?),
        (_, Embedding2d::Umap { seed }) => Some(umap(z, &UmapParams { seed, ..UmapParams::default() })?),
    })
}

/// An epoch's 2D layout and the density maxima on it.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentView {
    /// 2D embedding (N×2) of the latents; `None` for zdim 1.
    pub xy: Option<Vec<f32>>,
    /// Density maxima of `xy` ([`density_maxima`]); empty without an embedding. Representatives index
    /// the latents the view was computed from.
    pub maxima: Vec<DensityMaximum>,
}

impl LatentView {
    /// Embeds `z` in 2D ([`embed_2d`]) and finds the density maxima there.
    pub fn compute(z: Latents<'_>, method: Embedding2d, params: &MaximaParams) -> Result<Self> {
        let xy = embed_2d(z, method)?;
        let maxima = match &xy {
            Some(xy) => density_maxima(xy, z, params)?,
            None => Vec::new(),
        };
        Ok(Self { xy, maxima })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    #[test]
    fn take_rows_picks_particles_in_order() {
        let z: Vec<f32> = (0..12).map(|v| v as f32).collect(); // 4 × 3
        assert_eq!(take_rows(&z, 3, &[2, 0]).unwrap(), vec![6.0, 7.0, 8.0, 0.0, 1.0, 2.0]);
        assert!(take_rows(&z, 3, &[]).unwrap().is_empty());
        assert!(matches!(take_rows(&z, 3, &[4]), Err(Error::Shape { .. })));
        assert!(matches!(take_rows(&z, 5, &[0]), Err(Error::Shape { .. })));
        assert!(matches!(take_rows(&z, 0, &[0]), Err(Error::Param { .. })));
    }

    #[test]
    fn embedding_follows_zdim_and_method() {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let nd = Normal::new(0.0f32, 1.0).unwrap();
        // Two clusters in 3D, separated along x.
        let z: Vec<f32> = (0..200)
            .flat_map(|i| [if i % 2 == 0 { -6.0 } else { 6.0 }, 0.0, 0.0].map(|c| c + nd.sample(&mut rng)))
            .collect();
        let lat = Latents::new(&z, 3).unwrap();
        let pca = embed_2d(lat, Embedding2d::Pca).unwrap().unwrap();
        assert_eq!(pca.len(), 400);
        // PC1 separates the clusters: it has the sign of x for every particle (up to a global flip).
        let sign = pca[0].signum() * z[0].signum();
        assert!((0..200).all(|i| (pca[2 * i] * sign).signum() == z[3 * i].signum()));
        let z1: Vec<f32> = z.iter().step_by(3).copied().collect();
        assert_eq!(embed_2d(Latents::new(&z1, 1).unwrap(), Embedding2d::Pca).unwrap(), None);
        let z2: Vec<f32> = z.chunks(3).flat_map(|r| [r[0], r[1]]).collect();
        let l2 = Latents::new(&z2, 2).unwrap();
        assert_eq!(embed_2d(l2, Embedding2d::Umap { seed: 0 }).unwrap().as_deref(), Some(&z2[..]));
        // The two most populated maxima of the two-cluster layout are one per cluster, each represented
        // by a particle of its own cluster.
        let view = LatentView::compute(l2, Embedding2d::Pca, &MaximaParams::default()).unwrap();
        assert_eq!(view.xy.as_deref(), Some(&z2[..]));
        assert!(view.maxima.len() >= 2, "{:?}", view.maxima);
        let sides: Vec<bool> = view.maxima[..2].iter().map(|m| z2[2 * m.representative] > 0.0).collect();
        assert_ne!(sides[0], sides[1], "{:?}", view.maxima);
        let none =
            LatentView::compute(Latents::new(&z1, 1).unwrap(), Embedding2d::Pca, &MaximaParams::default());
        assert_eq!(none.unwrap(), LatentView { xy: None, maxima: Vec::new() });
    }
}
