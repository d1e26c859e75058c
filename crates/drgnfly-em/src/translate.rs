//! Image translation by phase shifts on the symmetrized Hartley lattice (cryoDRGN `Lattice.translate_ht`).
//!
//! From `F′(k) = e^{−2πi k·t} F(k)` and `H = Re F − Im F`:
//!
//! ```text
//! H′(k) = cos(2π k·t)·H(k) + sin(2π k·t)·H(−k)
//! ```
//!
//! with `k` = [`Lattice::freqs2d`] (cycles/px) and `t = (tx, ty)` in pixels. This **shifts the image by +t**:
//! the output is `img(x − t)`. Training applies the pose translation this way, so `t` is "the shift that
//! centres the raw image" (see [the crate conventions](crate#conventions)). `H(−k)` is the value at the
//! mirrored flat index, which is why the input must be the symmetrized `(D+1)²` image (or a
//! centrosymmetric masked subset of it).
//!
//! [`ImageShifter`] does the whole round trip for real-space images (Hartley transform, symmetrize,
//! [`translate_ht`], back), with its plan and lattice built once.

use rayon::prelude::*;

use crate::hartley::{symmetrize_ht, unsymmetrize_ht, HartleyPlan, HartleyScratch};
use crate::lattice::Lattice;
use crate::{Error, Result};

/// Translates one symmetrized Hartley image `ht` (`D_lat²` values, raster order) by `shift_px` into `out`.
///
/// ```
/// use drgnfly_em::{lattice::Lattice, translate::translate_ht};
/// let lat = Lattice::new(5, 0.5).unwrap();
/// let ht: Vec<f32> = (0..25).map(|i| i as f32).collect();
/// let mut out = vec![0.0; 25];
/// translate_ht(&lat, &ht, [0.0, 0.0], &mut out).unwrap();
/// assert_eq!(out, ht); // t = 0 is the identity
/// ```
pub fn translate_ht(lattice: &Lattice, ht: &[f32], shift_px: [f32; 2], out: &mut [f32]) -> Result<()> {
    let n = lattice.len();
    if ht.len() != n || out.len() != n {
        return Err(Error::Shape {
            op: "translate_ht",
            expected: format!("{0}×{0} = {n} values in and out", lattice.size()),
            got: format!("{} in, {} out", ht.len(), out.len()),
        });
    }
    shift(lattice.freqs2d(), ht, shift_px, out);
    Ok(())
}

/// [`translate_ht`] for a `(B, D_lat, D_lat)` batch with one shift per image, in parallel.
pub fn translate_ht_batch(
    lattice: &Lattice,
    hts: &[f32],
    shifts_px: &[[f32; 2]],
    out: &mut [f32],
) -> Result<()> {
    let n = lattice.len();
    if hts.len() != shifts_px.len() * n || out.len() != hts.len() {
        return Err(Error::Shape {
            op: "translate_ht_batch",
            expected: format!(
                "(B, {0}, {0}) in and out with B = {1} shifts",
                lattice.size(),
                shifts_px.len()
            ),
            got: format!("{} in, {} out", hts.len(), out.len()),
        });
    }
    let freqs = lattice.freqs2d();
    out.par_chunks_mut(n)
        .zip(hts.par_chunks(n))
        .zip(shifts_px.par_iter())
        .for_each(|((o, h), &t)| shift(freqs, h, t, o));
    Ok(())
}

/// Frequencies of a mask's points: `(M, 2)` gathered from the lattice, for [`translate_ht_masked`]. Build it
/// once per mask. Fails unless `mask` is centrosymmetric (every masked point's −k is masked, in mirrored
/// order), which the pairing `j ↔ M − 1 − j` needs; [`Lattice::circular_mask`] always is.
pub fn masked_freqs(lattice: &Lattice, mask: &[usize]) -> Result<Vec<f32>> {
    if !lattice.is_centrosymmetric(mask) {
        return Err(Error::Param {
            name: "mask",
            value: format!("{} points", mask.len()),
            why: "a translation mask must be centrosymmetric, sorted lattice indices".into(),
        });
    }
    let f = lattice.freqs2d();
    Ok(mask.iter().flat_map(|&i| [f[2 * i], f[2 * i + 1]]).collect())
}

