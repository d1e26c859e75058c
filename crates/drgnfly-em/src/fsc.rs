//! Fourier shell correlation between two `D³` volumes (cryoDRGN `commands_utils/fsc.py`).
//!
//! Both volumes go through the centred 3D FFT ([`crate::fft`]); the voxel at `[z][y][x]` has frequency
//! vector `k = (x − D/2, y − D/2, z − D/2)` in units of `1/D` cycles per pixel and radius `r = |k|`. Shell
//! `i` (for `i = 1 … D/2 − 1`) holds the voxels with `i − 1 ≤ r < i` and is reported at
//! `i / D` cycles/px; shell 0 is the DC term and is reported as FSC = 1 at 0 cycles/px. This is exactly
//! cryoDRGN's table (`D/2` rows, last one at `(D/2 − 1)/D`, e.g. 0.484 at D = 64), so `fsc-vals.txt`
//! files are interchangeable.
//!
//! `FSC_i = Re Σ A·B̄ / √(Σ|A|² · Σ|B|²)` over the voxels of shell `i`; an empty or all-zero shell gives 0.
//!
//! Resolution at a threshold (0.5, 0.143): the first shell after DC whose FSC falls below the threshold,
//! linearly interpolated in cycles/px between it and the shell before; in pixels it is `1/freq` and in Å
//! `Apix/freq`. A curve that never drops below the threshold resolves to its last shell's frequency.

use num_complex::Complex32;
use rayon::prelude::*;

use crate::fft::CenteredFft;
use crate::{Error, Result};

/// An FSC curve: `freq[i]` in cycles per pixel and `fsc[i]`, one entry per shell (`D/2` shells).
#[derive(Debug, Clone, PartialEq)]
pub struct FscCurve {
    /// Shell frequencies in cycles/px (`i / D`).
    pub freq: Vec<f64>,
    /// Correlation per shell, in [−1, 1].
    pub fsc: Vec<f64>,
}

