//! Centred complex FFTs in 2D and 3D (cryoDRGN `fft2_center`, `fftn_center`).
//!
//! `fft2_center(x) = fftshift(fft2(ifftshift(x)))`: the origin sits at index `n/2` (integer division) on
//! every axis, in real and in frequency space. For even `n`, `fftshift == ifftshift` and this is exactly
//! cryoDRGN's `fftshift(fft2(fftshift(x)))`; for odd `n` (which cryoDRGN never uses) the origin convention is
//! kept, which is what a centred transform of an odd box means. Forward transforms are unnormalised,
//! inverse ones divide by `n^ndim`, as numpy's (see [the crate conventions](crate#conventions)).
//!
//! For even `n` the two shifts cost nothing: shifting a signal by `n/2` multiplies its transform by
//! `(−1)^k`, so `fftshift(fft(fftshift(x)))[m] = (−1)^{m + n/2} · fft((−1)^j x[j])[m]`. The input and the
//! output are modulated by a checkerboard instead of moving data. Odd `n` rolls the data.
//!
//! Arrays are row-major with the last axis fastest: images `[y][x]`, volumes `[z][y][x]`. Storage and
//! arithmetic are f32: the round-off of an f32 FFT of size n grows like `ε·log n` (≈ 1e-6 relative at
//! n = 256), well inside the 1e-5 tolerance of cryoDRGN's own golden tests.

use std::sync::Arc;

use num_complex::Complex32;
use rayon::prelude::*;
use rustfft::{Fft, FftPlanner};

use crate::{Error, Result};

/// A centred complex FFT of side `n`, planned once and shared between threads (`Send + Sync`).
///
/// ```
/// use drgnfly_em::fft::CenteredFft;
/// use num_complex::Complex32;
/// let fft = CenteredFft::new(4).unwrap();
/// // A delta at the centre (index 2, 2) transforms to a constant.
/// let mut x = vec![Complex32::new(0.0, 0.0); 16];
/// x[2 * 4 + 2] = Complex32::new(1.0, 0.0);
/// fft.fft2_center(&mut x).unwrap();
/// assert!(x.iter().all(|v| (v.re - 1.0).abs() < 1e-6 && v.im.abs() < 1e-6));
/// ```
#[derive(Clone)]
pub struct CenteredFft {
    n: usize,
    forward: Arc<dyn Fft<f32>>,
    inverse: Arc<dyn Fft<f32>>,
}

impl std::fmt::Debug for CenteredFft {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CenteredFft").field("n", &self.n).finish()
    }
}

impl CenteredFft {
    /// Plans the transforms for side `n ≥ 1`.
    pub fn new(n: usize) -> Result<Self> {
        if n == 0 {
            return Err(Error::Param {
                name: "box size",
                value: "0".into(),
                why: "must be at least 1".into(),
            });
        }
        let mut planner = FftPlanner::new();
        Ok(Self { n, forward: planner.plan_fft_forward(n), inverse: planner.plan_fft_inverse(n) })
    }

    /// The side length `n`.
    pub fn size(&self) -> usize {
        self.n
    }

    /// In-place centred forward 2D FFT of an `n × n` image: `X(k) = Σ_x x(x)·e^{−2πi k·x/n}`, unnormalised.
    pub fn fft2_center(&self, data: &mut [Complex32]) -> Result<()> {
        self.transform(data, 2, false, "fft2_center")
    }

    /// In-place centred inverse 2D FFT, divided by `n²` so that it inverts [`Self::fft2_center`].
    pub fn ifft2_center(&self, data: &mut [Complex32]) -> Result<()> {
        self.transform(data, 2, true, "ifft2_center")
    }

    /// In-place centred forward 3D FFT of an `n³` volume indexed `[z][y][x]`, unnormalised.
    pub fn fft3_center(&self, data: &mut [Complex32]) -> Result<()> {
        self.transform(data, 3, false, "fft3_center")
    }

    /// In-place centred inverse 3D FFT, divided by `n³`.
    pub fn ifft3_center(&self, data: &mut [Complex32]) -> Result<()> {
        self.transform(data, 3, true, "ifft3_center")
    }

