//! Convergence diagnostics across training epochs (cryoDRGN `analyze_convergence`; Zhong et al.'s
//! "convergence heuristics"): has the latent space stopped changing?
//!
//! - [`LatentShiftTracker`]: per pair of analysed epochs, the median particle displacement ‖Δz‖ and the
//!   median cosine / dot product between a particle's displacement and its previous one.
//! - [`take_rows`], [`embed_2d`] and [`LatentView`]: the followed subset of an epoch, its 2D layout
//!   (z, PCA or UMAP) and the density maxima on it.
//! - [`density_maxima`] and [`match_maxima`]: local maxima of the 2D (UMAP) density per epoch and how
//!   they persist, matched by the particles in their basins.
//! - [`VolumeConsistency`]: the masked CC and FSC of volumes at the maxima between epochs
//!   ([`VolumeConsistency::measure`]; the binary, which has the decoder, generates and reads them).
//! - [`verdict`]: one line saying whether the latent has settled, by the rule on [`VerdictRule`].

mod maxima;
mod shift;
mod view;
mod volumes;

pub use maxima::{density_maxima, match_maxima, DensityMaximum, MaximaMatch, MaximaParams};
pub use shift::{latent_spread, LatentShift, LatentShiftTracker};
pub use view::{embed_2d, take_rows, Embedding2d, LatentView};
pub use volumes::{median_cc_by_epoch, VolumeConsistency};

/// Thresholds of the convergence verdict. `Default`: the last 3 analysed steps must each move the
/// median particle by ≤ 5% of the latent spread, with median cosine ≤ 0.5 between successive
/// displacements (jitter, not drift); the last maxima match must have mean basin Jaccard ≥ 0.5; the
/// last epoch's median masked CC between volumes at the maxima must be ≥ 0.95. Missing evidence
/// (no maxima or no volumes given) is not judged.
#[derive(Clone, Debug)]
pub struct VerdictRule {
    /// Number of most recent epoch steps that must all satisfy the shift criteria.
    pub window: usize,
    /// Largest allowed median ‖Δz‖ as a fraction of [`latent_spread`].
    pub max_shift_fraction: f64,
    /// Largest allowed median cosine between successive displacements.
    pub max_cosine: f64,
    /// Smallest allowed mean Jaccard of the last maxima match.
    pub min_jaccard: f64,
    /// Smallest allowed median masked CC of volumes at the last epoch.
    pub min_cc: f64,
}

impl Default for VerdictRule {
    fn default() -> Self {
        Self { window: 3, max_shift_fraction: 0.05, max_cosine: 0.5, min_jaccard: 0.5, min_cc: 0.95 }
    }
}

/// What the verdict is based on.
#[derive(Clone, Copy, Debug)]
pub struct ConvergenceEvidence<'a> {
    /// Latent shifts in epoch order (from [`LatentShiftTracker`]).
    pub shifts: &'a [LatentShift],
    /// Spread of the latest latents ([`latent_spread`]).
    pub spread: f64,
    /// Maxima matches in epoch order (may be empty).
    pub maxima: &'a [MaximaMatch],
    /// Volume comparisons (may be empty).
    pub volumes: &'a [VolumeConsistency],
}

