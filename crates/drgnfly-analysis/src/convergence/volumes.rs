//! Decoder convergence bookkeeping: volumes generated at the density maxima's representative
//! particles are compared between analysed epochs (cryoDRGN `analyze_convergence` plots 05–07:
//! masked map-to-map correlation and FSC). The volumes and the numbers come from the binary, which has
//! the decoder and `drgnfly-em`'s FSC; this module only holds and summarises them.

use crate::linalg::median;

/// Agreement of the volume of one maximum between two analysed epochs.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct VolumeConsistency {
    /// The later epoch.
    pub epoch: usize,
    /// The earlier epoch.
    pub previous_epoch: usize,
    /// Index of the maximum (in the final epoch's maxima list).
    pub maximum: usize,
    /// Real-space Pearson correlation of the two volumes inside the mask.
    pub cc_masked: f64,
    /// Spatial frequency of each FSC shell (1/Å, or 1/px when the pixel size is unknown), increasing.
    pub fsc_freq: Vec<f64>,
    /// FSC per shell, same length as `fsc_freq`.
    pub fsc: Vec<f64>,
}

impl VolumeConsistency {
    /// The frequency where the FSC first falls below `threshold` (e.g. 0.5 or 0.143), linearly
    /// interpolated between shells; `None` if it never does (agreement out to Nyquist).
    pub fn fsc_crossing(&self, threshold: f64) -> Option<f64> {
        let pts: Vec<(f64, f64)> = self.fsc_freq.iter().copied().zip(self.fsc.iter().copied()).collect();
        let first = pts.iter().position(|&(_, v)| v < threshold)?;
        if first == 0 {
            return Some(pts[0].0);
        }
        let ((f0, v0), (f1, v1)) = (pts[first - 1], pts[first]);
        Some(f0 + (v0 - threshold) / (v0 - v1) * (f1 - f0))
    }

    /// FSC in the last (Nyquist) shell (cryoDRGN plot 07).
    pub fn fsc_at_nyquist(&self) -> Option<f64> {
        self.fsc.last().copied()
    }
}

/// Median masked CC over maxima, per later epoch, sorted by epoch.
pub fn median_cc_by_epoch(scores: &[VolumeConsistency]) -> Vec<(usize, f64)> {
    let mut epochs: Vec<usize> = scores.iter().map(|s| s.epoch).collect();
    epochs.sort_unstable();
    epochs.dedup();
    epochs
        .into_iter()
        .filter_map(|e| {
            let cc: Vec<f32> = scores.iter().filter(|s| s.epoch == e).map(|s| s.cc_masked as f32).collect();
            median(&cc).map(|m| (e, m))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn score(epoch: usize, maximum: usize, cc: f64) -> VolumeConsistency {
        VolumeConsistency {
            epoch,
            previous_epoch: epoch - 5,
            maximum,
            cc_masked: cc,
            fsc_freq: vec![0.0, 0.1, 0.2, 0.3],
            fsc: vec![1.0, 0.9, 0.3, 0.1],
        }
    }

    #[test]
    fn fsc_crossing_interpolates() {
        let s = score(10, 0, 0.9);
        // Between 0.1 (0.9) and 0.2 (0.3): 0.5 is crossed 2/3 of the way.
        assert!((s.fsc_crossing(0.5).unwrap() - (0.1 + 0.4 / 0.6 * 0.1)).abs() < 1e-12);
        assert_eq!(s.fsc_crossing(0.05), None);
        assert_eq!(s.fsc_at_nyquist(), Some(0.1));
    }

    #[test]
    fn median_per_epoch() {
        let s = [score(10, 0, 0.5), score(10, 1, 0.7), score(10, 2, 0.9), score(15, 0, 0.99)];
        let m = median_cc_by_epoch(&s);
        assert_eq!(m.len(), 2);
        assert!((m[0].1 - 0.7).abs() < 1e-6 && m[0].0 == 10);
        assert!((m[1].1 - 0.99).abs() < 1e-6);
    }
}