    fn transform(&self, data: &mut [Complex32], ndim: u32, inverse: bool, op: &'static str) -> Result<()> {
        let n = self.n;
        let total = n.pow(ndim);
        if data.len() != total {
            return Err(Error::Shape {
                op,
                expected: format!("{total} values ({n}^{ndim})"),
                got: format!("{} values", data.len()),
            });
        }
        let fft = if inverse { &self.inverse } else { &self.forward };
        let even = n.is_multiple_of(2);
        if even {
            checkerboard(data, n, 1.0);
        } else {
            roll(data, n, ndim, n - n / 2); // ifftshift: the centre n/2 moves to 0
        }
        for axis in 0..ndim {
            let inner = n.pow(ndim - 1 - axis);
            fft_along_axis(fft.as_ref(), data, n, inner);
        }
        let scale = if inverse { 1.0 / total as f32 } else { 1.0 };
        if even {
            // (−1)^{n/2} per axis from the output shift.
            let sign = if (n / 2 * ndim as usize).is_multiple_of(2) { 1.0 } else { -1.0 };
            checkerboard(data, n, sign * scale);
        } else {
            roll(data, n, ndim, n / 2); // fftshift: 0 moves to n/2
            if inverse {
                data.iter_mut().for_each(|v| *v *= scale);
            }
        }
        Ok(())
    }
}

/// Multiplies `data` (any number of axes of side `n`, even) by `scale·(−1)^{Σ indices}`.
fn checkerboard(data: &mut [Complex32], n: usize, scale: f32) {
    // Along a row the sign alternates; a row starts with the parity of its outer indices (the base-n
    // digits of the row number).
    data.par_chunks_mut(n).enumerate().for_each(|(row, line)| {
        let (mut r, mut parity) = (row, 0);
        while r > 0 {
            parity += r % n;
            r /= n;
        }
        let mut s = if parity % 2 == 0 { scale } else { -scale };
        for v in line {
            *v *= s;
            s = -s;
        }
    });
}

/// Cyclically shifts every axis by `shift` (out[(i + shift) mod n] = in[i]).
fn roll(data: &mut [Complex32], n: usize, ndim: u32, shift: usize) {
    let src = data.to_vec();
    let idx = |i: usize| (i + shift) % n;
    match ndim {
        2 => {
            for y in 0..n {
                for x in 0..n {
                    data[idx(y) * n + idx(x)] = src[y * n + x];
                }
            }
        }
        _ => {
            for z in 0..n {
                for y in 0..n {
                    for x in 0..n {
                        data[(idx(z) * n + idx(y)) * n + idx(x)] = src[(z * n + y) * n + x];
                    }
                }
            }
        }
    }
}

/// FFT of length `n` along the axis whose stride is `inner`, for an array viewed as `(outer, n, inner)`.
fn fft_along_axis(fft: &dyn Fft<f32>, data: &mut [Complex32], n: usize, inner: usize) {
    let scratch_len = fft.get_inplace_scratch_len();
    let zero = Complex32::new(0.0, 0.0);
    if inner == 1 {
        // Contiguous lines: batch many per task so each task amortises its scratch.
        data.par_chunks_mut(n * 64).for_each_init(
            || vec![zero; scratch_len],
            |scratch, lines| fft.process_with_scratch(lines, scratch),
        );
        return;
    }
    // Strided lines: gather each line of a block into a contiguous buffer, transform, scatter back.
    let mut buf = vec![zero; n * inner];
    for block in data.chunks_mut(n * inner) {
        let block_ref = &*block;
        buf.par_chunks_mut(n).enumerate().for_each_init(
            || vec![zero; scratch_len],
            |scratch, (j, line)| {
                for (k, v) in line.iter_mut().enumerate() {
                    *v = block_ref[k * inner + j];
                }
                fft.process_with_scratch(line, scratch);
            },
        );
        block.par_chunks_mut(inner).enumerate().for_each(|(k, row)| {
            for (j, v) in row.iter_mut().enumerate() {
                *v = buf[j * n + k];
            }
        });
    }
}

/// Naive O(N²)-per-axis centred DFT, the reference the fast transforms are tested against.
#[cfg(test)]
pub(crate) mod naive {
    use num_complex::Complex64;

    /// Centred 2D DFT with origin at `n/2`: `X(k) = Σ_x x(x)·e^{∓2πi (k−c)·(x−c)/n}` (− forward).
    pub fn dft2_center(x: &[Complex64], n: usize, inverse: bool) -> Vec<Complex64> {
        let c = (n / 2) as f64;
        let sign = if inverse { 1.0 } else { -1.0 };
        let mut out = vec![Complex64::new(0.0, 0.0); n * n];
        for ky in 0..n {
            for kx in 0..n {
                let mut acc = Complex64::new(0.0, 0.0);
                for y in 0..n {
                    for x_ in 0..n {
                        let ph = sign
                            * 2.0
                            * std::f64::consts::PI
                            * ((ky as f64 - c) * (y as f64 - c) + (kx as f64 - c) * (x_ as f64 - c))
                            / n as f64;
                        acc += x[y * n + x_] * Complex64::from_polar(1.0, ph);
                    }
                }
                out[ky * n + kx] = if inverse { acc / (n * n) as f64 } else { acc };
            }
        }
        out
    }

