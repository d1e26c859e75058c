//! Traversal along one principal component (cryoDRGN `pc_traversal` and `analyze`'s `pcK/` series).

use crate::error::{Error, Result};
use crate::latents::Latents;
use crate::linalg::percentile_sorted;
use crate::pca::Pca;

/// Where the traversal points lie along the PC.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum PcSpacing {
    /// Evenly spaced from the 5th to the 95th percentile of the particles' projections (default).
    Percentile5To95,
    /// Evenly spaced between two PC values (`--lim LO HI`).
    Limits(f64, f64),
    /// At the 5th, …, 95th percentiles themselves, evenly spaced in percentile
    /// (`--use-percentile-spacing`): denser where particles are.
    PercentileSpaced,
}

/// Points along one principal component.
#[derive(Clone, Debug)]
pub struct PcTraversal {
    /// The component, 1-based as on the command line (`--pc 1`).
    pub pc: usize,
    /// The PC coordinate of each point.
    pub coords: Vec<f64>,
    /// The points in latent space, M×zdim row-major: `μ + coord · v_pc` (other PCs at 0).
    pub z: Vec<f32>,
}

/// `n` points along principal component `pc` (1-based), with the other components at 0, mapped back
/// to latent space by the inverse PCA transform.
///
/// Percentiles use numpy's linear interpolation. Errors: `pc` outside 1..=zdim, `n == 0`, latents whose
/// zdim differs from the PCA's.
pub fn pc_traversal(
    pca: &Pca,
    z: Latents<'_>,
    pc: usize,
    n: usize,
    spacing: PcSpacing,
) -> Result<PcTraversal> {
    if pc == 0 || pc > pca.zdim {
        return Err(Error::Param {
            name: "--pc",
            value: pc.to_string(),
            why: format!("principal components are numbered 1..={}", pca.zdim),
        });
    }
    if n == 0 {
        return Err(Error::Param { name: "-n", value: "0".into(), why: "must be at least 1".into() });
    }
    let proj = pca.transform(z, pc)?;
    let mut col: Vec<f32> = proj.chunks_exact(pc).map(|r| r[pc - 1]).collect();
    col.sort_by(f32::total_cmp);
    let pct = |p: f64| percentile_sorted(&col, p).unwrap_or(0.0);
    let coords: Vec<f64> = match spacing {
        PcSpacing::Percentile5To95 => linspace(pct(5.0), pct(95.0), n),
        PcSpacing::Limits(lo, hi) => linspace(lo, hi, n),
        PcSpacing::PercentileSpaced => linspace(5.0, 95.0, n).into_iter().map(pct).collect(),
    };
    let mut y = vec![0.0f32; n * pc];
    for (row, &c) in y.chunks_exact_mut(pc).zip(&coords) {
        row[pc - 1] = c as f32;
    }
    let z = pca.inverse_transform(&y, pc)?;
    Ok(PcTraversal { pc, coords, z })
}

/// numpy `linspace(a, b, n)` (endpoint included; `[a]` for n = 1).
fn linspace(a: f64, b: f64, n: usize) -> Vec<f64> {
    if n == 1 {
        return vec![a];
    }
    (0..n).map(|i| a + (b - a) * i as f64 / (n - 1) as f64).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn points_span_5th_to_95th_percentile_along_pc1() {
        // 101 points on the line z = (t, 2t), t = 0..100: PC1 ∝ (1, 2)/√5, projections t√5 − 50√5.
        let z: Vec<f32> = (0..=100).flat_map(|t| [t as f32, 2.0 * t as f32]).collect();
        let l = Latents::new(&z, 2).unwrap();
        let pca = Pca::fit(l).unwrap();
        let tr = pc_traversal(&pca, l, 1, 10, PcSpacing::Percentile5To95).unwrap();
        let s5 = 5f64.sqrt();
        assert!((tr.coords[0] - (5.0 - 50.0) * s5).abs() < 1e-3);
        assert!((tr.coords[9] - (95.0 - 50.0) * s5).abs() < 1e-3);
        // Back in latent space: first point is t = 5, i.e. z = (5, 10); last is (95, 190).
        assert!((tr.z[0] - 5.0).abs() < 1e-3 && (tr.z[1] - 10.0).abs() < 1e-3, "{:?}", &tr.z[..2]);
        assert!((tr.z[18] - 95.0).abs() < 1e-3 && (tr.z[19] - 190.0).abs() < 1e-3);
        let lim = pc_traversal(&pca, l, 1, 3, PcSpacing::Limits(-1.0, 1.0)).unwrap();
        assert_eq!(lim.coords, vec![-1.0, 0.0, 1.0]);
        // Other PCs at 0: the middle point is the mean.
        assert!((lim.z[2] - 50.0).abs() < 1e-3 && (lim.z[3] - 100.0).abs() < 1e-3);
        assert!(matches!(
            pc_traversal(&pca, l, 3, 10, PcSpacing::PercentileSpaced),
            Err(Error::Param { .. })
        ));
    }

    #[test]
    fn percentile_spacing_follows_the_data() {
        // Skewed data along one axis: percentile spacing puts points at the data's percentiles.
        let z: Vec<f32> = (0..1000).flat_map(|i| [((i as f32) / 100.0).powi(2), 0.0]).collect();
        let l = Latents::new(&z, 2).unwrap();
        let pca = Pca::fit(l).unwrap();
        let tr = pc_traversal(&pca, l, 1, 3, PcSpacing::PercentileSpaced).unwrap();
        let proj = pca.transform(l, 1).unwrap();
        let median = crate::linalg::median(&proj).unwrap();
        assert!((tr.coords[1] - median).abs() < 1e-4);
    }
}
