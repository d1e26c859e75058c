//! Fourier cropping of images and volumes (cryoDRGN `downsample`).
//!
//! The centred Hartley transform of the `D₀` image is cropped to its central `D × D` block (rows and
//! columns `D₀/2 − D/2 … D₀/2 + D/2 − 1`, so the origin stays at index `D/2`) and inverse-transformed with
//! the `1/D²` of the smaller box. As in cryoDRGN, pixel values therefore scale by `(D₀/D)²` (volumes:
//! `(D₀/D)³`): the transform is unnormalised, so the cropped coefficients keep the `D₀`-box sums. The
//! pixel size becomes `Apix·D₀/D` ([`Downsampler::apix`]). Both sides must be even, `D ≤ D₀`.

use rayon::prelude::*;

use crate::hartley::HartleyPlan;
use crate::{Error, Result};

/// A planned `D₀ → D` Fourier crop. `Send + Sync`.
#[derive(Debug, Clone)]
pub struct Downsampler {
    d0: usize,
    d: usize,
    big: HartleyPlan,
    small: HartleyPlan,
}

impl Downsampler {
    /// Plans cropping from `d0` to `d` (both even, `2 ≤ d ≤ d0`).
    pub fn new(d0: usize, d: usize) -> Result<Self> {
        if d > d0 || !d.is_multiple_of(2) || d < 2 {
            return Err(Error::Param {
                name: "-D",
                value: d.to_string(),
                why: format!("the new box must be even and between 2 and the original {d0}"),
            });
        }
        Ok(Self { d0, d, big: HartleyPlan::new(d0)?, small: HartleyPlan::new(d)? })
    }

    /// The new pixel size, `apix₀·D₀/D` Å.
    pub fn apix(&self, apix0: f64) -> f64 {
        apix0 * self.d0 as f64 / self.d as f64
    }

    /// Crops a batch of images `(B, D₀, D₀)` into `(B, D, D)`, in parallel.
    pub fn images(&self, input: &[f32], out: &mut [f32]) -> Result<()> {
        let (n0, n) = (self.d0 * self.d0, self.d * self.d);
        if !input.len().is_multiple_of(n0)
            || out.len() / n != input.len() / n0
            || !out.len().is_multiple_of(n)
        {
            return Err(Error::Shape {
                op: "downsample images",
                expected: format!("(B, {0}, {0}) in and (B, {1}, {1}) out", self.d0, self.d),
                got: format!("{} values in, {} out", input.len(), out.len()),
            });
        }
        let off = self.d0 / 2 - self.d / 2;
        input.par_chunks(n0).zip(out.par_chunks_mut(n)).try_for_each_init(
            || (self.big.make_scratch(), self.small.make_scratch(), vec![0.0f32; n0]),
            |(s0, s, buf), (src, dst)| {
                buf.copy_from_slice(src);
                self.big.ht2_center(buf, s0)?;
                for (y, row) in dst.chunks_exact_mut(self.d).enumerate() {
                    let at = (y + off) * self.d0 + off;
                    row.copy_from_slice(&buf[at..at + self.d]);
                }
                self.small.iht2_center(dst, s)
            },
        )
    }

    /// Crops a `D₀³` volume to `D³` (3D Hartley transforms).
    pub fn volume(&self, vol: &[f32]) -> Result<Vec<f32>> {
        let (d0, d) = (self.d0, self.d);
        if vol.len() != d0 * d0 * d0 {
            return Err(Error::Shape {
                op: "downsample volume",
                expected: format!("({d0}, {d0}, {d0})"),
                got: format!("{} values", vol.len()),
            });
        }
        let mut ht = vol.to_vec();
        self.big.ht3_center(&mut ht)?;
        let off = d0 / 2 - d / 2;
        let mut out = vec![0.0f32; d * d * d];
        for z in 0..d {
            for y in 0..d {
                let at = ((z + off) * d0 + y + off) * d0 + off;
                out[(z * d + y) * d..(z * d + y + 1) * d].copy_from_slice(&ht[at..at + d]);
            }
        }
        self.small.iht3_center(&mut out)?;
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A band-limited test function with `f` cycles per box along x and `g` along y (and z), centred.
    fn wave(n: usize, pos: [f64; 3], f: f64, g: f64) -> f64 {
        let c = (n / 2) as f64;
        let tau = std::f64::consts::TAU;
        (tau * f * (pos[0] - c) / n as f64).cos()
            + 0.5 * (tau * g * (pos[1] - c) / n as f64).sin()
            + 0.25 * (tau * g * (pos[2] - c) / n as f64).cos()
    }

    #[test]
    fn band_limited_images_are_resampled_exactly_with_cryodrgn_scaling() {
        let (d0, d) = (32, 12);
        let ds = Downsampler::new(d0, d).unwrap();
        let img: Vec<f32> = (0..d0 * d0)
            .map(|i| wave(d0, [(i % d0) as f64, (i / d0) as f64, 16.0], 3.0, 2.0) as f32)
            .collect();
        let two: Vec<f32> = img.iter().chain(&img).copied().collect();
        let mut out = vec![0.0f32; 2 * d * d];
        ds.images(&two, &mut out).unwrap();
        let scale = (d0 as f64 / d as f64).powi(2);
        for (i, &v) in out.iter().enumerate() {
            let j = i % (d * d);
            let want = scale * wave(d, [(j % d) as f64, (j / d) as f64, 6.0], 3.0, 2.0);
            assert!((v as f64 - want).abs() < 1e-3, "pixel {i}: {v} vs {want}");
        }
        assert!((ds.apix(1.5) - 4.0).abs() < 1e-12);
        assert!(matches!(ds.images(&two[1..], &mut out), Err(Error::Shape { .. })));
    }

    #[test]
    fn volumes_scale_by_the_cube() {
        let (d0, d) = (16, 8);
        let ds = Downsampler::new(d0, d).unwrap();
        let vol: Vec<f32> = (0..d0 * d0 * d0)
            .map(|i| {
                wave(d0, [(i % d0) as f64, ((i / d0) % d0) as f64, (i / (d0 * d0)) as f64], 2.0, 1.0) as f32
            })
            .collect();
        let out = ds.volume(&vol).unwrap();
        for (i, &v) in out.iter().enumerate() {
            let want = 8.0 * wave(d, [(i % d) as f64, ((i / d) % d) as f64, (i / (d * d)) as f64], 2.0, 1.0);
            assert!((v as f64 - want).abs() < 1e-3, "voxel {i}: {v} vs {want}");
        }
        assert!(matches!(Downsampler::new(16, 18), Err(Error::Param { .. })));
        assert!(matches!(Downsampler::new(16, 7), Err(Error::Param { .. })));
    }
}