/// Translates images restricted to mask points, as training does: `ht` holds `(B, M)` values at the
/// mask's points (in mask order), `freqs` their `(M, 2)` frequencies from [`masked_freqs`], and the −k
/// partner of point `j` is point `M − 1 − j`. One shift per image; parallel over images.
pub fn translate_ht_masked(freqs: &[f32], ht: &[f32], shifts_px: &[[f32; 2]], out: &mut [f32]) -> Result<()> {
    let m = freqs.len() / 2;
    if !freqs.len().is_multiple_of(2) || ht.len() != shifts_px.len() * m || out.len() != ht.len() {
        return Err(Error::Shape {
            op: "translate_ht_masked",
            expected: format!("(B, M) in and out with B = {} shifts, M = {m} mask points", shifts_px.len()),
            got: format!("{} in, {} out", ht.len(), out.len()),
        });
    }
    if m == 0 {
        return Ok(());
    }
    out.par_chunks_mut(m)
        .zip(ht.par_chunks(m))
        .zip(shifts_px.par_iter())
        .for_each(|((o, h), &t)| shift(freqs, h, t, o));
    Ok(())
}

/// Shifts real-space `D × D` images by a sub-pixel amount: centred Hartley transform, [`symmetrize_ht`],
/// [`translate_ht`], drop the last row and column, inverse transform (cryoDRGN's
/// `tests/test_translate.py` pipeline). The plan and the `(D+1)²` lattice are built once; `Send + Sync`.
///
/// The image is periodic: content leaving one edge comes back at the other, and a non-integer shift of
/// content at Nyquist is not exactly invertible.
///
/// ```
/// use drgnfly_em::translate::ImageShifter;
/// let d = 8;
/// let shifter = ImageShifter::new(d).unwrap();
/// // A cosine along x (no Nyquist content, so integer shifts are exact circular shifts).
/// let wave = |x: usize| (std::f32::consts::TAU * x as f32 / d as f32).cos();
/// let mut img: Vec<f32> = (0..d * d).map(|i| wave(i % d)).collect();
/// shifter.shift_image(&mut img, [2.0, 0.0]).unwrap();
/// assert!((0..d * d).all(|i| (img[i] - wave((i % d + d - 2) % d)).abs() < 1e-5)); // img(x − 2)
/// ```
#[derive(Debug, Clone)]
pub struct ImageShifter {
    d: usize,
    plan: HartleyPlan,
    lattice: Lattice,
}

/// Reusable buffers of an [`ImageShifter`] (one per thread).
#[derive(Debug)]
pub struct ShiftScratch {
    hartley: HartleyScratch,
    sym: Vec<f32>,
    moved: Vec<f32>,
}

impl ImageShifter {
    /// Plans shifts of `D × D` images (`D` even, ≥ 2).
    pub fn new(d: usize) -> Result<Self> {
        Ok(Self { d, plan: HartleyPlan::new(d)?, lattice: Lattice::new(d + 1, 0.5)? })
    }

    /// The image side `D`.
    pub fn size(&self) -> usize {
        self.d
    }

    /// Fresh buffers for [`Self::shift_image_with_scratch`].
    pub fn make_scratch(&self) -> ShiftScratch {
        let m = (self.d + 1) * (self.d + 1);
        ShiftScratch { hartley: self.plan.make_scratch(), sym: vec![0.0; m], moved: vec![0.0; m] }
    }

    /// In place, `img(x) ← img(x − shift_px)`: the content moves by `+shift_px` pixels (x, y).
    /// Allocates its buffers; see [`Self::shift_image_with_scratch`] for loops.
    pub fn shift_image(&self, img: &mut [f32], shift_px: [f32; 2]) -> Result<()> {
        self.shift_image_with_scratch(img, shift_px, &mut self.make_scratch())
    }

