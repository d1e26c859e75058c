//! Centred discrete Hartley transforms and the symmetrized (D+1)² layout (cryoDRGN `fft.py`).
//!
//! `ht2_center(x) = Re F − Im F` with `F = fftshift(fft2(fftshift(x)))`, i.e. the cas transform
//! `H(k) = Σ_x x(x)·cas(2π (k−c)·(x−c)/D)`, `cas θ = cos θ + sin θ`, `c = D/2`. It is unnormalised; the
//! transform is its own inverse up to `1/D²`, so `iht2_center = ht2_center / D²`. The 3D versions
//! (`htn_center` for volumes, `[z][y][x]`) divide by `D³`. See [the crate conventions](crate#conventions)
//! for the layout and the symmetrized grid.
//!
//! Only even `D` is supported (cryoDRGN requires it: the lattice is `D + 1`, odd). The 2D path uses a
//! real-input FFT: rows go through a length-D real FFT, the `D/2 + 1` resulting columns through complex
//! FFTs, and the other half-plane comes from Hermitian symmetry `F(−k) = F(k)*`; that is about half the
//! work of a complex 2D FFT. Storage and arithmetic are f32 (see [`crate::fft`] for the precision note).

use std::sync::Arc;

use num_complex::Complex32;
use rayon::prelude::*;
use realfft::{RealFftPlanner, RealToComplex};
use rustfft::{Fft, FftPlanner};

use crate::fft::CenteredFft;
use crate::{Error, Result};

/// A planned centred Hartley transform for `D × D` images and `D³` volumes. `Send + Sync`: plan once and
/// share it; each thread brings its own [`HartleyScratch`].
///
/// ```
/// use drgnfly_em::hartley::HartleyPlan;
/// let plan = HartleyPlan::new(4).unwrap();
/// let mut scratch = plan.make_scratch();
/// let mut img = vec![0.0f32; 16];
/// img[2 * 4 + 2] = 1.0; // a delta at the centre (D/2, D/2)…
/// plan.ht2_center(&mut img, &mut scratch).unwrap();
/// assert!(img.iter().all(|&v| (v - 1.0).abs() < 1e-6)); // …has a flat Hartley transform.
/// plan.iht2_center(&mut img, &mut scratch).unwrap();
/// assert!((img[10] - 1.0).abs() < 1e-6 && img[0].abs() < 1e-6);
/// ```
#[derive(Clone)]
pub struct HartleyPlan {
    d: usize,
    rows: Arc<dyn RealToComplex<f32>>,
    cols: Arc<dyn Fft<f32>>,
    volume: CenteredFft,
}

impl std::fmt::Debug for HartleyPlan {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HartleyPlan").field("d", &self.d).finish()
    }
}

/// Per-thread working memory for [`HartleyPlan::ht2_center`]; make it with [`HartleyPlan::make_scratch`]
/// and reuse it across calls. About `(D/2 + 1)·D` complex values.
#[derive(Debug, Clone)]
pub struct HartleyScratch {
    d: usize,
    row: Vec<f32>,
    spectrum: Vec<Complex32>,
    columns: Vec<Complex32>,
    row_fft: Vec<Complex32>,
    col_fft: Vec<Complex32>,
}

impl HartleyPlan {
    /// Plans the transforms for images of side `d` (even, ≥ 2).
    pub fn new(d: usize) -> Result<Self> {
        if d < 2 || !d.is_multiple_of(2) {
            return Err(Error::Param {
                name: "box size",
                value: d.to_string(),
                why: "the Hartley lattice needs an even box size ≥ 2 (crop or pad the images)".into(),
            });
        }
        Ok(Self {
            d,
            rows: RealFftPlanner::new().plan_fft_forward(d),
            cols: FftPlanner::new().plan_fft_forward(d),
            volume: CenteredFft::new(d)?,
        })
    }

    /// The image side `D`.
    pub fn size(&self) -> usize {
        self.d
    }