/// Whether the latent space has settled, with a one-line reason (see [`VerdictRule`]).
pub fn verdict(ev: &ConvergenceEvidence<'_>, rule: &VerdictRule) -> (bool, String) {
    let window = rule.window.max(1);
    if ev.shifts.len() < window {
        return (
            false,
            format!(
                "not settled: {} epoch step(s) analysed, {window} needed to judge (analyse more epochs or a smaller --epoch-interval)",
                ev.shifts.len()
            ),
        );
    }
    let recent = &ev.shifts[ev.shifts.len() - window..];
    let limit = rule.max_shift_fraction * ev.spread;
    let pct = |m: f64| if ev.spread > 0.0 { 100.0 * m / ev.spread } else { f64::INFINITY };
    if let Some(s) = recent.iter().find(|s| s.median_magnitude > limit) {
        return (
            false,
            format!(
                "not settled: median latent shift {}→{} is {:.1}% of the latent spread (limit {:.1}%)",
                s.previous_epoch,
                s.epoch,
                pct(s.median_magnitude),
                100.0 * rule.max_shift_fraction
            ),
        );
    }
    if let Some(s) = recent.iter().find(|s| s.median_cosine.is_some_and(|c| c > rule.max_cosine)) {
        return (
            false,
            format!(
                "not settled: particles still drift consistently at epoch {} (median cosine of successive shifts {:.2} > {:.2})",
                s.epoch,
                s.median_cosine.unwrap_or(0.0),
                rule.max_cosine
            ),
        );
    }
    let mut extra = String::new();
    if let Some(m) = ev.maxima.last() {
        if m.mean_jaccard < rule.min_jaccard {
            return (
                false,
                format!(
                    "not settled: density maxima changed at epoch {} (mean basin overlap {:.2} < {:.2}; {} → {} maxima)",
                    m.epoch, m.mean_jaccard, rule.min_jaccard, m.counts.0, m.counts.1
                ),
            );
        }
        extra.push_str(&format!(", density maxima stable (overlap {:.2})", m.mean_jaccard));
    }
    if let Some(&(epoch, cc)) = median_cc_by_epoch(ev.volumes).last() {
        if cc < rule.min_cc {
            return (
                false,
                format!("not settled: volumes at the maxima still change at epoch {epoch} (median CC {cc:.3} < {:.3})", rule.min_cc),
            );
        }
        extra.push_str(&format!(", volumes agree (median CC {cc:.3})"));
    }
    let worst = recent.iter().map(|s| s.median_magnitude).fold(0.0, f64::max);
    (
        true,
        format!(
            "settled: median latent shift ≤ {:.1}% of the spread over the last {window} step(s) (to epoch {}){extra}",
            pct(worst),
            recent[window - 1].epoch
        ),
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::latents::Latents;
    use rand::SeedableRng;
    use rand_distr::{Distribution, Normal};

    /// Latents of 600 particles in 3 clusters (zdim 3) that drift for 10 epochs, then only jitter.
    fn epochs() -> Vec<Vec<f32>> {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(9);
        let nd = Normal::new(0.0f32, 1.0).unwrap();
        let centres = [[0.0f32, 0.0, 0.0], [8.0, 0.0, 0.0], [0.0, 8.0, 0.0]];
        let fin: Vec<f32> =
            (0..600).flat_map(|i| centres[i % 3].map(|c| c + 0.6 * nd.sample(&mut rng))).collect();
        let offset: Vec<f32> = (0..600 * 3).map(|_| 3.0 * nd.sample(&mut rng)).collect();
        (1..=20)
            .map(|e| {
                let drift = (10.0 - e as f32).max(0.0) / 10.0;
                fin.iter().zip(&offset).map(|(f, o)| f + drift * o + 0.01 * nd.sample(&mut rng)).collect()
            })
            .collect()
    }

    fn judge(zs: &[Vec<f32>], upto: usize) -> (bool, String) {
        let mut tracker = LatentShiftTracker::new();
        let mut shifts = Vec::new();
        let mut matches = Vec::new();
        let mut prev_maxima: Option<Vec<DensityMaximum>> = None;
        for (e, z) in zs.iter().enumerate().take(upto) {
            let l = Latents::new(z, 3).unwrap();
            shifts.extend(tracker.push(e + 1, l).unwrap());
            // The first two latent dimensions stand in for a UMAP.
            let xy: Vec<f32> = z.chunks(3).flat_map(|r| [r[0], r[1]]).collect();
            let maxima = density_maxima(&xy, l, &MaximaParams::default()).unwrap();
            if let Some(p) = &prev_maxima {
                matches.push(match_maxima(e + 1, p, &maxima));
            }
            prev_maxima = Some(maxima);
        }
        let spread = latent_spread(Latents::new(&zs[upto - 1], 3).unwrap());
        verdict(
            &ConvergenceEvidence { shifts: &shifts, spread, maxima: &matches, volumes: &[] },
            &VerdictRule::default(),
        )
    }

    #[test]
    fn drifting_then_settled() {
        let zs = epochs();
        let (ok, why) = judge(&zs, 2);
        assert!(!ok && why.contains("needed"), "{why}");
        let (ok, why) = judge(&zs, 7);
        assert!(!ok && why.contains("shift"), "{why}");
        let (ok, why) = judge(&zs, 20);
        assert!(ok, "{why}");
        assert!(why.starts_with("settled") && why.contains("maxima stable"), "{why}");
    }

    #[test]
    fn poor_volume_agreement_blocks_the_verdict() {
        let shifts: Vec<LatentShift> = (2..6)
            .map(|e| LatentShift {
                epoch: e,
                previous_epoch: e - 1,
                median_magnitude: 0.01,
                median_cosine: Some(0.0),
                median_dot: Some(0.0),
            })
            .collect();
        let vol = |cc| VolumeConsistency {
            epoch: 5,
            previous_epoch: 4,
            maximum: 0,
            cc_masked: cc,
            fsc_freq: vec![],
            fsc: vec![],
        };
        let rule = VerdictRule::default();
        let (ok, why) = verdict(
            &ConvergenceEvidence { shifts: &shifts, spread: 1.0, maxima: &[], volumes: &[vol(0.8)] },
            &rule,
        );
        assert!(!ok && why.contains("CC"), "{why}");
        let (ok, _) = verdict(
            &ConvergenceEvidence { shifts: &shifts, spread: 1.0, maxima: &[], volumes: &[vol(0.99)] },
            &rule,
        );
        assert!(ok);
        // Consistent drift (cosine 0.9) is not settled even when small.
        let drifting: Vec<LatentShift> =
            shifts.iter().map(|s| LatentShift { median_cosine: Some(0.9), ..s.clone() }).collect();
        let (ok, why) = verdict(
            &ConvergenceEvidence { shifts: &drifting, spread: 1.0, maxima: &[], volumes: &[] },
            &rule,
        );
        assert!(!ok && why.contains("drift"), "{why}");
    }
}
