//! Atoms → density maps: sums of 3D Gaussians on a `D³` grid.
//!
//! Geometry: voxel `[z][y][x]` has its centre at `((x − D/2)·apix, (y − D/2)·apix, (z − D/2)·apix)` Å
//! from the box centre, the same origin convention as the transforms ([`crate::fft`]). A blob at `c` Å
//! (relative to the box centre) with integral `a` and width `σ` Å contributes
//! `a·(2πσ²)^{−3/2}·exp(−|r − c|²/(2σ²))`. The value stored in a voxel is the blob's **mean over the
//! voxel** (its exact integral over the voxel cube, from `erf`, divided by `apix³`), so narrow blobs are not
//! aliased and `Σ voxels · apix³ = Σ a` for blobs inside the box. Each blob is truncated at 3σ, and its
//! weights along each axis are renormalised to sum to one, which keeps the mass exact.
//!
//! Atoms: the scattering amplitude of an element is either its atomic number `Z` (one Gaussian per atom)
//! or the 5-Gaussian electron scattering factor of Peng et al. (1996),
//! `f(s) = Σᵢ aᵢ exp(−bᵢ s²)` with `s = sin θ/λ = q/2` (Å⁻¹). Its real-space form is a sum of Gaussians
//! with `σᵢ² = (bᵢ + B)/(8π²)`, integral `aᵢ` (Å), where `B` (Å²) is the atom's Debye–Waller factor
//! (`exp(−B s²)`, again `σ² = B/(8π²)`). A target resolution `res` Å adds a blur of
//! `σ = res/(π√2)` (UCSF Chimera `molmap`'s default) as the equivalent extra B.
//!
//! Rendering is parallel over z-planes (rayon): each plane sums the blobs that reach it.

use rayon::prelude::*;

use crate::{Error, Result};

/// One isotropic Gaussian.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct GaussianBlob {
    /// Centre `(x, y, z)` in Å from the box centre.
    pub center: [f64; 3],
    /// Standard deviation in Å (per axis).
    pub sigma: f64,
    /// Integral of the blob (any unit; the map is this unit per Å³).
    pub amplitude: f64,
}

/// Renders `blobs` on a `D³` grid of `apix` Å/px, `[z][y][x]`, voxel values = mean density per Å³.
pub fn render_blobs(blobs: &[GaussianBlob], d: usize, apix: f64) -> Result<Vec<f32>> {
    if d == 0 {
        return Err(Error::Param { name: "box size", value: "0".into(), why: "must be at least 1".into() });
    }
    if !(apix.is_finite() && apix > 0.0) {
        return Err(Error::Param {
            name: "pixel size (Å)",
            value: apix.to_string(),
            why: "must be positive".into(),
        });
    }
    if let Some((i, b)) = blobs.iter().enumerate().find(|(_, b)| {
        !(b.sigma.is_finite()
            && b.sigma >= 0.0
            && b.amplitude.is_finite()
            && b.center.iter().all(|c| c.is_finite()))
    }) {
        return Err(Error::Param {
            name: "Gaussian blob",
            value: format!("#{i}: {b:?}"),
            why: "centre and amplitude must be finite and σ ≥ 0".into(),
        });
    }
    let inv_vox = 1.0 / (apix * apix * apix);
    // Axis weights per blob: [x, y, z] each (first index, weights).
    let weights: Vec<[(usize, Vec<f32>); 3]> = blobs
        .par_iter()
        .map(|b| {
            let s = (b.sigma / apix).max(1e-6);
            let c = (d / 2) as f64;
            [0, 1, 2].map(|k| axis_weights(b.center[k] / apix + c, s, d))
        })
        .collect();
    // Bucket blobs by the z-planes they reach.
    let mut by_plane: Vec<Vec<usize>> = vec![Vec::new(); d];
    for (i, w) in weights.iter().enumerate() {
        let (z0, ref wz) = w[2];
        for plane in by_plane.iter_mut().skip(z0).take(wz.len()) {
            plane.push(i);
        }
    }
    let mut vol = vec![0.0f32; d * d * d];
    vol.par_chunks_mut(d * d).enumerate().for_each(|(z, plane)| {
        for &i in &by_plane[z] {
            let [(x0, wx), (y0, wy), (z0, wz)] = &weights[i];
            let az = (blobs[i].amplitude * inv_vox) as f32 * wz[z - z0];
            for (dy, &vy) in wy.iter().enumerate() {
                let row = &mut plane[(y0 + dy) * d + x0..(y0 + dy) * d + x0 + wx.len()];
                let a = az * vy;
                for (o, &vx) in row.iter_mut().zip(wx) {
                    *o += a * vx;
                }
            }
        }
    });
    Ok(vol)
}

