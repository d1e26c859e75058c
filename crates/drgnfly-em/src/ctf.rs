//! The contrast transfer function (cryoDRGN `ctf.py::compute_ctf`).
//!
//! With spatial frequency `s = k / angpix` (1/Å, `k` in cycles/px from [`crate::lattice::Lattice::freqs2d`]),
//! `θ = atan2(s_y, s_x)`:
//!
//! ```text
//! Δf(θ) = ½·[Δf_u + Δf_v + (Δf_u − Δf_v)·cos 2(θ − θ_ast)]            (Å)
//! λ     = 12.2639 / √(V + 0.97845·10⁻⁶·V²),  V = 1000·kV               (Å)
//! γ     = 2π·(−½·Δf·λ·s² + ¼·C_s·λ³·s⁴) − φ,  C_s in Å = 10⁷·C_s(mm), φ = phase shift (rad)
//! CTF   = scale · (√(1 − w²)·sin γ − w·cos γ) · exp(−B·s²/4)
//! ```
//!
//! so `CTF(0) = −w·cos φ − √(1 − w²)·sin φ = −sin(φ + asin w)`, which is `−w` without a phase plate
//! (negative: raw particles are dark, and cryoDRGN inverts them by default). (cryoDRGN's notes say
//! `−w·cos φ`; that drops the `sin φ` term, e.g. −0.998 rather than 0 for φ = 90°, w = 0.07.)
//!
//! **cisTEM** (`CTF::Evaluate`) computes `−sin χ` with `χ = π·λ·Δf·s² − π/2·C_s·λ³·s⁴ + φ + atan(w/√(1−w²))`.
//! Since `√(1−w²)·sin γ − w·cos γ = sin(γ − atan(w/√(1−w²))) = −sin χ`, the two agree in sign, scale,
//! wavelength constants and defocus-angle convention (`defocus1 = Δf_u`, azimuth from +x towards +y). The
//! golden test against cisTEM (cryojax's `cistem_ctf.npz`) agrees to 2·10⁻⁴ (the residual is cisTEM's f32
//! phase at |γ| ≈ 500 rad: an f64 evaluation differs from it by as much). Orientation note for that file:
//! its grid is indexed `[i][j]` with `i` over `fftfreq(128)` and `j` over `rfftfreq(128)`, and cisTEM's
//! azimuth was measured with x along `i`, so the test passes `(kx, ky) = (fftfreq[i], rfftfreq[j])`.

use rayon::prelude::*;

use crate::{Error, Result};

/// CTF parameters of one particle, in physical units.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct CtfParams {
    /// Pixel size of the images the CTF is evaluated for (Å/px).
    pub angpix: f32,
    /// Defocus along the major axis, Å (positive = underfocus).
    pub defocus_u_a: f32,
    /// Defocus along the minor axis, Å.
    pub defocus_v_a: f32,
    /// Astigmatism angle of the U axis from +x, degrees.
    pub defocus_angle_deg: f32,
    /// Accelerating voltage, kV.
    pub voltage_kv: f32,
    /// Spherical aberration, mm.
    pub cs_mm: f32,
    /// Amplitude contrast ratio `w` in [0, 1].
    pub amp_contrast: f32,
    /// Additional phase shift (phase plate), degrees.
    pub phase_shift_deg: f32,
    /// Optional B-factor (Å²) applying `exp(−B·s²/4)`; cryoDRGN training never sets one.
    pub bfactor: Option<f32>,
    /// Overall scale factor (RELION `_rlnCtfScalefactor`, cryoDRGN-ET); 1 otherwise.
    pub scale: f32,
}

/// Where the pixel size of each row comes from when converting ctf.pkl rows for training.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PixelSizeFrom {
    /// `D₀·Apix₀/D` from row 0, applied to every row: cryoDRGN's `load_ctf_for_training`.
    FirstRow,
    /// `D₀·Apix₀/D` from each row's own columns (differs only for mixed-pixel-size stacks).
    EachRow,
}

/// Electron wavelength in Å at `voltage_kv`, with cryoDRGN's (and CTFFIND's) constants.
pub fn electron_wavelength_a(voltage_kv: f32) -> f64 {
    let v = voltage_kv as f64 * 1000.0;
    12.2639 / (v + 0.97845e-6 * v * v).sqrt()
}