    /// Centred 3D DFT, same convention as [`dft2_center`].
    pub fn dft3_center(x: &[Complex64], n: usize) -> Vec<Complex64> {
        let c = (n / 2) as f64;
        let centred = |i: usize| [(i / (n * n)) as f64 - c, ((i / n) % n) as f64 - c, (i % n) as f64 - c];
        (0..n * n * n)
            .map(|k| {
                let kk = centred(k);
                x.iter()
                    .enumerate()
                    .map(|(i, v)| {
                        let xx = centred(i);
                        let dot = kk[0] * xx[0] + kk[1] * xx[1] + kk[2] * xx[2];
                        v * Complex64::from_polar(1.0, -2.0 * std::f64::consts::PI * dot / n as f64)
                    })
                    .sum()
            })
            .collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use num_complex::Complex64;
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    fn random(len: usize, seed: u64) -> Vec<Complex32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..len).map(|_| Complex32::new(rng.random_range(-1.0..1.0), rng.random_range(-1.0..1.0))).collect()
    }

    fn max_diff(a: &[Complex32], b: &[Complex64]) -> (f64, usize) {
        a.iter()
            .zip(b)
            .enumerate()
            .map(|(i, (x, y))| ((Complex64::new(x.re as f64, x.im as f64) - y).norm(), i))
            .fold((0.0, 0), |m, v| if v.0 > m.0 { v } else { m })
    }

    #[test]
    fn fft2_matches_naive_dft_for_even_odd_and_prime_sizes() {
        for n in [1usize, 2, 4, 5, 6, 7, 8, 13, 16] {
            let x = random(n * n, n as u64);
            let x64: Vec<Complex64> = x.iter().map(|v| Complex64::new(v.re as f64, v.im as f64)).collect();
            let fft = CenteredFft::new(n).unwrap();
            let mut y = x.clone();
            fft.fft2_center(&mut y).unwrap();
            let (d, at) = max_diff(&y, &naive::dft2_center(&x64, n, false));
            assert!(d < 1e-5 * n as f64, "n={n}: max |Δ| {d} at {at}");
            let mut z = x.clone();
            fft.ifft2_center(&mut z).unwrap();
            let (d, at) = max_diff(&z, &naive::dft2_center(&x64, n, true));
            assert!(d < 1e-6 * n as f64, "inverse n={n}: max |Δ| {d} at {at}");
        }
    }

    #[test]
    fn fft3_matches_naive_dft_and_round_trips() {
        for n in [2usize, 3, 4, 6, 7] {
            let x = random(n * n * n, 100 + n as u64);
            let x64: Vec<Complex64> = x.iter().map(|v| Complex64::new(v.re as f64, v.im as f64)).collect();
            let fft = CenteredFft::new(n).unwrap();
            let mut y = x.clone();
            fft.fft3_center(&mut y).unwrap();
            let (d, at) = max_diff(&y, &naive::dft3_center(&x64, n));
            assert!(d < 1e-5 * (n * n) as f64, "n={n}: max |Δ| {d} at {at}");
            fft.ifft3_center(&mut y).unwrap();
            let (d, at) = max_diff(&y, &x64);
            assert!(d < 1e-6 * n as f64, "round trip n={n}: max |Δ| {d} at {at}");
        }
    }

    #[test]
    fn strided_axes_are_correct_at_a_size_with_many_blocks() {
        // n = 32 exercises the batched contiguous path (chunks of 64 lines) and the block transposes.
        let n = 32;
        let x = random(n * n * n, 7);
        let fft = CenteredFft::new(n).unwrap();
        let mut y = x.clone();
        fft.fft3_center(&mut y).unwrap();
        // Parseval: Σ|X|² = n³ Σ|x|².
        let ex: f64 = x.iter().map(|v| v.norm_sqr() as f64).sum();
        let ey: f64 = y.iter().map(|v| v.norm_sqr() as f64).sum();
        assert!((ey / (n * n * n) as f64 - ex).abs() < 1e-4 * ex, "Parseval {ey} vs {ex}");
        fft.ifft3_center(&mut y).unwrap();
        let worst = x.iter().zip(&y).map(|(a, b)| (a - b).norm()).fold(0.0f32, f32::max);
        assert!(worst < 1e-5, "round trip max |Δ| {worst}");
    }

    #[test]
    fn wrong_length_is_a_shape_error() {
        let fft = CenteredFft::new(4).unwrap();
        let mut x = vec![Complex32::new(0.0, 0.0); 15];
        assert!(matches!(fft.fft2_center(&mut x), Err(Error::Shape { .. })));
        assert!(matches!(fft.fft3_center(&mut x), Err(Error::Shape { .. })));
        assert!(matches!(CenteredFft::new(0), Err(Error::Param { .. })));
    }
}