/// Voxel weights along one axis for a Gaussian at index `mu` (px) with width `s` (px): the integral of the
/// normalised Gaussian over each voxel `[i − ½, i + ½]` within 3σ, renormalised to sum to one, clipped to
/// `[0, d)`. Returns (first index, weights); empty when the blob is outside the box.
fn axis_weights(mu: f64, s: f64, d: usize) -> (usize, Vec<f32>) {
    let lo = (mu - 3.0 * s + 0.5).floor().max(0.0);
    let hi = (mu + 3.0 * s + 0.5).floor().min(d as f64 - 1.0);
    if hi < lo {
        return (0, Vec::new());
    }
    let cdf = |x: f64| 0.5 * (1.0 + erf((x - mu) / (s * std::f64::consts::SQRT_2)));
    let w: Vec<f64> =
        (lo as usize..=hi as usize).map(|i| cdf(i as f64 + 0.5) - cdf(i as f64 - 0.5)).collect();
    // The untruncated total over the window range (before clipping to the box) is what normalises, so
    // the part of a blob that falls outside the box is lost rather than folded back in.
    let full = cdf((mu + 3.0 * s + 0.5).floor() + 0.5) - cdf((mu - 3.0 * s + 0.5).floor() - 0.5);
    let norm = if full > 0.0 { 1.0 / full } else { 0.0 };
    (lo as usize, w.iter().map(|v| (v * norm) as f32).collect())
}

/// The error function, Abramowitz & Stegun 7.1.26 (|error| ≤ 1.5·10⁻⁷, ample for f32 maps); std has no
/// stable `erf` and this is the only special function the crate needs.
fn erf(x: f64) -> f64 {
    let t = 1.0 / (1.0 + 0.327_591_1 * x.abs());
    let poly = t
        * (0.254_829_592
            + t * (-0.284_496_736 + t * (1.421_413_741 + t * (-1.453_152_027 + t * 1.061_405_429))));
    let y = 1.0 - poly * (-x * x).exp();
    if x < 0.0 {
        -y
    } else {
        y
    }
}

/// How an element scatters.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Scattering {
    /// One Gaussian of integral `Z` (atomic number) per atom; its width comes only from B and the
    /// resolution.
    AtomicNumber,
    /// Peng et al. (1996) 5-Gaussian electron scattering factors (integral `f(0)` Å), for the elements in
    /// [`PENG_1996`].
    Peng,
}

/// Options for [`atom_blobs`] / [`render_atoms`].
#[derive(Debug, Clone, PartialEq)]
pub struct DensityParams {
    /// Box side in voxels.
    pub d: usize,
    /// Voxel size in Å.
    pub apix: f64,
    /// Point (Å, in the coordinates' frame) placed at the box centre; `None` = the scattering-weighted
    /// centre of mass of the atoms. Pass one fixed centre for all frames of a trajectory.
    pub center: Option<[f64; 3]>,
    /// Element amplitudes.
    pub scattering: Scattering,
    /// B-factor (Å²) added to every atom.
    pub b_factor: f64,
    /// Also add each atom's own B-factor from the file.
    pub use_file_b_factors: bool,
    /// Blur to this resolution (Å), as `σ = res/(π√2)`.
    pub resolution_a: Option<f64>,
}

