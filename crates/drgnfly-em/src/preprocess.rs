//! Per-image preprocessing for training (cryoDRGN `ImageDataset._process`), raw `(B, D, D)` real-space
//! images → normalized symmetrized Hartley images `(B, D+1, D+1)`:
//!
//! 1. window: `x ·= W` ([`crate::window::spherical_window_mask`]`(D, window_r, 0.99)`), unless disabled;
//! 2. invert: `x ·= −1` unless `--uninvert-data` (raw particles are dark; see [`crate::ctf`]);
//! 3. centred Hartley transform, then symmetrize to `(D+1)²` ([`crate::hartley`]);
//! 4. normalize: `y = (y − mean)/std` with cryoDRGN's estimate ([`NormEstimator`]): `mean = 0` and `std`
//!    the unbiased standard deviation over all pixels of the symmetrized HTs of the images at indices
//!    `0, s, 2s, …` with `s = N / min(1000, N)` (integer division; [`norm_sample_indices`]). **The window is
//!    not applied for the estimate** (cryoDRGN's quirk, kept so `norm` in config.yaml matches).
//!
//! cryoDRGN casts the window to int for integer-mode MRCs (a 0/1 mask); readers here convert every mode
//! to f32 first, so the soft window is always used.

use rayon::prelude::*;

use crate::hartley::{symmetrize_ht, HartleyPlan, HartleyScratch};
use crate::window::{spherical_window_mask, DEFAULT_WINDOW_R, WINDOW_OUT_R};
use crate::{Error, Result};

/// The HT normalization `(mean, std)`: cryoDRGN's `norm` in config.yaml, reused by volume generation
/// (`volume_HT = decoder_out·std + mean`).
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Normalization {
    /// Subtracted first; cryoDRGN always estimates 0.
    pub mean: f32,
    /// Divided by next.
    pub std: f32,
}

/// Options of the preprocessing pipeline.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct PreprocessConfig {
    /// Inner window radius (`--window-r`, fraction of the half box); `None` = `--no-window`.
    pub window_r: Option<f32>,
    /// Multiply by −1 (cryoDRGN default; `--uninvert-data` turns it off).
    pub invert: bool,
}

impl Default for PreprocessConfig {
    fn default() -> Self {
        Self { window_r: Some(DEFAULT_WINDOW_R), invert: true }
    }
}

/// The image indices cryoDRGN uses to estimate the normalization of an `n`-image dataset:
/// `range(0, n, n // min(1000, n))` (so between 1000 and 1999 images for large n).
pub fn norm_sample_indices(n: usize) -> Vec<usize> {
    if n == 0 {
        return Vec::new();
    }
    let step = n / n.min(1000);
    (0..n).step_by(step).collect()
}

/// Streaming estimate of [`Normalization`]: feed raw images with [`Self::add`], then [`Self::finish`].
/// Sums are in f64, so the order of images does not matter beyond round-off.
#[derive(Debug)]
pub struct NormEstimator {
    plan: HartleyPlan,
    scratch: HartleyScratch,
    image: Vec<f32>,
    sym: Vec<f32>,
    sum: f64,
    sum_sq: f64,
    count: u64,
}

impl NormEstimator {
    /// An estimator for `D × D` images. (Inversion does not change a standard deviation, so it is not an
    /// option here.)
    pub fn new(d: usize) -> Result<Self> {
        let plan = HartleyPlan::new(d)?;
        let scratch = plan.make_scratch();
        Ok(Self {
            plan,
            scratch,
            image: vec![0.0; d * d],
            sym: vec![0.0; (d + 1) * (d + 1)],
            sum: 0.0,
            sum_sq: 0.0,
            count: 0,
        })
    }

    /// Adds one raw image (`D²` values, not windowed).
    pub fn add(&mut self, raw: &[f32]) -> Result<()> {
        if raw.len() != self.image.len() {
            return Err(Error::Shape {
                op: "estimate_norm",
                expected: format!("{} values per image", self.image.len()),
                got: raw.len().to_string(),
            });
        }
        self.image.copy_from_slice(raw);
        self.plan.ht2_center(&mut self.image, &mut self.scratch)?;
        symmetrize_ht(&self.image, self.plan.size(), &mut self.sym)?;
        for &v in &self.sym {
            self.sum += v as f64;
            self.sum_sq += (v as f64) * (v as f64);
        }
        self.count += self.sym.len() as u64;
        Ok(())
    }