impl CtfParams {
    /// One ctf.pkl row `[D₀, Apix₀, ΔU, ΔV, angle°, kV, Cs mm, w, phase°]` for images downsampled to `d`
    /// pixels: `angpix = D₀·Apix₀/d` (cryoDRGN `load_ctf_for_training` for a single row). The values are
    /// validated (finite, positive sizes and voltage, `0 ≤ w ≤ 1`); `row_index` names the row in errors.
    ///
    /// ```
    /// use drgnfly_em::ctf::CtfParams;
    /// let p = CtfParams::from_pkl_row([300.0, 1.035, 12000.0, 11000.0, 30.0, 300.0, 2.7, 0.1, 0.0], 128, 0).unwrap();
    /// assert!((p.angpix - 300.0 * 1.035 / 128.0).abs() < 1e-5);
    /// ```
    pub fn from_pkl_row(row: [f32; 9], d: usize, row_index: usize) -> Result<Self> {
        let p = Self {
            angpix: Self::pkl_angpix(row, d)?,
            defocus_u_a: row[2],
            defocus_v_a: row[3],
            defocus_angle_deg: row[4],
            voltage_kv: row[5],
            cs_mm: row[6],
            amp_contrast: row[7],
            phase_shift_deg: row[8],
            bfactor: None,
            scale: 1.0,
        };
        p.validate().map_err(|e| match e {
            Error::Param { name, value, why } => {
                Error::Param { name, value, why: format!("{why} (ctf row {row_index})") }
            }
            other => other,
        })?;
        Ok(p)
    }

    /// All rows of a ctf.pkl for training at box size `d` (see [`PixelSizeFrom`]).
    pub fn from_pkl_rows(rows: &[[f32; 9]], d: usize, apix_from: PixelSizeFrom) -> Result<Vec<Self>> {
        let first = match (apix_from, rows.first()) {
            (PixelSizeFrom::FirstRow, Some(&r)) => Some(Self::pkl_angpix(r, d)?),
            _ => None,
        };
        rows.iter()
            .enumerate()
            .map(|(i, &r)| {
                let mut p = Self::from_pkl_row(r, d, i)?;
                if let Some(a) = first {
                    p.angpix = a;
                }
                Ok(p)
            })
            .collect()
    }

    fn pkl_angpix(row: [f32; 9], d: usize) -> Result<f32> {
        if d == 0 {
            return Err(Error::Param { name: "box size", value: "0".into(), why: "must be > 0".into() });
        }
        Ok((row[0] as f64 * row[1] as f64 / d as f64) as f32)
    }