impl DensityParams {
    /// `d` voxels of `apix` Å, Peng factors, centred on the centre of mass, B = 0, no resolution blur.
    pub fn new(d: usize, apix: f64) -> Self {
        Self {
            d,
            apix,
            center: None,
            scattering: Scattering::Peng,
            b_factor: 0.0,
            use_file_b_factors: false,
            resolution_a: None,
        }
    }
}

/// Peng, Ren, Dudarev & Whelan (1996), "Robust parameterization of elastic and absorptive electron atomic
/// scattering factors", Acta Cryst. A52, 257–276, Table 1 (neutral atoms, fit over 0 ≤ s ≤ 2 Å⁻¹):
/// `(symbol, a₁…a₅ (Å), b₁…b₅ (Å²))`. Transcribed from the table as tabulated in cryojax 0.6.0
/// (`peng1996_params.npy`, indexed by Z); `Σ aᵢ = f(0)` (C 2.509, N 2.214, O 1.983 Å).
pub const PENG_1996: &[(&str, [f64; 5], [f64; 5])] = &[
    ("H", [0.0349, 0.1201, 0.197, 0.0573, 0.1195], [0.5347, 3.5867, 12.3471, 18.9525, 38.6269]),
    ("C", [0.0893, 0.2563, 0.757, 1.0487, 0.3575], [0.2465, 1.71, 6.4094, 18.6113, 50.2523]),
    ("N", [0.1022, 0.3219, 0.7982, 0.8197, 0.1715], [0.2451, 1.7481, 6.1925, 17.3894, 48.1431]),
    ("O", [0.0974, 0.2921, 0.691, 0.699, 0.2039], [0.2067, 1.3815, 4.6943, 12.7105, 32.4726]),
    ("Na", [0.2142, 0.6853, 0.7692, 1.6589, 1.4482], [0.3334, 2.3446, 10.083, 48.3037, 138.27]),
    ("Mg", [0.2314, 0.6866, 0.9677, 2.1882, 1.1339], [0.3278, 2.272, 10.9241, 39.2898, 101.9748]),
    ("P", [0.2548, 0.6106, 1.4541, 2.3204, 0.8477], [0.2908, 1.874, 8.5176, 24.3434, 63.2996]),
    ("S", [0.2497, 0.5628, 1.3899, 2.1865, 0.7715], [0.2681, 1.6711, 7.0267, 19.5377, 50.3888]),
    ("Cl", [0.2443, 0.5397, 1.3919, 2.0197, 0.6621], [0.2468, 1.5242, 6.1537, 16.6687, 42.3086]),
    ("K", [0.4115, 1.4031, 2.2784, 2.6742, 2.2162], [0.3703, 3.3874, 13.1029, 68.9592, 194.4329]),
    ("Ca", [0.4054, 1.388, 2.1602, 3.7532, 2.2063], [0.3499, 3.0991, 11.9608, 53.9353, 142.3892]),
    ("Fe", [0.3946, 1.2725, 1.7031, 2.314, 1.4795], [0.2717, 2.0443, 7.6007, 29.9714, 86.2265]),
    ("Zn", [0.4288, 1.2646, 1.4472, 1.8294, 1.0934], [0.2593, 1.7998, 6.75, 25.586, 73.5284]),
];

/// Element symbols by atomic number (index = Z − 1), through xenon plus a few heavier ones in proteins.
const ELEMENTS: &[&str] = &[
    "H", "He", "Li", "Be", "B", "C", "N", "O", "F", "Ne", "Na", "Mg", "Al", "Si", "P", "S", "Cl", "Ar", "K",
    "Ca", "Sc", "Ti", "V", "Cr", "Mn", "Fe", "Co", "Ni", "Cu", "Zn", "Ga", "Ge", "As", "Se", "Br", "Kr",
    "Rb", "Sr", "Y", "Zr", "Nb", "Mo", "Tc", "Ru", "Rh", "Pd", "Ag", "Cd", "In", "Sn", "Sb", "Te", "I", "Xe",
];