    /// `mean = 0` and the unbiased std of everything added. Fails with no images, a zero std (blank
    /// images) or a non-finite one (NaN/Inf pixels).
    pub fn finish(&self) -> Result<Normalization> {
        if self.count < 2 {
            return Err(Error::Param {
                name: "images",
                value: "0".into(),
                why: "need at least one image to estimate the normalization".into(),
            });
        }
        let n = self.count as f64;
        let var = (self.sum_sq - self.sum * self.sum / n) / (n - 1.0);
        let std = var.max(0.0).sqrt() as f32;
        if !(std.is_finite() && std > 0.0) {
            return Err(Error::Param {
                name: "image normalization std",
                value: std.to_string(),
                why: "the sampled images are blank or contain NaN/Inf; check the particle stack".into(),
            });
        }
        Ok(Normalization { mean: 0.0, std })
    }
}

/// cryoDRGN's normalization of an `n`-image dataset of `D × D` images, reading each sampled raw image with
/// `image_at(index)` (any particle source; its error type only needs `From<drgnfly_em::Error>`).
pub fn estimate_norm<E: From<Error>>(
    n: usize,
    d: usize,
    mut image_at: impl FnMut(usize) -> std::result::Result<Vec<f32>, E>,
) -> std::result::Result<Normalization, E> {
    let mut est = NormEstimator::new(d)?;
    for i in norm_sample_indices(n) {
        est.add(&image_at(i)?)?;
    }
    Ok(est.finish()?)
}

/// The planned pipeline for one box size: window, invert, Hartley, symmetrize, normalize.
#[derive(Debug, Clone)]
pub struct Preprocessor {
    plan: HartleyPlan,
    window: Option<Vec<f32>>,
    invert: bool,
    norm: Normalization,
}

impl Preprocessor {
    /// Plans the pipeline for `D × D` images (D even) with a known normalization.
    pub fn new(d: usize, config: &PreprocessConfig, norm: Normalization) -> Result<Self> {
        if !(norm.std.is_finite() && norm.std > 0.0 && norm.mean.is_finite()) {
            return Err(Error::Param {
                name: "norm",
                value: format!("[{}, {}]", norm.mean, norm.std),
                why: "need a finite mean and std > 0 (config.yaml dataset_args.norm)".into(),
            });
        }
        let window = match config.window_r {
            Some(r) => Some(spherical_window_mask(d, r, WINDOW_OUT_R)?),
            None => None,
        };
        Ok(Self { plan: HartleyPlan::new(d)?, window, invert: config.invert, norm })
    }

    /// The image side D.
    pub fn size(&self) -> usize {
        self.plan.size()
    }

    /// The normalization in use.
    pub fn norm(&self) -> Normalization {
        self.norm
    }