    /// [`Self::shift_image`] with buffers from [`Self::make_scratch`].
    pub fn shift_image_with_scratch(
        &self,
        img: &mut [f32],
        shift_px: [f32; 2],
        scratch: &mut ShiftScratch,
    ) -> Result<()> {
        let d = self.d;
        let m = (d + 1) * (d + 1);
        if img.len() != d * d || scratch.sym.len() != m || scratch.moved.len() != m {
            return Err(Error::Shape {
                op: "shift_image",
                expected: format!("({d}, {d}) image and scratch from this shifter"),
                got: format!("{} values, scratch for {} lattice points", img.len(), scratch.sym.len()),
            });
        }
        self.plan.ht2_center(img, &mut scratch.hartley)?;
        symmetrize_ht(img, d, &mut scratch.sym)?;
        translate_ht(&self.lattice, &scratch.sym, shift_px, &mut scratch.moved)?;
        unsymmetrize_ht(&scratch.moved, d, img)?;
        self.plan.iht2_center(img, &mut scratch.hartley)
    }
}

/// The phase shift over points whose −k partner is the reversed index.
fn shift(freqs: &[f32], h: &[f32], [tx, ty]: [f32; 2], out: &mut [f32]) {
    let two_pi = std::f32::consts::TAU;
    for (((o, &hk), &hmk), k) in out.iter_mut().zip(h).zip(h.iter().rev()).zip(freqs.chunks_exact(2)) {
        // H′(k) = cos(2π k·t) H(k) + sin(2π k·t) H(−k)
        let (s, c) = (two_pi * (k[0] * tx + k[1] * ty)).sin_cos();
        *o = c * hk + s * hmk;
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::hartley::HartleyPlan;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    /// HT → symmetrize → translate → drop last row/col → inverse HT, as cryoDRGN's test does.
    fn shift_image(img: &[f32], d: usize, t: [f32; 2]) -> Vec<f32> {
        let mut out = img.to_vec();
        ImageShifter::new(d).unwrap().shift_image(&mut out, t).unwrap();
        out
    }

    #[test]
    fn image_shift_then_back_is_identity() {
        let d = 24;
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        // Random image without Nyquist content (a Nyquist row/column is not invertible under
        // sub-pixel shifts): low-pass it by zeroing the outer frequencies.
        let plan = HartleyPlan::new(d).unwrap();
        let mut img: Vec<f32> = (0..d * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        plan.ht2_center(&mut img, &mut plan.make_scratch()).unwrap();
        for y in 0..d {
            for x in 0..d {
                let (kx, ky) = (x as i64 - (d / 2) as i64, y as i64 - (d / 2) as i64);
                if kx.abs().max(ky.abs()) >= (d / 2 - 1) as i64 {
                    img[y * d + x] = 0.0;
                }
            }
        }
        plan.iht2_center(&mut img, &mut plan.make_scratch()).unwrap();
        let shifter = ImageShifter::new(d).unwrap();
        let mut scratch = shifter.make_scratch();
        for s in [[1.3f32, -2.7], [0.5, 0.5], [-7.25, 3.0]] {
            let mut out = img.clone();
            shifter.shift_image_with_scratch(&mut out, s, &mut scratch).unwrap();
            let moved = out.iter().zip(&img).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(moved > 1e-2, "shift {s:?} left the image unchanged");
            shifter.shift_image_with_scratch(&mut out, [-s[0], -s[1]], &mut scratch).unwrap();
            let worst = out.iter().zip(&img).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(worst < 1e-4, "shift {s:?} and back: max |Δ| {worst}");
        }
        assert_eq!(shifter.size(), d);
        assert!(matches!(shifter.shift_image(&mut img[1..], [0.0; 2]), Err(Error::Shape { .. })));
        let mut other = ImageShifter::new(8).unwrap().make_scratch();
        assert!(matches!(
            shifter.shift_image_with_scratch(&mut img, [0.0; 2], &mut other),
            Err(Error::Shape { .. })
        ));
    }

    #[test]
    fn integer_shift_moves_pixels_by_plus_t() {
        let d = 16;
        let mut rng = ChaCha8Rng::seed_from_u64(9);
        // A smooth band-limited image: integer shifts are then exact circular shifts (no Nyquist content).
        let mut img = vec![0.0f32; d * d];
        for _ in 0..5 {
            let (fx, fy, a, p): (f32, f32, f32, f32) = (
                rng.random_range(-3..=3) as f32,
                rng.random_range(-3..=3) as f32,
                rng.random(),
                rng.random(),
            );
            for y in 0..d {
                for x in 0..d {
                    img[y * d + x] += a
                        * (std::f32::consts::TAU * (fx * x as f32 + fy * y as f32) / d as f32 + 6.0 * p)
                            .cos();
                }
            }
        }
        let (tx, ty) = (3usize, 5usize);
        let out = shift_image(&img, d, [tx as f32, ty as f32]);
        for y in 0..d {
            for x in 0..d {
                let want = img[((y + d - ty) % d) * d + (x + d - tx) % d]; // img(x − t)
                assert!((out[y * d + x] - want).abs() < 1e-4, "({x},{y}): {} vs {want}", out[y * d + x]);
            }
        }
    }

    #[test]
    fn shift_then_unshift_is_identity_and_batch_and_mask_agree() {
        let d = 12;
        let lat = Lattice::new(d + 1, 0.5).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        let n = lat.len();
        // A symmetrized HT of a random image.
        let plan = HartleyPlan::new(d).unwrap();
        let mut ht: Vec<f32> = (0..2 * d * d).map(|_| rng.random_range(-1.0..1.0)).collect();
        plan.ht2_center_batch(&mut ht).unwrap();
        let mut sym = vec![0.0; 2 * n];
        symmetrize_ht(&ht, d, &mut sym).unwrap();
        let shifts = [[1.3f32, -2.7], [-0.4, 4.1]];
        let mut fwd = vec![0.0; 2 * n];
        translate_ht_batch(&lat, &sym, &shifts, &mut fwd).unwrap();
        let mut single = vec![0.0; n];
        translate_ht(&lat, &sym[n..], shifts[1], &mut single).unwrap();
        assert_eq!(&fwd[n..], &single[..]);
        // Translating by t then −t: the sin terms cancel exactly in exact arithmetic (the identity holds on
        // the symmetrized lattice because H(−k) is taken from the same table).
        let mut back = vec![0.0; 2 * n];
        translate_ht_batch(&lat, &fwd, &[[-1.3, 2.7], [0.4, -4.1]], &mut back).unwrap();
        let worst = sym.iter().zip(&back).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "max |Δ| {worst}");
        // The masked variant equals the full one on the mask.
        let mask = lat.circular_mask((d / 2) as f32, true);
        let freqs = masked_freqs(&lat, &mask).unwrap();
        let m = mask.len();
        let masked: Vec<f32> =
            (0..2).flat_map(|b| mask.iter().map(|&i| sym[b * n + i]).collect::<Vec<_>>()).collect();
        let mut mout = vec![0.0; 2 * m];
        translate_ht_masked(&freqs, &masked, &shifts, &mut mout).unwrap();
        for b in 0..2 {
            for (j, &i) in mask.iter().enumerate() {
                assert!((mout[b * m + j] - fwd[b * n + i]).abs() < 1e-6);
            }
        }
        assert!(matches!(masked_freqs(&lat, &[0, 1]), Err(Error::Param { .. })));
        assert!(matches!(translate_ht(&lat, &sym, [0.0; 2], &mut single), Err(Error::Shape { .. })));
    }

    /// cryoDRGN's `tests/test_translate.py` golden (v4.3.0): hand image 0 → HT → symmetrize → translate by
    /// (5, 10) px → drop last row/col → inverse HT, 64×64 float64, atol 1e-4.
    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn golden_im_shifted_from_cryodrgn() {
        let hand = drgnfly_io::fixture_or_skip!("cryodrgn/hand.mrcs");
        let golden = drgnfly_io::fixture_or_skip!("cryodrgn/im_shifted.npy");
        let img = crate::testdata::read_mrc_image(&hand, 0);
        let want = crate::testdata::read_npy(&golden);
        assert_eq!(want.shape, [64, 64]);
        let out = shift_image(&img, 64, [5.0, 10.0]);
        let (d, at) = out
            .iter()
            .zip(&want.data)
            .enumerate()
            .map(|(i, (a, b))| ((*a as f64 - b).abs(), i))
            .fold((0.0, 0), |m, v| if v.0 > m.0 { v } else { m });
        assert!(d < 1e-4, "max |Δ| {d} at {at}");
    }
}