/// Atomic number of an element symbol (case-insensitive), `None` if unknown (beyond Xe: W, Pt, Au, Hg
/// are also known).
pub fn atomic_number(symbol: &str) -> Option<u32> {
    let s = symbol.trim();
    if let Some(i) = ELEMENTS.iter().position(|e| e.eq_ignore_ascii_case(s)) {
        return Some(i as u32 + 1);
    }
    [("W", 74), ("Pt", 78), ("Au", 79), ("Hg", 80), ("Pb", 82), ("U", 92)]
        .iter()
        .find(|(e, _)| e.eq_ignore_ascii_case(s))
        .map(|&(_, z)| z)
}

/// The Gaussian components `(integral, b (Å²))` of one element: Peng's five, or `(Z, 0)`.
fn components(element: &str, scattering: Scattering, atom: usize) -> Result<Vec<(f64, f64)>> {
    match scattering {
        Scattering::AtomicNumber => atomic_number(element).map(|z| vec![(z as f64, 0.0)]).ok_or_else(|| Error::Param {
            name: "element",
            value: format!("`{element}` (atom {atom})"),
            why: "unknown element symbol; fix the element column of the model".into(),
        }),
        Scattering::Peng => PENG_1996
            .iter()
            .find(|(e, _, _)| e.eq_ignore_ascii_case(element.trim()))
            .map(|(_, a, b)| a.iter().zip(b).map(|(&a, &b)| (a, b)).collect())
            .ok_or_else(|| Error::Param {
                name: "element",
                value: format!("`{element}` (atom {atom})"),
                why: "no Peng (1996) coefficients embedded for this element (H C N O Na Mg P S Cl K Ca Fe Zn); use atomic-number scattering".into(),
            }),
    }
}

/// The scattering-weighted centre (Å) of `coords`: `Σ f(0)ᵢ rᵢ / Σ f(0)ᵢ`.
pub fn scattering_center(
    elements: &[impl AsRef<str>],
    coords: &[[f32; 3]],
    scattering: Scattering,
) -> Result<[f64; 3]> {
    check_atoms(elements.len(), coords.len(), None)?;
    let mut sum = [0.0f64; 3];
    let mut total = 0.0;
    for (i, (e, r)) in elements.iter().zip(coords).enumerate() {
        let w: f64 = components(e.as_ref(), scattering, i)?.iter().map(|c| c.0).sum();
        for k in 0..3 {
            sum[k] += w * r[k] as f64;
        }
        total += w;
    }
    if total <= 0.0 {
        return Err(Error::Param {
            name: "atoms",
            value: "0 atoms".into(),
            why: "the model has no atoms to centre".into(),
        });
    }
    Ok(sum.map(|s| s / total))
}

fn check_atoms(n_el: usize, n_xyz: usize, n_b: Option<usize>) -> Result<()> {
    if n_el != n_xyz || n_b.is_some_and(|n| n != n_xyz) {
        return Err(Error::Shape {
            op: "atoms to density",
            expected: format!("one element, coordinate (and B-factor) per atom ({n_xyz} coordinates)"),
            got: format!("{n_el} elements, {} B-factors", n_b.unwrap_or(n_el)),
        });
    }
    Ok(())
}