    /// Fresh scratch for this plan's size.
    pub fn make_scratch(&self) -> HartleyScratch {
        let (d, h) = (self.d, self.d / 2 + 1);
        let zero = Complex32::new(0.0, 0.0);
        HartleyScratch {
            d,
            row: vec![0.0; d],
            spectrum: vec![zero; h],
            columns: vec![zero; h * d],
            row_fft: vec![zero; self.rows.get_scratch_len()],
            col_fft: vec![zero; self.cols.get_inplace_scratch_len()],
        }
    }

    /// In-place centred Hartley transform of one `D × D` image, unnormalised (cryoDRGN `ht2_center`).
    pub fn ht2_center(&self, img: &mut [f32], scratch: &mut HartleyScratch) -> Result<()> {
        self.check_image(img.len(), "ht2_center")?;
        self.ht2_scaled(img, scratch, 1.0)
    }

    /// In-place inverse: `ht2_center / D²` (cryoDRGN `iht2_center`).
    pub fn iht2_center(&self, img: &mut [f32], scratch: &mut HartleyScratch) -> Result<()> {
        self.check_image(img.len(), "iht2_center")?;
        self.ht2_scaled(img, scratch, 1.0 / (self.d * self.d) as f32)
    }

    /// [`Self::ht2_center`] over a contiguous `(B, D, D)` buffer, images in parallel on the current rayon
    /// pool with one scratch per worker.
    pub fn ht2_center_batch(&self, imgs: &mut [f32]) -> Result<()> {
        self.batch(imgs, 1.0, "ht2_center_batch")
    }

    /// [`Self::iht2_center`] over a contiguous `(B, D, D)` buffer, in parallel.
    pub fn iht2_center_batch(&self, imgs: &mut [f32]) -> Result<()> {
        self.batch(imgs, 1.0 / (self.d * self.d) as f32, "iht2_center_batch")
    }

    /// In-place centred 3D Hartley transform of a `D³` volume `[z][y][x]`, unnormalised (cryoDRGN
    /// `htn_center`). Uses a complex 3D FFT, parallel over lines.
    pub fn ht3_center(&self, vol: &mut [f32]) -> Result<()> {
        self.ht3_scaled(vol, 1.0, "ht3_center")
    }

    /// In-place inverse 3D Hartley transform: `ht3_center / D³` (cryoDRGN `ihtn_center`).
    pub fn iht3_center(&self, vol: &mut [f32]) -> Result<()> {
        self.ht3_scaled(vol, 1.0 / (self.d * self.d * self.d) as f32, "iht3_center")
    }

    fn check_image(&self, len: usize, op: &'static str) -> Result<()> {
        let d = self.d;
        if len != d * d {
            return Err(Error::Shape {
                op,
                expected: format!("({d}, {d}) = {} values", d * d),
                got: len.to_string(),
            });
        }
        Ok(())
    }

    fn batch(&self, imgs: &mut [f32], scale: f32, op: &'static str) -> Result<()> {
        let n = self.d * self.d;
        if !imgs.len().is_multiple_of(n) {
            return Err(Error::Shape {
                op,
                expected: format!("(B, {0}, {0}): a multiple of {n} values", self.d),
                got: format!("{} values", imgs.len()),
            });
        }
        imgs.par_chunks_mut(n)
            .try_for_each_init(|| self.make_scratch(), |s, img| self.ht2_scaled(img, s, scale))
    }

