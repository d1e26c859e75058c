//! Fourier filters for volumes (`eval_vol --low-pass`).
//!
//! Frequencies are in cycles per pixel: the voxel `[z][y][x]` of the centred transform has
//! `|k| = √((x−D/2)² + (y−D/2)² + (z−D/2)²) / D`. Filtering is done on the centred Hartley transform
//! ([`crate::hartley`]): a real, centrosymmetric mask multiplies Hartley and Fourier coefficients alike,
//! so the result is the same as filtering the FFT, at half the memory.

use rayon::prelude::*;

use crate::hartley::HartleyPlan;
use crate::{Error, Result};

/// Hard spherical low-pass of a `D³` volume in place: keeps the frequencies with `|k| ≤ cutoff`
/// (cycles/px, in (0, 0.5·√3]) and zeroes the rest. For a resolution `res` Å at `apix` Å/px, pass
/// `cutoff = apix / res` (cryoDRGN's `--low-pass`).
pub fn low_pass(vol: &mut [f32], d: usize, cutoff: f64) -> Result<()> {
    if !(cutoff.is_finite() && cutoff > 0.0) {
        return Err(Error::Param {
            name: "low-pass cutoff",
            value: cutoff.to_string(),
            why: "must be a positive frequency in cycles/px (Apix / resolution in Å)".into(),
        });
    }
    apply_radial(vol, d, |k| if k <= cutoff { 1.0 } else { 0.0 })
}

/// Gaussian low-pass in place: multiplies the transform by `exp(−|k|²/(2σ²))`, `σ` in cycles/px. The
/// same blur in real space has `σ_real = 1/(2π σ)` pixels.
pub fn gaussian_low_pass(vol: &mut [f32], d: usize, sigma: f64) -> Result<()> {
    if !(sigma.is_finite() && sigma > 0.0) {
        return Err(Error::Param {
            name: "Gaussian σ",
            value: sigma.to_string(),
            why: "must be positive (cycles/px)".into(),
        });
    }
    apply_radial(vol, d, |k| (-k * k / (2.0 * sigma * sigma)).exp())
}

/// Multiplies the centred Hartley transform of `vol` by `gain(|k|)` and transforms back.
fn apply_radial(vol: &mut [f32], d: usize, gain: impl Fn(f64) -> f64 + Sync) -> Result<()> {
    let plan = HartleyPlan::new(d)?;
    plan.ht3_center(vol)?;
    let c = (d / 2) as f64;
    let inv_d = 1.0 / d as f64;
    vol.par_chunks_mut(d * d).enumerate().for_each(|(z, slab)| {
        let dz = z as f64 - c;
        for (y, row) in slab.chunks_exact_mut(d).enumerate() {
            let dy = y as f64 - c;
            for (x, v) in row.iter_mut().enumerate() {
                let dx = x as f64 - c;
                *v *= gain((dx * dx + dy * dy + dz * dz).sqrt() * inv_d) as f32;
            }
        }
    });
    plan.iht3_center(vol)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A plane wave along x at `f` cycles/px, centred so that it is real and even.
    fn wave(d: usize, f: f64) -> Vec<f32> {
        (0..d * d * d)
            .map(|i| (2.0 * std::f64::consts::PI * f * ((i % d) as f64 - (d / 2) as f64)).cos() as f32)
            .collect()
    }

    #[test]
    fn hard_low_pass_keeps_low_and_removes_high_waves() {
        let d = 16;
        let (low, high) = (wave(d, 2.0 / 16.0), wave(d, 6.0 / 16.0));
        let mut v: Vec<f32> = low.iter().zip(&high).map(|(a, b)| a + b).collect();
        low_pass(&mut v, d, 0.25).unwrap();
        let worst = v.iter().zip(&low).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "max |Δ| {worst}");
        assert!(matches!(low_pass(&mut v, d, 0.0), Err(Error::Param { .. })));
    }

    #[test]
    fn gaussian_low_pass_scales_a_wave_by_its_gain() {
        let d = 16;
        let f = 4.0 / 16.0;
        let mut v = wave(d, f);
        gaussian_low_pass(&mut v, d, 0.1).unwrap();
        let g = (-f * f / (2.0 * 0.01)).exp() as f32;
        let want = wave(d, f);
        let worst = v.iter().zip(&want).map(|(a, b)| (a - g * b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "max |Δ| {worst}");
    }
}
