//! What the encoder sees of a raw particle image: standardised (zero mean, unit variance) and rolled by
//! whole pixels to its density centroid. The trainers and the diagnostics prepare images here, so they all
//! see the same thing.

/// The encoder's input for raw images (B·D·D), standardised and centred, and the roll applied to each image
/// (see [`centre_by_centroid`]).
pub fn encoder_input(raw: &[f32], d: usize) -> (Vec<f32>, Vec<[f32; 2]>) {
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

/// Rolls each image (B·D·D) by whole pixels so that its density centroid (weights: squared difference from
/// the mean outside the inscribed circle, so either contrast works) lands on the centre pixel (D/2, D/2);
/// returns the roll of each image in pixels (x, y), content moved by that much (wrapping around).
///
/// Strided convolutions are far from shift-invariant: a rotation head that learns from centred projections
/// stalls with shifts of ±2 px (BENCHMARKS.md, "abinit-amortized"). Centring first leaves it sub-pixel
/// offsets, which it handles.
pub fn centre_by_centroid(images: &mut [f32], d: usize) -> Vec<[f32; 2]> {
    let c = (d / 2) as f32;
    let r2 = c * c;
    let at = |i: usize| ((i % d) as f32 - c, (i / d) as f32 - c);
    let mut rolls = Vec::with_capacity(images.len() / (d * d).max(1));
    for img in images.chunks_exact_mut(d * d) {
        let (mut bg, mut n) = (0f64, 0usize);
        for (i, v) in img.iter().enumerate() {
            let (x, y) = at(i);
            if x * x + y * y >= r2 {
                bg += f64::from(*v);
                n += 1;
            }
        }
        let bg = (bg / n.max(1) as f64) as f32;
        let (mut sx, mut sy, mut sw) = (0f64, 0f64, 0f64);
        for (i, v) in img.iter().enumerate() {
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

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn centring_rolls_a_blob_onto_the_centre_pixel() {
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
    }

    #[test]
    fn the_input_is_standardised_and_centred() {
        let d = 16;
        // A blob at (x, y) = (8 + 2, 8 + 1) on a background of 3, scaled by 5.
        let img: Vec<f32> = (0..d * d)
            .map(|i| {
                let (x, y) = ((i % d) as f32 - 10.0, (i / d) as f32 - 9.0);
                5.0 * (3.0 + (-(x * x + y * y) / 4.0).exp())
            })
            .collect();
        let (out, rolls) = encoder_input(&img, d);
        assert_eq!(rolls, vec![[-2.0, -1.0]]);
        let mean = out.iter().sum::<f32>() / (d * d) as f32;
        let var = out.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / (d * d) as f32;
        assert!(mean.abs() < 1e-5 && (var - 1.0).abs() < 1e-4, "mean {mean}, variance {var}");
        let peak = out.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i);
        assert_eq!(peak, Some(8 * d + 8));
    }
}