    /// Checks that every parameter is usable (finite, `angpix > 0`, `voltage_kv > 0`, `0 ≤ w ≤ 1`).
    pub fn validate(&self) -> Result<()> {
        let bad = |name: &'static str, v: f32, why: &str| {
            Err(Error::Param { name, value: v.to_string(), why: why.into() })
        };
        for (name, v) in [
            ("defocus U (Å)", self.defocus_u_a),
            ("defocus V (Å)", self.defocus_v_a),
            ("defocus angle (°)", self.defocus_angle_deg),
            ("Cs (mm)", self.cs_mm),
            ("phase shift (°)", self.phase_shift_deg),
            ("CTF scale", self.scale),
            ("B-factor", self.bfactor.unwrap_or(0.0)),
        ] {
            if !v.is_finite() {
                return bad(name, v, "must be finite; check the CTF columns of the input");
            }
        }
        if !(self.angpix.is_finite() && self.angpix > 0.0) {
            return bad(
                "pixel size (Å)",
                self.angpix,
                "must be > 0: check D and Apix of the ctf.pkl (or --Apix)",
            );
        }
        if !(self.voltage_kv.is_finite() && self.voltage_kv > 0.0) {
            return bad("voltage (kV)", self.voltage_kv, "must be > 0 (pass --kv)");
        }
        if !(0.0..=1.0).contains(&self.amp_contrast) {
            return bad(
                "amplitude contrast",
                self.amp_contrast,
                "must be in [0, 1] (pass -w, typically 0.1)",
            );
        }
        Ok(())
    }

    /// The CTF at frequencies `freqs2d` (`(N, 2)` flattened `(kx, ky)`, cycles/px) into `out` (`N`).
    /// f32 arithmetic, as cryoDRGN's torch code; `cos 2(θ − θ_ast)` is expanded with `cos 2θ = (kx² − ky²)/k²`
    /// and `sin 2θ = 2 kx ky / k²`, which avoids `atan2` and equals cryoDRGN's `θ = atan2(0, 0) = 0` at k = 0.
    pub fn compute(&self, freqs2d: &[f32], out: &mut [f32]) -> Result<()> {
        if freqs2d.len() != 2 * out.len() {
            return Err(Error::Shape {
                op: "ctf",
                expected: format!("freqs (N, 2) for N = {} outputs", out.len()),
                got: format!("{} frequency values", freqs2d.len()),
            });
        }
        let lam = electron_wavelength_a(self.voltage_kv) as f32;
        let w = self.amp_contrast;
        let sqrt_1mw2 = (1.0 - w * w).sqrt();
        let inv_apix = 1.0 / self.angpix;
        let cs_a = self.cs_mm * 1e7;
        let phase = self.phase_shift_deg.to_radians();
        let ang = self.defocus_angle_deg.to_radians();
        let (sin2a, cos2a) = (2.0 * ang).sin_cos();
        let (dsum, ddiff) = (self.defocus_u_a + self.defocus_v_a, self.defocus_u_a - self.defocus_v_a);
        let two_pi = std::f32::consts::TAU;
        let c2 = -0.5 * lam;
        let c4 = 0.25 * cs_a * lam * lam * lam;
        for (o, k) in out.iter_mut().zip(freqs2d.chunks_exact(2)) {
            let (sx, sy) = (k[0] * inv_apix, k[1] * inv_apix);
            let s2 = sx * sx + sy * sy;
            let (cos2t, sin2t) =
                if s2 > 0.0 { ((sx * sx - sy * sy) / s2, 2.0 * sx * sy / s2) } else { (1.0, 0.0) };
            // cos 2(θ − θ_ast) = cos 2θ cos 2θ_ast + sin 2θ sin 2θ_ast
            let df = 0.5 * (dsum + ddiff * (cos2t * cos2a + sin2t * sin2a));
            let gamma = two_pi * (c2 * df * s2 + c4 * s2 * s2) - phase;
            let (sg, cg) = gamma.sin_cos();
            let mut c = sqrt_1mw2 * sg - w * cg;
            if let Some(b) = self.bfactor {
                c *= (-b / 4.0 * s2).exp();
            }
            *o = self.scale * c;
        }
        Ok(())
    }

    /// Phase flipping: `sign(CTF)` at `freqs2d` into `out` (+1, −1, or 0 on a zero). The encoder input is
    /// `y·sign(CTF)` (cryoDRGN), and `backproject --ctf-alg flip` uses it.
    pub fn compute_sign(&self, freqs2d: &[f32], out: &mut [f32]) -> Result<()> {
        self.compute(freqs2d, out)?;
        out.iter_mut().for_each(|v| {
            *v = if *v > 0.0 {
                1.0
            } else if *v < 0.0 {
                -1.0
            } else {
                0.0
            }
        });
        Ok(())
    }
}