/// The Gaussians that [`render_atoms`] draws (Å coordinates relative to the box centre).
/// `b_factors` is needed only with `use_file_b_factors` (pass `&[]` otherwise).
pub fn atom_blobs(
    elements: &[impl AsRef<str>],
    coords: &[[f32; 3]],
    b_factors: &[f32],
    p: &DensityParams,
) -> Result<Vec<GaussianBlob>> {
    check_atoms(elements.len(), coords.len(), p.use_file_b_factors.then_some(b_factors.len()))?;
    if !(p.b_factor.is_finite() && p.b_factor >= 0.0) {
        return Err(Error::Param {
            name: "B-factor",
            value: p.b_factor.to_string(),
            why: "must be ≥ 0 Å²".into(),
        });
    }
    let b_res = match p.resolution_a {
        Some(r) if r.is_finite() && r > 0.0 => {
            let s = r / (std::f64::consts::PI * std::f64::consts::SQRT_2);
            8.0 * std::f64::consts::PI.powi(2) * s * s
        }
        Some(r) => {
            return Err(Error::Param {
                name: "resolution (Å)",
                value: r.to_string(),
                why: "must be positive".into(),
            })
        }
        None => 0.0,
    };
    let center = match p.center {
        Some(c) => c,
        None => scattering_center(elements, coords, p.scattering)?,
    };
    let eight_pi2 = 8.0 * std::f64::consts::PI.powi(2);
    let mut blobs = Vec::with_capacity(coords.len() * 5);
    for (i, (e, r)) in elements.iter().zip(coords).enumerate() {
        let own_b = if p.use_file_b_factors { b_factors[i].max(0.0) as f64 } else { 0.0 };
        let rel = [0, 1, 2].map(|k| r[k] as f64 - center[k]);
        for (a, b) in components(e.as_ref(), p.scattering, i)? {
            let sigma = ((b + p.b_factor + own_b + b_res) / eight_pi2).sqrt();
            blobs.push(GaussianBlob { center: rel, sigma, amplitude: a });
        }
    }
    Ok(blobs)
}

/// The largest per-axis distance (Å) of any atom in `coords` (Å) from `center`:
/// `max_i max_axis |rᵢ − c|`, the half-width of the smallest box centred on `center` holding every atom
/// centre (0 for no atoms). Compare with `D·apix/2` to see whether a model fits the box.
pub fn atom_extent(coords: &[[f32; 3]], center: [f64; 3]) -> f64 {
    coords
        .iter()
        .map(|r| (0..3).map(|k| (f64::from(r[k]) - center[k]).abs()).fold(0.0, f64::max))
        .fold(0.0, f64::max)
}