/// FSC between volumes `a` and `b` (`D³`, `[z][y][x]`), each multiplied by the optional real-space
/// `mask` (`D³`, usually soft, in [0, 1]) before the transform.
///
/// ```
/// use drgnfly_em::fsc::fsc;
/// let d = 8;
/// let v: Vec<f32> = (0..d * d * d).map(|i| ((i * 37) % 11) as f32).collect();
/// let curve = fsc(&v, &v, d, None).unwrap();
/// assert_eq!(curve.fsc.len(), d / 2);
/// assert!(curve.fsc.iter().all(|&c| (c - 1.0).abs() < 1e-6));
/// ```
pub fn fsc(a: &[f32], b: &[f32], d: usize, mask: Option<&[f32]>) -> Result<FscCurve> {
    let n = d * d * d;
    if d < 2 || !d.is_multiple_of(2) {
        return Err(Error::Param {
            name: "box size",
            value: d.to_string(),
            why: "FSC needs an even box ≥ 2".into(),
        });
    }
    for (what, len) in [("first volume", a.len()), ("second volume", b.len())] {
        if len != n {
            return Err(Error::Shape {
                op: "fsc",
                expected: format!("({d}, {d}, {d}) = {n} values"),
                got: format!("{len} values in the {what}"),
            });
        }
    }
    if let Some(m) = mask {
        if m.len() != n {
            return Err(Error::Shape {
                op: "fsc mask",
                expected: format!("({d}, {d}, {d}) = {n} values"),
                got: format!("{} values", m.len()),
            });
        }
    }
    let fft = CenteredFft::new(d)?;
    let to_complex = |v: &[f32]| -> Vec<Complex32> {
        match mask {
            Some(m) => v.par_iter().zip(m).map(|(&x, &w)| Complex32::new(x * w, 0.0)).collect(),
            None => v.par_iter().map(|&x| Complex32::new(x, 0.0)).collect(),
        }
    };
    let mut fa = to_complex(a);
    let mut fb = to_complex(b);
    fft.fft3_center(&mut fa)?;
    fft.fft3_center(&mut fb)?;

    let nshell = d / 2;
    let c = (d / 2) as f64;
    // Per shell: Σ Re(A·B̄), Σ|A|², Σ|B|², accumulated per z-slab in parallel and summed.
    let sums = fa
        .par_chunks(d * d)
        .zip(fb.par_chunks(d * d))
        .enumerate()
        .map(|(z, (sa, sb))| {
            let mut acc = vec![[0.0f64; 3]; nshell];
            let dz = z as f64 - c;
            for y in 0..d {
                let dy = y as f64 - c;
                for x in 0..d {
                    let dx = x as f64 - c;
                    let r = (dx * dx + dy * dy + dz * dz).sqrt();
                    // Shell i holds i − 1 ≤ r < i, i.e. i = floor(r) + 1; DC (r = 0) is shell 1 too, as in
                    // cryoDRGN, whose first computed shell is r < 1.
                    let i = r.floor() as usize + 1;
                    if i >= nshell {
                        continue;
                    }
                    let (p, q) = (sa[y * d + x], sb[y * d + x]);
                    let s = &mut acc[i];
                    s[0] += p.re as f64 * q.re as f64 + p.im as f64 * q.im as f64;
                    s[1] += p.norm_sqr() as f64;
                    s[2] += q.norm_sqr() as f64;
                }
            }
            acc
        })
        .reduce(
            || vec![[0.0f64; 3]; nshell],
            |mut x, y| {
                for (a, b) in x.iter_mut().zip(&y) {
                    for k in 0..3 {
                        a[k] += b[k];
                    }
                }
                x
            },
        );
    let mut fsc = vec![1.0];
    for s in &sums[1..] {
        let den = (s[1] * s[2]).sqrt();
        fsc.push(if den > 0.0 { s[0] / den } else { 0.0 });
    }
    let freq = (0..nshell).map(|i| i as f64 / d as f64).collect();
    Ok(FscCurve { freq, fsc })
}

impl FscCurve {
    /// Frequency (cycles/px) where the curve first falls below `threshold`, linearly interpolated between
    /// the shells on either side; the last shell's frequency when it never does.
    pub fn crossing(&self, threshold: f64) -> f64 {
        for i in 1..self.fsc.len() {
            let (f0, f1) = (self.fsc[i - 1], self.fsc[i]);
            if f1 < threshold {
                let (x0, x1) = (self.freq[i - 1], self.freq[i]);
                // Linear in frequency: f0 ≥ threshold > f1, so the denominator is positive.
                let t = if f0 > f1 { (f0 - threshold) / (f0 - f1) } else { 0.0 };
                return x0 + t * (x1 - x0);
            }
        }
        self.freq.last().copied().unwrap_or(0.0)
    }

    /// Area under the curve against frequency in cycles/px, by the trapezoid rule over the table's shells
    /// (CryoBench's FSC-AUC, used to compare reconstructions in the cryoDRGN-AI and HetACUMN benchmarks).
    /// One summary of the whole curve rather than of one crossing: a perfect map scores the last shell's
    /// frequency (≈ 0.5), uncorrelated maps ≈ 0.
    pub fn auc(&self) -> f64 {
        self.freq.windows(2).zip(self.fsc.windows(2)).map(|(f, c)| 0.5 * (f[1] - f[0]) * (c[0] + c[1])).sum()
    }

    /// Resolution in pixels at `threshold`: `1 / crossing` (infinite when the curve starts below it).
    pub fn resolution_px(&self, threshold: f64) -> f64 {
        1.0 / self.crossing(threshold)
    }

    /// Resolution in Å at `threshold`, for a pixel size of `apix` Å.
    pub fn resolution_angstrom(&self, threshold: f64, apix: f64) -> f64 {
        apix / self.crossing(threshold)
    }

