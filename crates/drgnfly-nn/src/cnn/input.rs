//! What the encoder sees of a raw particle image: standardised (zero mean, unit variance) and rolled by
//! whole pixels to its density centroid. The trainers and the diagnostics prepare images here, so they all
//! see the same thing.

/// The CNN encoder's input for raw images (B·D·D), standardised and centred, and the roll applied to each image
/// (see [`centre_by_centroid`]).
pub(super) fn prepare_images(raw: &[f32], d: usize) -> (Vec<f32>, Vec<[f32; 2]>) {
    let mut x = raw.to_vec();
    x.chunks_exact_mut(d * d).for_each(standardise);
    let rolls = centre_by_centroid(&mut x, d);
    (x, rolls)
}

/// Shifts and scales `img` to zero mean and unit variance (a constant image becomes zeros).
fn standardise(img: &mut [f32]) {
    let n = img.len().max(1) as f64;
    let mean = img.iter().map(|&v| f64::from(v)).sum::<f64>() / n;
    let var = img.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / n;
    let scale = 1.0 / var.sqrt().max(1e-12);
    img.iter_mut().for_each(|v| *v = ((f64::from(*v) - mean) * scale) as f32);
}

/// Rolls each image (B·D·D) by whole pixels so that its density centroid lands on the centre pixel
/// (D/2, D/2); returns the roll of each image in pixels (x, y), content moved by that much (wrapping around).
/// The centroid is taken on a Gaussian low-pass of the image (σ = D/16 px, at least 1), weighted by the
/// squared difference from its mean outside the inscribed circle, so either contrast works.
///
/// Strided convolutions are far from shift-invariant: a rotation head that learns from centred projections
/// stalls with shifts of ±2 px (BENCHMARKS.md, "abinit-amortized"). Centring first leaves it sub-pixel
/// offsets, which it handles. The low-pass is for noisy images: at SNR 0.1 the raw pixels' squared noise
/// swamps the weights and the centroid stays near the box centre whatever the shift.
fn centre_by_centroid(images: &mut [f32], d: usize) -> Vec<[f32; 2]> {
    let c = (d / 2) as f32;
    let r2 = c * c;
    let at = |i: usize| ((i % d) as f32 - c, (i / d) as f32 - c);
    let sigma = (d as f32 / 16.0).max(1.0);
    let mut smooth = vec![0f32; d * d];
    let mut rolls = Vec::with_capacity(images.len() / (d * d).max(1));
    for img in images.chunks_exact_mut(d * d) {
        gaussian_blur(img, d, sigma, &mut smooth);
        let (mut bg, mut n) = (0f64, 0usize);
        for (i, v) in smooth.iter().enumerate() {
            let (x, y) = at(i);
            if x * x + y * y >= r2 {
                bg += f64::from(*v);
                n += 1;
            }
        }
        let bg = (bg / n.max(1) as f64) as f32;
        let (mut sx, mut sy, mut sw) = (0f64, 0f64, 0f64);
        for (i, v) in smooth.iter().enumerate() {
            let (x, y) = at(i);
            let w = f64::from((v - bg) * (v - bg));
            (sx, sy, sw) = (sx + w * f64::from(x), sy + w * f64::from(y), sw + w);
        }
        let (cx, cy) =
            if sw > 0.0 { ((sx / sw).round() as isize, (sy / sw).round() as isize) } else { (0, 0) };
        if (cx, cy) != (0, 0) {
            let src = img.to_vec();
            let di = d as isize;
            for y in 0..di {
                for x in 0..di {
                    let (fy, fx) = ((y + cy).rem_euclid(di), (x + cx).rem_euclid(di));
                    img[(y * di + x) as usize] = src[(fy * di + fx) as usize];
                }
            }
        }
        rolls.push([-cx as f32, -cy as f32]);
    }
    rolls
}