/// Renders atoms (elements, coordinates in Å) as a `D³` density map (`[z][y][x]`, value per Å³); see
/// the [module docs](self).
pub fn render_atoms(
    elements: &[impl AsRef<str>],
    coords: &[[f32; 3]],
    b_factors: &[f32],
    p: &DensityParams,
) -> Result<Vec<f32>> {
    render_blobs(&atom_blobs(elements, coords, b_factors, p)?, p.d, p.apix)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn atom_extent_is_the_largest_axis_offset() {
        let coords = [[1.0f32, -2.0, 0.5], [4.0, 3.0, -6.5], [0.0, 0.0, 0.0]];
        assert_eq!(atom_extent(&coords, [0.0; 3]), 6.5);
        assert_eq!(atom_extent(&coords, [2.0, 0.0, -3.0]), 3.5);
        assert_eq!(atom_extent(&[], [1.0; 3]), 0.0);
    }

    fn moments(v: &[f32], d: usize) -> (f64, [f64; 3]) {
        let mut m = 0.0;
        let mut c = [0.0; 3];
        for (i, &x) in v.iter().enumerate() {
            let idx = [i % d, (i / d) % d, i / (d * d)];
            m += x as f64;
            for k in 0..3 {
                c[k] += x as f64 * idx[k] as f64;
            }
        }
        (m, c.map(|s| s / m))
    }

    #[test]
    fn erf_matches_known_values() {
        for (x, want) in [
            (0.0, 0.0),
            (0.5, 0.520_499_877_8),
            (1.0, 0.842_700_792_9),
            (2.0, 0.995_322_265),
            (-1.0, -0.842_700_792_9),
        ] {
            assert!((erf(x) - want).abs() < 2e-7, "erf({x})");
        }
    }

    #[test]
    fn single_atom_profile_is_its_analytic_gaussian() {
        // A carbon with B chosen so that σ = 2 Å at 1 Å/px, off the grid by a fraction of a voxel.
        let (d, apix, sigma) = (32, 1.0, 2.0);
        let b = 8.0 * std::f64::consts::PI.powi(2) * sigma * sigma;
        let mut p = DensityParams::new(d, apix);
        p.scattering = Scattering::AtomicNumber;
        p.b_factor = b;
        p.center = Some([0.0; 3]);
        let pos = [0.3f32, -0.2, 0.45];
        let v = render_atoms(&["C"], &[pos], &[], &p).unwrap();
        let norm = 6.0 / (2.0 * std::f64::consts::PI * sigma * sigma).powf(1.5);
        let mut worst = 0.0f64;
        for (i, &x) in v.iter().enumerate() {
            let r = [
                (i % d) as f64 - 16.0 - pos[0] as f64,
                ((i / d) % d) as f64 - 16.0 - pos[1] as f64,
                (i / (d * d)) as f64 - 16.0 - pos[2] as f64,
            ];
            let r2 = r.iter().map(|c| c * c).sum::<f64>();
            if r2.sqrt() < 2.5 * sigma {
                // Voxel mean = point value + (1/24)·∇²g + O(σ⁻⁴); ∇²g/g = Σ (r_k²/σ⁴ − 1/σ²).
                let point = norm * (-r2 / (2.0 * sigma * sigma)).exp();
                let lap = r.iter().map(|c| c * c / sigma.powi(4) - 1.0 / (sigma * sigma)).sum::<f64>();
                let want = point * (1.0 + lap / 24.0);
                worst = worst.max((x as f64 - want).abs() / norm);
            }
        }
        // The 3σ truncation renormalises each axis by ≤ 1/0.9973: ≤ 0.8% in 3D.
        assert!(worst < 0.008, "max relative deviation {worst}");
        let (m, c) = moments(&v, d);
        assert!((m - 6.0).abs() < 1e-4, "mass {m}");
        for k in 0..3 {
            assert!((c[k] - 16.0 - pos[k] as f64).abs() < 0.01, "centre axis {k}: {}", c[k]);
        }
    }

    #[test]
    fn peng_atom_mass_is_f0_and_narrow_blobs_are_not_lost() {
        // Narrow components (σ ≈ 0.06 Å ≪ 1 Å voxel) still land their whole integral in the box.
        let p = DensityParams { center: Some([0.0; 3]), ..DensityParams::new(16, 1.0) };
        let v = render_atoms(&["O"], &[[0.4, 0.0, -0.3]], &[], &p).unwrap();
        let (m, _) = moments(&v, 16);
        assert!((m - 1.9834).abs() < 1e-4, "mass {m}");
    }

    #[test]
    fn molecule_mass_and_centre_of_mass_at_box_centre() {
        let els = ["C", "N", "O", "S", "C", "H", "P"];
        let xyz = [
            [10.0f32, 11.0, 9.0],
            [12.5, 10.0, 9.5],
            [11.0, 13.0, 8.0],
            [9.0, 9.0, 12.0],
            [13.0, 12.0, 11.0],
            [10.5, 10.5, 10.5],
            [8.0, 12.0, 10.0],
        ];
        let mut p = DensityParams::new(40, 0.8);
        p.resolution_a = Some(3.0);
        let v = render_atoms(&els, &xyz, &[], &p).unwrap();
        let (m, c) = moments(&v, 40);
        let want: f64 =
            els.iter().map(|e| PENG_1996.iter().find(|r| r.0 == *e).unwrap().1.iter().sum::<f64>()).sum();
        assert!((m * 0.8f64.powi(3) - want).abs() < 1e-3 * want, "mass {} vs {want}", m * 0.512);
        for (k, ck) in c.iter().enumerate() {
            assert!((ck - 20.0).abs() < 0.02, "COM axis {k}: {ck}");
        }
    }

    #[test]
    fn bad_inputs_are_errors() {
        let p = DensityParams::new(8, 1.0);
        assert!(matches!(render_atoms(&["Xx"], &[[0.0; 3]], &[], &p), Err(Error::Param { .. })));
        assert!(matches!(render_atoms(&["C", "N"], &[[0.0; 3]], &[], &p), Err(Error::Shape { .. })));
        assert!(matches!(render_blobs(&[], 8, 0.0), Err(Error::Param { .. })));
        assert_eq!(atomic_number("zn"), Some(30));
    }
}