    /// cryoDRGN's `fsc-vals.txt`: a `pixres fsc` header, then one space-separated row per shell (pandas
    /// `to_csv(sep=" ", index=False)` layout; numbers in shortest round-trip form).
    pub fn to_text(&self) -> String {
        let mut s = String::from("pixres fsc\n");
        for (f, c) in self.freq.iter().zip(&self.fsc) {
            s.push_str(&format!("{f} {c}\n"));
        }
        s
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::filter::low_pass;
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;
    use rand_distr::{Distribution, StandardNormal};

    fn noise(n: usize, seed: u64) -> Vec<f32> {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        (0..n).map(|_| StandardNormal.sample(&mut rng)).collect()
    }

    #[test]
    fn identical_volumes_correlate_everywhere() {
        let d = 32;
        let v = noise(d * d * d, 1);
        let c = fsc(&v, &v, d, None).unwrap();
        assert_eq!(c.fsc.len(), 16);
        assert!((c.freq[15] - 15.0 / 32.0).abs() < 1e-12);
        let worst = c.fsc.iter().map(|x| (x - 1.0).abs()).fold(0.0, f64::max);
        assert!(worst < 1e-6, "max |FSC − 1| = {worst}");
        assert_eq!(c.crossing(0.143), c.freq[15]);
        assert!((c.auc() - 15.0 / 32.0).abs() < 1e-6, "a perfect curve's area is its last frequency");
    }

    #[test]
    fn independent_noise_is_uncorrelated() {
        let d = 64;
        let c = fsc(&noise(d * d * d, 2), &noise(d * d * d, 3), d, None).unwrap();
        let mean = c.fsc[1..].iter().sum::<f64>() / (c.fsc.len() - 1) as f64;
        assert!(mean.abs() < 0.05, "mean FSC {mean}");
        // Beyond the few innermost shells (tens of voxels) each shell holds hundreds of voxels: |FSC| small.
        assert!(c.fsc[8..].iter().all(|x| x.abs() < 0.15), "{:?}", c.fsc);
    }

    #[test]
    fn low_passed_copy_drops_at_the_cutoff() {
        let d = 64;
        let v = noise(d * d * d, 4);
        let mut w = v.clone();
        let cutoff = 0.25; // cycles/px = shell radius 16
        low_pass(&mut w, d, cutoff).unwrap();
        // A little independent noise so the shells above the cutoff are defined (→ ≈ 0, not 0/0).
        for (x, e) in w.iter_mut().zip(noise(d * d * d, 5)) {
            *x += 0.01 * e;
        }
        let c = fsc(&v, &w, d, None).unwrap();
        assert!(c.fsc[1..16].iter().all(|&x| x > 0.95), "{:?}", &c.fsc[..16]);
        assert!(c.fsc[18..].iter().all(|&x| x.abs() < 0.2), "{:?}", &c.fsc[18..]);
        let res = c.crossing(0.5);
        assert!((res - cutoff).abs() < 1.5 / d as f64, "crossing {res}");
        assert!((c.resolution_angstrom(0.5, 2.0) - 2.0 / res).abs() < 1e-12);
    }

    #[test]
    fn masking_and_text_format() {
        let d = 8;
        let v = noise(d * d * d, 6);
        let mask = vec![0.5f32; d * d * d];
        let c = fsc(&v, &v, d, Some(&mask)).unwrap();
        let text = c.to_text();
        let lines: Vec<&str> = text.lines().collect();
        assert_eq!(lines[0], "pixres fsc");
        assert_eq!(lines[1], "0 1");
        assert_eq!(lines.len(), 1 + d / 2);
        assert!(lines[4].starts_with("0.375 "));
        assert!(matches!(fsc(&v, &v[1..], d, None), Err(Error::Shape { .. })));
        assert!(matches!(fsc(&v, &v, d, Some(&mask[1..])), Err(Error::Shape { .. })));
    }
}
