//! Encoder convergence: how far particles move in latent space between epochs, and whether they keep
//! moving the same way (cryoDRGN `analyze_convergence`, plot 02 "encoder latent vector shifts").

use crate::error::{Error, Result};
use crate::latents::Latents;
use crate::linalg::median;

/// Movement of the latents from one analysed epoch to the next.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct LatentShift {
    /// The later epoch (1-based, as in `z.N.pkl`).
    pub epoch: usize,
    /// The earlier epoch.
    pub previous_epoch: usize,
    /// Median over particles of ‖Δz‖ = ‖z_epoch − z_previous‖.
    pub median_magnitude: f64,
    /// Median over particles of cos(Δz_this, Δz_previous step); `None` for the first step. Near 1 while
    /// the latent drifts consistently, near 0 once movements are random jitter. Particles with a zero
    /// displacement in either step are left out.
    pub median_cosine: Option<f64>,
    /// Median over particles of Δz_this · Δz_previous step; `None` for the first step.
    pub median_dot: Option<f64>,
}

/// Streaming computation of [`LatentShift`]s: push one epoch's latents at a time (memory: two epochs).
#[derive(Debug, Default)]
pub struct LatentShiftTracker {
    previous: Option<(usize, Vec<f32>, usize)>,
    previous_step: Option<Vec<f32>>,
}

impl LatentShiftTracker {
    /// A tracker with no epoch seen yet.
    pub fn new() -> Self {
        Self::default()
    }

    /// Add the latents of `epoch`; returns the shift from the previously pushed epoch (`None` for the
    /// first). All epochs must hold the same particles in the same order.
    pub fn push(&mut self, epoch: usize, z: Latents<'_>) -> Result<Option<LatentShift>> {
        let Some((prev_epoch, prev, zdim)) = self.previous.take() else {
            self.previous = Some((epoch, z.as_slice().to_vec(), z.zdim()));
            return Ok(None);
        };
        if zdim != z.zdim() || prev.len() != z.as_slice().len() {
            return Err(Error::Shape {
                what: "latents across epochs",
                expected: format!("{} × {zdim} as in epoch {prev_epoch}", prev.len() / zdim),
                got: format!("{} × {} in epoch {epoch}", z.len(), z.zdim()),
            });
        }
        let step: Vec<f32> = z.as_slice().iter().zip(&prev).map(|(a, b)| a - b).collect();
        let mags: Vec<f32> =
            step.chunks_exact(zdim).map(|d| d.iter().map(|x| x * x).sum::<f32>().sqrt()).collect();
        let (median_cosine, median_dot) = match &self.previous_step {
            None => (None, None),
            Some(last) => {
                let mut cos = Vec::with_capacity(mags.len());
                let mut dots = Vec::with_capacity(mags.len());
                for (a, b) in step.chunks_exact(zdim).zip(last.chunks_exact(zdim)) {
                    let dot: f32 = a.iter().zip(b).map(|(x, y)| x * y).sum();
                    let na: f32 = a.iter().map(|x| x * x).sum::<f32>().sqrt();
                    let nb: f32 = b.iter().map(|x| x * x).sum::<f32>().sqrt();
                    dots.push(dot);
                    if na > 0.0 && nb > 0.0 {
                        cos.push(dot / (na * nb));
                    }
                }
                (median(&cos), median(&dots))
            }
        };
        let shift = LatentShift {
            epoch,
            previous_epoch: prev_epoch,
            median_magnitude: median(&mags).unwrap_or(0.0),
            median_cosine,
            median_dot,
        };
        self.previous = Some((epoch, z.as_slice().to_vec(), zdim));
        self.previous_step = Some(step);
        Ok(Some(shift))
    }
}

/// The scale shifts are judged against: the RMS distance of particles to their centroid,
/// √(Σ_d Var(z_d)).
pub fn latent_spread(z: Latents<'_>) -> f64 {
    let (n, d) = (z.len() as f64, z.zdim());
    if z.is_empty() {
        return 0.0;
    }
    let mut s = vec![0.0f64; d];
    let mut s2 = vec![0.0f64; d];
    for row in z.as_slice().chunks_exact(d) {
        for j in 0..d {
            s[j] += row[j] as f64;
            s2[j] += (row[j] as f64).powi(2);
        }
    }
    (0..d).map(|j| (s2[j] / n - (s[j] / n).powi(2)).max(0.0)).sum::<f64>().sqrt()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shifts_by_hand() {
        // Two particles in 2D. Epoch 1 → 2: both move +1 in x. Epoch 2 → 3: particle 0 moves +1 in x
        // again (cos 1, dot 1), particle 1 moves +2 in y (cos 0, dot 0).
        let e1 = [0.0f32, 0.0, 5.0, 5.0];
        let e2 = [1.0f32, 0.0, 6.0, 5.0];
        let e3 = [2.0f32, 0.0, 6.0, 7.0];
        let mut t = LatentShiftTracker::new();
        assert_eq!(t.push(1, Latents::new(&e1, 2).unwrap()).unwrap(), None);
        let s = t.push(2, Latents::new(&e2, 2).unwrap()).unwrap().unwrap();
        assert_eq!((s.median_magnitude, s.median_cosine), (1.0, None));
        let s = t.push(3, Latents::new(&e3, 2).unwrap()).unwrap().unwrap();
        assert_eq!((s.epoch, s.previous_epoch), (3, 2));
        assert_eq!(s.median_magnitude, 1.5);
        assert_eq!(s.median_cosine, Some(0.5));
        assert_eq!(s.median_dot, Some(0.5));
        assert!(matches!(t.push(4, Latents::new(&e3[..2], 2).unwrap()), Err(Error::Shape { .. })));
        // Spread of {(0,0),(2,0)}: variance 1 in x → 1.
        assert_eq!(latent_spread(Latents::new(&[0.0, 0.0, 2.0, 0.0], 2).unwrap()), 1.0);
    }
}
