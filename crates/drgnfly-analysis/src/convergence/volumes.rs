//! Decoder convergence bookkeeping: volumes generated at the density maxima's representative
//! particles are compared between analysed epochs (cryoDRGN `analyze_convergence` plots 05–07:
//! masked map-to-map correlation and FSC). The binary, which has the decoder, generates and reads the
//! volumes; [`VolumeConsistency::measure`] compares two of them (with `drgnfly-em`'s mask and FSC), and
//! [`median_cc_by_epoch`] summarises the comparisons.

use drgnfly_em::fsc::fsc;
use drgnfly_em::mask::CosineDilationMask;

use crate::error::{Error, Result};
use crate::linalg::median;
use crate::metrics::pearson;

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
    /// Compares the volume of maximum `maximum` at `previous_epoch` (`previous`) with the one at
    /// `epoch` (`current`), both `D³` (`shape` = `[D, D, D]`, `[z][y][x]`): the mask is `mask_rule`
    /// applied to the **later** volume; `cc_masked` is the [`pearson`] correlation of the two masked
    /// volumes and the FSC is `drgnfly_em::fsc::fsc` with that mask. FSC frequencies are in 1/Å when
    /// `apix` (Å/px) is given, else in cycles/px.
    ///
    /// Errors: [`Error::Shape`] unless the box is cubic and both volumes have `D³` values;
    /// [`Error::Em`] from the mask or the FSC (e.g. an odd box).
    pub fn measure(
        previous: &[f32],
        current: &[f32],
        shape: [usize; 3],
        mask_rule: &CosineDilationMask,
        apix: Option<f32>,
        (previous_epoch, epoch, maximum): (usize, usize, usize),
    ) -> Result<Self> {
        let n: usize = shape.iter().product();
        if shape[0] != shape[1] || shape[1] != shape[2] || previous.len() != n || current.len() != n {
            return Err(Error::Shape {
                what: "volume consistency",
                expected: format!("two cubic volumes of shape {shape:?} ({n} values each)"),
                got: format!("{} and {} values", previous.len(), current.len()),
            });
        }
        let mask = mask_rule.compute(current, shape)?;
        let masked = |v: &[f32]| -> Vec<f32> { v.iter().zip(&mask).map(|(v, m)| v * m).collect() };
        let cc_masked = pearson(&masked(previous), &masked(current))?;
        let curve = fsc(previous, current, shape[0], Some(&mask))?;
        let scale = apix.map_or(1.0, |a| 1.0 / f64::from(a));
        Ok(Self {
            epoch,
            previous_epoch,
            maximum,
            cc_masked,
            fsc_freq: curve.freq.iter().map(|f| f * scale).collect(),
            fsc: curve.fsc,
        })
    }

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

    /// A smooth blob on a ramp, `D³`.
    fn blob(d: usize, width: f32) -> Vec<f32> {
        let c = d as f32 / 2.0;
        (0..d * d * d)
            .map(|i| {
                let (z, y, x) = ((i / (d * d)) as f32, ((i / d) % d) as f32, (i % d) as f32);
                let r2 = (x - c).powi(2) + (y - c).powi(2) + (z - c).powi(2);
                (-r2 / (2.0 * width * width)).exp() + 0.01 * x
            })
            .collect()
    }

    #[test]
    fn a_volume_agrees_with_itself_and_not_with_a_different_one() {
        let d = 16;
        let rule = CosineDilationMask::from_angstrom(None, 1.0, 2.0, 1.0).unwrap();
        let v = blob(d, 2.5);
        let same = VolumeConsistency::measure(&v, &v, [d; 3], &rule, Some(2.0), (4, 5, 1)).unwrap();
        assert_eq!((same.previous_epoch, same.epoch, same.maximum), (4, 5, 1));
        assert!((same.cc_masked - 1.0).abs() < 1e-9, "cc {}", same.cc_masked);
        assert_eq!(same.fsc.len(), d / 2);
        assert!(same.fsc.iter().all(|f| (f - 1.0).abs() < 1e-6), "{:?}", same.fsc);
        // Frequencies in 1/Å at 2 Å/px: shell i at i/D cycles/px → i/(2D) 1/Å.
        assert!((same.fsc_freq[1] - 1.0 / (2.0 * d as f64)).abs() < 1e-12);
        // A wider blob: still correlated, but not perfectly.
        let other = VolumeConsistency::measure(&blob(d, 4.0), &v, [d; 3], &rule, None, (4, 5, 1)).unwrap();
        assert!(other.cc_masked < 0.999 && other.cc_masked > 0.0, "cc {}", other.cc_masked);
        assert!(other.fsc.iter().any(|&f| f < 0.999));
        assert!(matches!(
            VolumeConsistency::measure(&v, &v[1..], [d; 3], &rule, None, (4, 5, 1)),
            Err(Error::Shape { .. })
        ));
        assert!(matches!(
            VolumeConsistency::measure(&v, &v, [d / 2, d, 2 * d], &rule, None, (4, 5, 1)),
            Err(Error::Shape { .. })
        ));
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