    /// The 2D transform times `scale`. `img.len() == D²` is checked by the callers.
    fn ht2_scaled(&self, img: &mut [f32], s: &mut HartleyScratch, scale: f32) -> Result<()> {
        if s.d != self.d {
            *s = self.make_scratch(); // scratch from a plan of another size: replace rather than panic
        }
        let (d, h) = (self.d, self.d / 2 + 1);
        let fft_err = |e: realfft::FftError| Error::Shape {
            op: "ht2_center",
            expected: d.to_string(),
            got: e.to_string(),
        };
        // Input fftshift for even D = multiplying by (−1)^(y+x); then real FFTs of the rows, stored
        // transposed so that each of the D/2 + 1 columns is contiguous.
        for (y, src) in img.chunks_exact(d).enumerate() {
            let mut sign = if y % 2 == 0 { 1.0 } else { -1.0 };
            for (dst, &v) in s.row.iter_mut().zip(src) {
                *dst = sign * v;
                sign = -sign;
            }
            self.rows.process_with_scratch(&mut s.row, &mut s.spectrum, &mut s.row_fft).map_err(fft_err)?;
            for (kx, &v) in s.spectrum.iter().enumerate() {
                s.columns[kx * d + y] = v;
            }
        }
        self.cols.process_with_scratch(&mut s.columns, &mut s.col_fft);
        // Output fftshift = (−1)^(ky+kx) again (the (−1)^{D/2} per axis cancels in 2D). Columns past D/2
        // come from F(ky, kx) = F(−ky, −kx)*.
        for (ky, out) in img.chunks_exact_mut(d).enumerate() {
            let ky_neg = (d - ky) % d;
            let mut sign = if ky % 2 == 0 { scale } else { -scale };
            for (kx, o) in out.iter_mut().enumerate() {
                let f = if kx < h { s.columns[kx * d + ky] } else { s.columns[(d - kx) * d + ky_neg].conj() };
                *o = sign * (f.re - f.im); // H = Re F − Im F
                sign = -sign;
            }
        }
        Ok(())
    }

    fn ht3_scaled(&self, vol: &mut [f32], scale: f32, op: &'static str) -> Result<()> {
        let d = self.d;
        if vol.len() != d * d * d {
            return Err(Error::Shape {
                op,
                expected: format!("({d}, {d}, {d}) = {} values", d * d * d),
                got: vol.len().to_string(),
            });
        }
        let mut buf: Vec<Complex32> = vol.iter().map(|&v| Complex32::new(v, 0.0)).collect();
        self.volume.fft3_center(&mut buf)?;
        vol.par_iter_mut().zip(buf.par_iter()).for_each(|(o, f)| *o = scale * (f.re - f.im));
        Ok(())
    }
}

/// Symmetrizes centred Hartley images `(B, D, D) → (B, D+1, D+1)` (cryoDRGN `symmetrize_ht`): row 0 is
/// copied to row D, column 0 to column D and `[0,0]` to `[D,D]`, so the grid is symmetric about the
/// centre `(D/2, D/2)` and the value at −k sits at flat index `(D+1)² − 1 − i`. `B` is inferred.
pub fn symmetrize_ht(ht: &[f32], d: usize, out: &mut [f32]) -> Result<()> {
    let (n, m) = (d * d, (d + 1) * (d + 1));
    if d == 0 || !ht.len().is_multiple_of(n) || out.len() / m != ht.len() / n || !out.len().is_multiple_of(m)
    {
        return Err(Error::Shape {
            op: "symmetrize_ht",
            expected: format!("(B, {d}, {d}) in and (B, {0}, {0}) out", d + 1),
            got: format!("{} values in, {} out", ht.len(), out.len()),
        });
    }
    for (src, dst) in ht.chunks_exact(n).zip(out.chunks_exact_mut(m)) {
        for (y, row) in dst.chunks_exact_mut(d + 1).enumerate() {
            let s = &src[(y % d) * d..(y % d + 1) * d];
            row[..d].copy_from_slice(s);
            row[d] = s[0];
        }
    }
    Ok(())
}