/// `out` = `img` (D×D) convolved with a Gaussian of standard deviation `sigma` pixels, separably and
/// periodically (as the roll wraps), the kernel cut at 3σ (and inside the box) and normalised.
fn gaussian_blur(img: &[f32], d: usize, sigma: f32, out: &mut [f32]) {
    let radius = ((3.0 * sigma).ceil() as usize).min(d.saturating_sub(1) / 2);
    let kernel: Vec<f32> =
        (0..=2 * radius).map(|i| (-((i as f32 - radius as f32) / sigma).powi(2) / 2.0).exp()).collect();
    let total: f32 = kernel.iter().sum();
    let kernel: Vec<f32> = kernel.iter().map(|k| k / total).collect();
    let wrap = |i: usize, k: usize| (i + d + k - radius) % d;
    let mut rows = vec![0f32; d * d];
    for y in 0..d {
        for x in 0..d {
            rows[y * d + x] = kernel.iter().enumerate().map(|(k, w)| w * img[y * d + wrap(x, k)]).sum();
        }
    }
    for y in 0..d {
        for x in 0..d {
            out[y * d + x] = kernel.iter().enumerate().map(|(k, w)| w * rows[wrap(y, k) * d + x]).sum();
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_input_is_standardised_and_rolled_to_the_blob() {
        let d = 16;
        // A negative-contrast blob at (x, y) = (8 + 3, 8 − 2) on a background of 5.
        let img: Vec<f32> = (0..d * d)
            .map(|i| {
                let (x, y) = ((i % d) as f32 - 11.0, (i / d) as f32 - 6.0);
                5.0 - (-(x * x + y * y) / 2.0).exp()
            })
            .collect();
        let mut rolled = img.clone();
        assert_eq!(centre_by_centroid(&mut rolled, d), vec![[-3.0, 2.0]]);
        let darkest = rolled.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        assert_eq!(darkest, Some(8 * d + 8));
        // The encoder's input: the same roll, and zero mean and unit variance whatever the scale.
        let scaled: Vec<f32> = img.iter().map(|v| 7.0 * v).collect();
        let (input, rolls) = prepare_images(&scaled, d);
        assert_eq!(rolls, vec![[-3.0, 2.0]]);
        let mean = input.iter().sum::<f32>() / (d * d) as f32;
        let var = input.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (d * d) as f32;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "mean {mean}, variance {var}");
        let darkest = input.iter().enumerate().min_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        assert_eq!(darkest, Some(8 * d + 8));
    }

    #[test]
    fn a_blur_keeps_the_total_and_a_constant() {
        let d = 8;
        let mut img = vec![0f32; d * d];
        img[0] = 1.0;
        let mut out = vec![0f32; d * d];
        gaussian_blur(&img, d, 1.5, &mut out);
        assert!((out.iter().sum::<f32>() - 1.0).abs() < 1e-5);
        // Periodic: the corner's mass wraps to the far edges symmetrically.
        assert!((out[1] - out[d - 1]).abs() < 1e-6 && (out[d] - out[(d - 1) * d]).abs() < 1e-6);
        gaussian_blur(&[2.0; 64], d, 4.0, &mut out);
        assert!(out.iter().all(|v| (v - 2.0).abs() < 1e-5));
    }

    /// At SNR 0.1 the centroid of the low-pass finds a shifted blob; the raw pixels' would not.
    #[test]
    fn a_noisy_blob_is_centred() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let d = 32;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        let blob: Vec<f32> = (0..d * d)
            .map(|i| {
                let (x, y) = ((i % d) as f32 - 20.0, (i / d) as f32 - 13.0);
                (-(x * x + y * y) / 18.0).exp()
            })
            .collect();
        let mean = blob.iter().sum::<f32>() / (d * d) as f32;
        let var = blob.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (d * d) as f32;
        let sigma = (var / 0.1).sqrt();
        let mut errors = Vec::new();
        for _ in 0..20 {
            let mut img: Vec<f32> = blob
                .iter()
                .map(|v| {
                    let e: f32 = StandardNormal.sample(&mut rng);
                    v + sigma * e
                })
                .collect();
            let roll = centre_by_centroid(&mut img, d)[0];
            errors.push((roll[0] + 4.0).abs().max((roll[1] - 3.0).abs()));
        }
        errors.sort_by(f32::total_cmp);
        assert!(errors[10] <= 1.0, "median roll error {} px: {errors:?}", errors[10]);
    }
}
