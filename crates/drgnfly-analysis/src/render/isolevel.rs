//! [`IsoLevel`]: how the isosurface threshold is chosen.

use super::volume::VolumeRef;
use crate::viz_error::{VizError, VizResult};

/// The density level at which a map is surfaced.
///
/// The default, `MassFraction(0.8)`, measures mass above the solvent level: with `m` the median voxel
/// (the solvent, since particles fill well under half of the box) the level `t` is the highest one with
/// `Σ_{v ≥ t} (v − m) ≥ f · Σ_{v > m} (v − m)`, i.e. the surface encloses the densest voxels that hold
/// 80% of the excess mass. Unlike a fixed σ multiple this does not depend on how much empty box
/// surrounds the particle, so maps at different box sizes look alike; for a Gaussian blob f = 0.8 puts
/// the surface at ≈ 2.2 σ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum IsoLevel {
    /// This density value.
    Value(f32),
    /// Mean + k · standard deviation of all voxels.
    MeanPlusStd(f32),
    /// Enclose this fraction (0 < f < 1) of the mass above the median (see the type's docs).
    MassFraction(f32),
}

impl Default for IsoLevel {
    fn default() -> Self {
        IsoLevel::MassFraction(0.8)
    }
}

impl IsoLevel {
    /// The threshold for `vol`.
    ///
    /// Errors: [`VizError::Invalid`] for a non-finite value or k, or f outside (0, 1).
    pub fn resolve(&self, vol: &VolumeRef) -> VizResult<f32> {
        let data = vol.data();
        match *self {
            IsoLevel::Value(v) if v.is_finite() => Ok(v),
            IsoLevel::MeanPlusStd(k) if k.is_finite() => {
                let n = data.len() as f64;
                let mean = data.iter().map(|&v| v as f64).sum::<f64>() / n;
                let var = data.iter().map(|&v| (v as f64 - mean).powi(2)).sum::<f64>() / n;
                Ok((mean + k as f64 * var.sqrt()) as f32)
            }
            IsoLevel::MassFraction(f) if f > 0.0 && f < 1.0 => {
                let mut sorted = data.to_vec();
                sorted.sort_unstable_by(|a, b| b.total_cmp(a));
                let median = sorted[sorted.len() / 2] as f64;
                let total: f64 = sorted.iter().map(|&v| (v as f64 - median).max(0.0)).sum();
                if total <= 0.0 {
                    // A constant map: nothing stands out; surface at its value.
                    return Ok(sorted[0]);
                }
                let goal = f as f64 * total;
                let mut acc = 0.0;
                for &v in &sorted {
                    acc += v as f64 - median;
                    if acc >= goal {
                        return Ok(v);
                    }
                }
                Ok(median as f32)
            }
            other => Err(VizError::invalid(
                "isosurface level",
                format!("{other:?} is not usable: values and k must be finite, a mass fraction in (0, 1)"),
            )),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn levels_match_hand_computed_values() {
        // 8 voxels: six at 0 (solvent), two of mass 1 and 3.
        let data = [0.0, 0.0, 0.0, 3.0, 0.0, 1.0, 0.0, 0.0];
        let vol = VolumeRef::cube(&data, 2).unwrap();
        assert_eq!(IsoLevel::Value(0.5).resolve(&vol).unwrap(), 0.5);
        // mean 0.5, std sqrt((6·0.25 + 0.25 + 6.25)/8) = 1
        assert!((IsoLevel::MeanPlusStd(2.0).resolve(&vol).unwrap() - 2.5).abs() < 1e-6);
        // 75% of the mass (3 of 4) is in the 3.0 voxel; 80% needs the 1.0 voxel too.
        assert_eq!(IsoLevel::MassFraction(0.7).resolve(&vol).unwrap(), 3.0);
        assert_eq!(IsoLevel::MassFraction(0.8).resolve(&vol).unwrap(), 1.0);
        assert!(matches!(IsoLevel::MassFraction(1.5).resolve(&vol), Err(VizError::Invalid { .. })));
        assert!(matches!(IsoLevel::Value(f32::NAN).resolve(&vol), Err(VizError::Invalid { .. })));
    }
}