/// Drops the last row and column: `(B, D+1, D+1) → (B, D, D)`, the inverse of [`symmetrize_ht`] (what
/// cryoDRGN does with `[..., :-1, :-1]` before `iht2_center`).
pub fn unsymmetrize_ht(sym: &[f32], d: usize, out: &mut [f32]) -> Result<()> {
    let (n, m) = (d * d, (d + 1) * (d + 1));
    if d == 0
        || !sym.len().is_multiple_of(m)
        || !out.len().is_multiple_of(n)
        || out.len() / n != sym.len() / m
    {
        return Err(Error::Shape {
            op: "unsymmetrize_ht",
            expected: format!("(B, {0}, {0}) in and (B, {d}, {d}) out", d + 1),
            got: format!("{} values in, {} out", sym.len(), out.len()),
        });
    }
    for (src, dst) in sym.chunks_exact(m).zip(out.chunks_exact_mut(n)) {
        for (y, row) in dst.chunks_exact_mut(d).enumerate() {
            row.copy_from_slice(&src[y * (d + 1)..y * (d + 1) + d]);
        }
    }
    Ok(())
}

/// Drops the last index of each axis of a `(D+1)³` volume: `(D+1)³ → D³` (volume generation, cryoDRGN
/// `vol[:-1, :-1, :-1]` before `ihtn_center`).
pub fn unsymmetrize_ht3(sym: &[f32], d: usize, out: &mut [f32]) -> Result<()> {
    let e = d + 1;
    if sym.len() != e * e * e || out.len() != d * d * d {
        return Err(Error::Shape {
            op: "unsymmetrize_ht3",
            expected: format!("({e}, {e}, {e}) in and ({d}, {d}, {d}) out"),
            got: format!("{} values in, {} out", sym.len(), out.len()),
        });
    }
    for z in 0..d {
        for y in 0..d {
            let s = (z * e + y) * e;
            out[(z * d + y) * d..(z * d + y + 1) * d].copy_from_slice(&sym[s..s + d]);
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fft::naive;
    use num_complex::Complex64;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(len: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| rng.random_range(-1.0..1.0)).collect()
    }

    /// Naive O(N⁴) centred DHT from the naive DFT: `H = Re F − Im F`.
    fn naive_ht2(x: &[f32], d: usize) -> Vec<f64> {
        let xc: Vec<Complex64> = x.iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
        naive::dft2_center(&xc, d, false).iter().map(|f| f.re - f.im).collect()
    }

    fn max_abs_diff(a: &[f32], b: &[f64]) -> (f64, usize) {
        a.iter().zip(b).enumerate().map(|(i, (&x, &y))| ((x as f64 - y).abs(), i)).fold((0.0, 0), |m, v| {
            if v.0 > m.0 {
                v
            } else {
                m
            }
        })
    }

    #[test]
    fn ht2_matches_naive_dht_with_dirty_scratch() {
        let mut scratch = HartleyPlan::new(2).unwrap().make_scratch(); // wrong size on purpose
        for d in [2usize, 4, 6, 8, 10, 16, 22] {
            let plan = HartleyPlan::new(d).unwrap();
            let x = random(d * d, d as u64);
            let mut y = x.clone();
            plan.ht2_center(&mut y, &mut scratch).unwrap();
            let (diff, at) = max_abs_diff(&y, &naive_ht2(&x, d));
            assert!(diff < 2e-6 * d as f64, "D={d}: max |Δ| {diff} at {at}");
        }
    }

    #[test]
    fn hartley_is_its_own_inverse_up_to_one_over_n() {
        let d = 64;
        let plan = HartleyPlan::new(d).unwrap();
        let mut s = plan.make_scratch();
        let x = random(d * d, 3);
        let mut y = x.clone();
        plan.ht2_center(&mut y, &mut s).unwrap();
        // Parseval for the DHT: Σ H² = D² Σ x².
        let ex: f64 = x.iter().map(|&v| (v as f64).powi(2)).sum();
        let ey: f64 = y.iter().map(|&v| (v as f64).powi(2)).sum();
        assert!((ey / (d * d) as f64 - ex).abs() < 1e-5 * ex);
        plan.iht2_center(&mut y, &mut s).unwrap();
        let worst = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "round trip max |Δ| {worst}");
    }

    #[test]
    fn batch_equals_single_image_transforms() {
        let d = 32;
        let plan = HartleyPlan::new(d).unwrap();
        let mut s = plan.make_scratch();
        let x = random(7 * d * d, 11);
        let mut batch = x.clone();
        plan.ht2_center_batch(&mut batch).unwrap();
        for (i, img) in x.chunks_exact(d * d).enumerate() {
            let mut one = img.to_vec();
            plan.ht2_center(&mut one, &mut s).unwrap();
            assert_eq!(one, batch[i * d * d..(i + 1) * d * d], "image {i}");
        }
        plan.iht2_center_batch(&mut batch).unwrap();
        let worst = x.iter().zip(&batch).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5);
        assert!(matches!(plan.ht2_center_batch(&mut batch[1..]), Err(Error::Shape { .. })));
    }

    #[test]
    fn ht3_matches_naive_and_inverts() {
        let d = 6;
        let plan = HartleyPlan::new(d).unwrap();
        let x = random(d * d * d, 5);
        let xc: Vec<Complex64> = x.iter().map(|&v| Complex64::new(v as f64, 0.0)).collect();
        let want: Vec<f64> = naive::dft3_center(&xc, d).iter().map(|f| f.re - f.im).collect();
        let mut y = x.clone();
        plan.ht3_center(&mut y).unwrap();
        let (diff, at) = max_abs_diff(&y, &want);
        assert!(diff < 1e-4, "max |Δ| {diff} at {at}");
        plan.iht3_center(&mut y).unwrap();
        let worst = x.iter().zip(&y).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5);
    }

    #[test]
    fn symmetrize_layout_and_centrosymmetry() {
        // The 4×4 → 5×5 example of the crate docs.
        let ht: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let mut sym = vec![0.0; 25];
        symmetrize_ht(&ht, 4, &mut sym).unwrap();
        #[rustfmt::skip]
        let want = [0., 1., 2., 3., 0.,
                    4., 5., 6., 7., 4.,
                    8., 9., 10., 11., 8.,
                    12., 13., 14., 15., 12.,
                    0., 1., 2., 3., 0.];
        assert_eq!(sym, want);
        let mut back = vec![0.0; 16];
        unsymmetrize_ht(&sym, 4, &mut back).unwrap();
        assert_eq!(back, ht);

        // For the HT of a real image, H(−k) pairs with flat index N−1−i; the Nyquist row/column pair with
        // their duplicates. Check via the cas symmetry of an even image: x(−r) = x(r) ⇒ H(−k) = H(k).
        let d = 8;
        let plan = HartleyPlan::new(d).unwrap();
        let mut img = vec![0.0f32; d * d];
        for y in 1..d {
            for x in 1..d {
                let v = ((y as f32 - 4.0).powi(2) + (x as f32 - 4.0).powi(2)).sqrt().cos();
                img[y * d + x] = v;
            }
        }
        plan.ht2_center(&mut img, &mut plan.make_scratch()).unwrap();
        let mut s = vec![0.0; (d + 1) * (d + 1)];
        symmetrize_ht(&img, d, &mut s).unwrap();
        let n = s.len();
        for i in 0..n {
            assert!((s[i] - s[n - 1 - i]).abs() < 1e-4, "index {i}");
        }
    }

    #[test]
    fn unsymmetrize_ht3_drops_last_indices() {
        let d = 2;
        let sym: Vec<f32> = (0..27).map(|v| v as f32).collect();
        let mut out = vec![0.0; 8];
        unsymmetrize_ht3(&sym, d, &mut out).unwrap();
        assert_eq!(out, [0., 1., 3., 4., 9., 10., 12., 13.]);
    }

    #[test]
    fn odd_or_zero_box_is_rejected() {
        assert!(matches!(HartleyPlan::new(5), Err(Error::Param { .. })));
        assert!(matches!(HartleyPlan::new(0), Err(Error::Param { .. })));
        let mut sym = vec![0.0; 24];
        assert!(matches!(symmetrize_ht(&[0.0; 16], 4, &mut sym), Err(Error::Shape { .. })));
    }
}