    /// Processes raw images `(B, D, D)` into `(B, D+1, D+1)`, in parallel over images. Fails on a
    /// non-finite pixel, naming the image's position in the batch.
    pub fn process_batch(&self, raw: &[f32], out: &mut [f32]) -> Result<()> {
        let d = self.size();
        let (n, m) = (d * d, (d + 1) * (d + 1));
        if !raw.len().is_multiple_of(n) || out.len() / m != raw.len() / n || !out.len().is_multiple_of(m) {
            return Err(Error::Shape {
                op: "preprocess",
                expected: format!("(B, {d}, {d}) in and (B, {0}, {0}) out", d + 1),
                got: format!("{} values in, {} out", raw.len(), out.len()),
            });
        }
        if let Some(bad) = raw.iter().position(|v| !v.is_finite()) {
            return Err(Error::Param {
                name: "image",
                value: format!("pixel {} of image {} in the batch", bad % n, bad / n),
                why: "is NaN or infinite; the particle file is corrupt".into(),
            });
        }
        let sign = if self.invert { -1.0 } else { 1.0 };
        let (mean, inv_std) = (self.norm.mean, 1.0 / self.norm.std);
        raw.par_chunks(n).zip(out.par_chunks_mut(m)).try_for_each_init(
            || (self.plan.make_scratch(), vec![0.0f32; n]),
            |(scratch, img), (src, dst)| {
                match &self.window {
                    Some(w) => img.iter_mut().zip(src).zip(w).for_each(|((o, &x), &w)| *o = x * w),
                    None => img.copy_from_slice(src),
                }
                self.plan.ht2_center(img, scratch)?;
                symmetrize_ht(img, d, dst)?;
                // Inversion commutes with the (linear) transform, so it folds into the normalization.
                dst.iter_mut().for_each(|v| *v = (sign * *v - mean) * inv_std);
                Ok(())
            },
        )
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sample_indices_follow_cryodrgn() {
        assert_eq!(norm_sample_indices(5), vec![0, 1, 2, 3, 4]);
        assert_eq!(norm_sample_indices(2500).len(), 1250); // step 2500 // 1000 = 2
        assert_eq!(norm_sample_indices(1999).len(), 1999); // step 1
        assert_eq!(norm_sample_indices(3000)[..3], [0, 3, 6]);
        assert!(norm_sample_indices(0).is_empty());
    }

    #[test]
    fn std_estimate_matches_a_direct_computation() {
        let d = 8;
        let imgs: Vec<Vec<f32>> =
            (0..3).map(|k| (0..d * d).map(|i| ((i * 7 + k * 13) % 11) as f32 - 5.0).collect()).collect();
        let norm = estimate_norm::<Error>(3, d, |i| Ok(imgs[i].clone())).unwrap();
        // Direct: all symmetrized HT values of all images.
        let plan = HartleyPlan::new(d).unwrap();
        let mut all = Vec::new();
        for img in &imgs {
            let mut h = img.clone();
            plan.ht2_center(&mut h, &mut plan.make_scratch()).unwrap();
            let mut s = vec![0.0; 81];
            symmetrize_ht(&h, d, &mut s).unwrap();
            all.extend(s.iter().map(|&v| v as f64));
        }
        let mean = all.iter().sum::<f64>() / all.len() as f64;
        let var = all.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / (all.len() - 1) as f64;
        assert!((norm.std as f64 - var.sqrt()).abs() < 1e-5 * var.sqrt());
        assert_eq!(norm.mean, 0.0);
        assert!(matches!(estimate_norm::<Error>(2, d, |_| Ok(vec![0.0; d * d])), Err(Error::Param { .. })));
    }

    #[test]
    fn process_batch_applies_each_step() {
        let d = 8;
        let raw: Vec<f32> = (0..2 * d * d).map(|i| ((i * 5) % 9) as f32).collect();
        let norm = Normalization { mean: 0.5, std: 2.0 };
        let cfg = PreprocessConfig { window_r: None, invert: true };
        let p = Preprocessor::new(d, &cfg, norm).unwrap();
        let mut out = vec![0.0; 2 * 81];
        p.process_batch(&raw, &mut out).unwrap();
        let plan = HartleyPlan::new(d).unwrap();
        let mut h = raw[d * d..].to_vec();
        plan.ht2_center(&mut h, &mut plan.make_scratch()).unwrap();
        let mut s = vec![0.0; 81];
        symmetrize_ht(&h, d, &mut s).unwrap();
        for (o, v) in out[81..].iter().zip(&s) {
            assert!((o - (-v - 0.5) / 2.0).abs() < 1e-5);
        }
        // With the window, the corner pixel (outside r = 0.99) no longer contributes: compare with a
        // pre-windowed input.
        let pw = Preprocessor::new(d, &PreprocessConfig::default(), norm).unwrap();
        let w = spherical_window_mask(d, 0.85, 0.99).unwrap();
        let windowed: Vec<f32> = raw.iter().zip(w.iter().cycle()).map(|(a, b)| a * b).collect();
        let (mut o1, mut o2) = (vec![0.0; 162], vec![0.0; 162]);
        pw.process_batch(&raw, &mut o1).unwrap();
        p.process_batch(&windowed, &mut o2).unwrap();
        assert!(o1.iter().zip(&o2).all(|(a, b)| (a - b).abs() < 1e-5));
        let mut bad = raw.clone();
        bad[70] = f32::NAN;
        assert!(matches!(p.process_batch(&bad, &mut out), Err(Error::Param { .. })));
        assert!(matches!(p.process_batch(&raw[1..], &mut out), Err(Error::Shape { .. })));
    }

    /// cryoDRGN's `tests/test_dataset.py` golden (v4.3.0): `ImageDataset(hand.mrcs, invert_data=True)["y"]`
    /// at the listed indices, 11×65×65 float32, atol 1e-5. Default window 0.85; norm from all 100 images.
    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn golden_hand_11_particles_from_cryodrgn() {
        let hand = drgnfly_io::fixture_or_skip!("cryodrgn/hand.mrcs");
        let golden = drgnfly_io::fixture_or_skip!("cryodrgn/hand_11_particles.npy");
        let want = crate::testdata::read_npy(&golden);
        assert_eq!(want.shape, [11, 65, 65]);
        let stack = drgnfly_io::mrc::MrcStack::open(&hand).unwrap();
        let norm = estimate_norm::<Error>(stack.len(), 64, |i| Ok(stack.read_image(i).unwrap())).unwrap();
        let p = Preprocessor::new(64, &PreprocessConfig::default(), norm).unwrap();
        let indices = [43, 12, 53, 64, 31, 56, 75, 63, 27, 62, 96];
        let raw: Vec<f32> = indices.iter().flat_map(|&i| stack.read_image(i).unwrap()).collect();
        let mut out = vec![0.0; 11 * 65 * 65];
        p.process_batch(&raw, &mut out).unwrap();
        let (d, at) = out
            .iter()
            .zip(&want.data)
            .enumerate()
            .map(|(i, (a, b))| ((*a as f64 - b).abs(), i))
            .fold((0.0, 0), |m, v| if v.0 > m.0 { v } else { m });
        assert!(d < 1e-5, "max |Δ| {d} at {at} (norm std {})", norm.std);
    }
}