/// The CTFs of a batch: `params[i]` evaluated at `freqs2d` into row `i` of `out` (`(B, N)`), in parallel.
pub fn compute_batch(params: &[CtfParams], freqs2d: &[f32], out: &mut [f32]) -> Result<()> {
    let n = freqs2d.len() / 2;
    if !freqs2d.len().is_multiple_of(2) || out.len() != params.len() * n {
        return Err(Error::Shape {
            op: "ctf batch",
            expected: format!("out (B, N) = ({}, {n})", params.len()),
            got: format!("{} values", out.len()),
        });
    }
    if n == 0 {
        return Ok(());
    }
    out.par_chunks_mut(n).zip(params.par_iter()).try_for_each(|(o, p)| p.compute(freqs2d, o))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::lattice::Lattice;
    use std::f64::consts::PI;

    fn params() -> CtfParams {
        CtfParams {
            angpix: 1.5,
            defocus_u_a: 15000.0,
            defocus_v_a: 13000.0,
            defocus_angle_deg: 37.0,
            voltage_kv: 300.0,
            cs_mm: 2.7,
            amp_contrast: 0.1,
            phase_shift_deg: 0.0,
            bfactor: None,
            scale: 1.0,
        }
    }

    /// f64 reference straight from the formula, with `atan2` as cryoDRGN writes it.
    fn reference(p: &CtfParams, lam: f64, kx: f64, ky: f64) -> f64 {
        let (sx, sy) = (kx / p.angpix as f64, ky / p.angpix as f64);
        let s2 = sx * sx + sy * sy;
        let ang = sy.atan2(sx);
        let (u, v) = (p.defocus_u_a as f64, p.defocus_v_a as f64);
        let df = 0.5 * (u + v + (u - v) * (2.0 * (ang - (p.defocus_angle_deg as f64).to_radians())).cos());
        let cs = p.cs_mm as f64 * 1e7;
        let gamma = 2.0 * PI * (-0.5 * df * lam * s2 + 0.25 * cs * lam.powi(3) * s2 * s2)
            - (p.phase_shift_deg as f64).to_radians();
        let w = p.amp_contrast as f64;
        let mut c = (1.0 - w * w).sqrt() * gamma.sin() - w * gamma.cos();
        if let Some(b) = p.bfactor {
            c *= (-(b as f64) / 4.0 * s2).exp();
        }
        p.scale as f64 * c
    }

    #[test]
    fn matches_the_f64_reference_on_the_lattice() {
        let lat = Lattice::new(129, 0.5).unwrap();
        for p in [
            params(),
            CtfParams { phase_shift_deg: 90.0, bfactor: Some(50.0), scale: 0.8, ..params() },
            CtfParams { defocus_u_a: 30000.0, defocus_v_a: 29000.0, defocus_angle_deg: -120.0, ..params() },
        ] {
            let mut out = vec![0.0; lat.len()];
            p.compute(lat.freqs2d(), &mut out).unwrap();
            let lam = electron_wavelength_a(p.voltage_kv);
            for (i, k) in lat.freqs2d().chunks_exact(2).enumerate() {
                let want = reference(&p, lam, k[0] as f64, k[1] as f64);
                assert!((out[i] as f64 - want).abs() < 2e-4, "{p:?} point {i}: {} vs {want}", out[i]);
            }
        }
    }

    #[test]
    fn dc_value_is_minus_w_without_phase_shift() {
        for (w, phase) in [(0.1f32, 0.0f32), (0.07, 0.0), (0.07, 90.0), (0.2, 30.0)] {
            let p = CtfParams { amp_contrast: w, phase_shift_deg: phase, ..params() };
            let mut out = [0.0];
            p.compute(&[0.0, 0.0], &mut out).unwrap();
            // γ(0) = −φ: CTF(0) = −w cos φ − √(1 − w²) sin φ.
            let (w, phi) = (w as f64, (phase as f64).to_radians());
            let want = -w * phi.cos() - (1.0 - w * w).sqrt() * phi.sin();
            assert!((out[0] as f64 - want).abs() < 1e-6, "w={w} φ={phase}: {}", out[0]);
        }
    }

    #[test]
    fn zeros_where_gamma_is_n_pi_without_amplitude_contrast() {
        // w = 0, Cs = 0, no astigmatism: CTF = sin(−π Δf λ s²), zero at s² = n/(Δf λ).
        let p = CtfParams { amp_contrast: 0.0, cs_mm: 0.0, defocus_v_a: 15000.0, angpix: 1.0, ..params() };
        let lam = electron_wavelength_a(p.voltage_kv);
        for n in 1..6 {
            let s = (n as f64 / (15000.0 * lam)).sqrt();
            let (a, b) = ((s - 1e-4) as f32, (s + 1e-4) as f32);
            let mut out = [0.0; 2];
            p.compute(&[a, 0.0, b, 0.0], &mut out).unwrap();
            assert!(out[0] * out[1] < 0.0, "no sign change around zero {n}: {out:?}");
            let mut at = [0.0];
            p.compute(&[0.0, s as f32], &mut at).unwrap();
            assert!(at[0].abs() < 2e-3, "zero {n}: {}", at[0]);
        }
    }

    #[test]
    fn sign_and_batch() {
        let lat = Lattice::new(33, 0.5).unwrap();
        let ps = [params(), CtfParams { defocus_u_a: 20000.0, ..params() }];
        let mut batch = vec![0.0; 2 * lat.len()];
        compute_batch(&ps, lat.freqs2d(), &mut batch).unwrap();
        let mut one = vec![0.0; lat.len()];
        ps[1].compute(lat.freqs2d(), &mut one).unwrap();
        assert_eq!(&batch[lat.len()..], &one[..]);
        let mut sign = vec![0.0; lat.len()];
        ps[1].compute_sign(lat.freqs2d(), &mut sign).unwrap();
        assert!(sign.iter().zip(&one).all(|(s, c)| *s == c.signum()));
        assert!(matches!(compute_batch(&ps, lat.freqs2d(), &mut one), Err(Error::Shape { .. })));
    }

    #[test]
    fn pkl_rows_for_training() {
        let rows = [
            [300.0, 1.0, 10000.0, 9000.0, 10.0, 300.0, 2.7, 0.1, 0.0],
            [200.0, 2.0, 11000.0, 9500.0, 20.0, 300.0, 2.7, 0.1, 0.0],
        ];
        let first = CtfParams::from_pkl_rows(&rows, 100, PixelSizeFrom::FirstRow).unwrap();
        assert_eq!(first[1].angpix, 3.0); // row 0's 300·1/100, as cryoDRGN
        let each = CtfParams::from_pkl_rows(&rows, 100, PixelSizeFrom::EachRow).unwrap();
        assert_eq!(each[1].angpix, 4.0);
        assert_eq!(each[1].defocus_u_a, 11000.0);
        let mut bad = rows[0];
        bad[7] = 1.5;
        assert!(matches!(CtfParams::from_pkl_row(bad, 100, 0), Err(Error::Param { .. })));
        bad = rows[0];
        bad[5] = f32::NAN;
        assert!(matches!(CtfParams::from_pkl_row(bad, 100, 0), Err(Error::Param { .. })));
    }

    /// cisTEM `CTF::Evaluate` on cryojax's 128×65 rfft grid (generated by cryojax 0.6.0's
    /// `tests/generate_cistem_references.py` with pycistem 0.4.1): rows of the grid are `fftfreq(128)` in y,
    /// columns `rfftfreq(128)` in x; parameters `(defocus1, defocus2, astig_angle°, kV, Cs mm, ac, Å/px)`.
    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn agrees_with_cistem() {
        let path = drgnfly_io::fixture_or_skip!("cryojax/cistem_ctf.npz");
        let params = crate::testdata::read_npz(&path, "parameters");
        let ctf = crate::testdata::read_npz(&path, "ctf");
        assert_eq!(ctf.shape, [9, 128, 65]);
        let (ny, nx) = (128usize, 65usize);
        let mut freqs = Vec::with_capacity(2 * ny * nx);
        for i in 0..ny {
            let fi = if i < ny / 2 { i as f32 } else { i as f32 - ny as f32 } / ny as f32; // fftfreq
            for j in 0..nx {
                // cisTEM's x runs along axis i of this file (see the module docs).
                freqs.extend_from_slice(&[fi, j as f32 / ny as f32]);
            }
        }
        let (mut worst, mut sum, mut count) = (0.0f64, 0.0f64, 0usize);
        for (case, row) in params.data.chunks_exact(7).enumerate() {
            let p = CtfParams {
                angpix: row[6] as f32,
                defocus_u_a: row[0] as f32,
                defocus_v_a: row[1] as f32,
                defocus_angle_deg: row[2] as f32,
                voltage_kv: row[3] as f32,
                cs_mm: row[4] as f32,
                amp_contrast: row[5] as f32,
                phase_shift_deg: 0.0,
                bfactor: None,
                scale: 1.0,
            };
            let want = &ctf.data[case * ny * nx..(case + 1) * ny * nx];
            let mut out = vec![0.0f32; ny * nx];
            p.compute(&freqs, &mut out).unwrap();
            for (i, (a, b)) in out.iter().zip(want).enumerate() {
                let d = (*a as f64 - b).abs();
                assert!(d < 2.5e-4, "case {case} point {i}: {a} vs cisTEM {b}");
                worst = worst.max(d);
                sum += d;
                count += 1;
            }
        }
        let mean = sum / count as f64;
        assert!(mean < 1e-5, "mean |Δ| {mean:.2e}, max {worst:.2e}");
    }
}
