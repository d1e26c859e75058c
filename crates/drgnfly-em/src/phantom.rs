//! A built-in heterogeneous phantom: a two-domain molecule of Gaussian blobs with a hinge.
//!
//! Domain A (six blobs) is fixed; domain B (five blobs, an arm with a side knob) rotates about a tilted
//! hinge axis through the hinge point by `θ · max_angle`, with `θ ∈ [0, 1]`. `θ` is the continuous
//! conformational coordinate; [`HingePhantom::state`] picks `n` evenly spaced, well separated discrete
//! states (`θ = k/(n−1)`). No two blobs share both width and weight and the layout has no symmetry, so a
//! projection determines its pose.
//!
//! Geometry is given in fractions of the box side `D` (centre of the box = 0), so the molecule looks the
//! same at every `D`: it fits in a sphere of radius `0.38·D`, inside cryoDRGN's default real-space window
//! (radius `0.85·D/2`). Blob widths are `0.03–0.055·D` (≈ 1–1.8 px at D = 32). Each blob's peak density is
//! its weight (≈ 0.6–1.2). Volumes are `[z][y][x]` with voxel size 1 (pixel units).

use crate::density::{render_blobs, GaussianBlob};
use crate::{Error, Result};

/// `(x, y, z, σ, peak)` in box fractions: the fixed domain.
const DOMAIN_A: [[f64; 5]; 6] = [
    [-0.05, -0.12, 0.02, 0.055, 1.0],
    [0.08, -0.15, -0.04, 0.05, 0.8],
    [-0.15, -0.05, 0.06, 0.045, 0.9],
    [0.02, -0.25, 0.08, 0.04, 0.6],
    [-0.10, -0.20, -0.10, 0.05, 0.7],
    [0.14, -0.04, 0.05, 0.035, 1.2],
];

/// The moving domain, in its θ = 0 position.
const DOMAIN_B: [[f64; 5]; 5] = [
    [0.03, 0.10, -0.02, 0.05, 0.9],
    [0.07, 0.20, 0.03, 0.045, 0.8],
    [0.04, 0.29, 0.09, 0.04, 0.7],
    [-0.06, 0.27, -0.05, 0.035, 1.1],
    [0.12, 0.33, 0.02, 0.03, 1.0],
];

/// Hinge point (box fractions).
const HINGE: [f64; 3] = [0.0, 0.03, 0.0];

/// Hinge axis before normalisation: mostly z, tilted so the motion is not in a coordinate plane.
const AXIS: [f64; 3] = [0.3, 0.1, 1.0];

/// The hinge phantom at box size `d`.
///
/// ```
/// use drgnfly_em::phantom::HingePhantom;
/// let p = HingePhantom::new(16).unwrap();
/// let open = p.volume(1.0).unwrap();
/// assert_eq!(open.len(), 16 * 16 * 16);
/// ```
#[derive(Debug, Clone, PartialEq)]
pub struct HingePhantom {
    d: usize,
    max_angle_deg: f64,
}

impl HingePhantom {
    /// Maximum hinge opening at `θ = 1`, degrees.
    pub const DEFAULT_MAX_ANGLE_DEG: f64 = 60.0;

    /// The phantom for box side `d ≥ 8` with the default 60° opening.
    pub fn new(d: usize) -> Result<Self> {
        Self::with_max_angle(d, Self::DEFAULT_MAX_ANGLE_DEG)
    }

    /// The phantom with a chosen opening angle at `θ = 1` (degrees, |angle| ≤ 180).
    pub fn with_max_angle(d: usize, max_angle_deg: f64) -> Result<Self> {
        if d < 8 {
            return Err(Error::Param {
                name: "box size",
                value: d.to_string(),
                why: "the phantom needs D ≥ 8".into(),
            });
        }
        if !(max_angle_deg.is_finite() && max_angle_deg.abs() <= 180.0) {
            return Err(Error::Param {
                name: "hinge angle",
                value: max_angle_deg.to_string(),
                why: "must be within ±180°".into(),
            });
        }
        Ok(Self { d, max_angle_deg })
    }

    /// Box side.
    pub fn size(&self) -> usize {
        self.d
    }

    /// `θ` of discrete state `k` out of `n ≥ 2`: `k/(n − 1)`.
    pub fn state(&self, k: usize, n: usize) -> Result<f64> {
        if n < 2 || k >= n {
            return Err(Error::Param {
                name: "state",
                value: format!("{k} of {n}"),
                why: "needs n ≥ 2 states and k < n".into(),
            });
        }
        Ok(k as f64 / (n - 1) as f64)
    }

    /// The blobs at conformation `θ ∈ [0, 1]`, centres and σ in pixels from the box centre.
    pub fn blobs(&self, theta: f64) -> Result<Vec<GaussianBlob>> {
        if !(0.0..=1.0).contains(&theta) {
            return Err(Error::Param {
                name: "θ",
                value: theta.to_string(),
                why: "the hinge coordinate is in [0, 1]".into(),
            });
        }
        let r = axis_rotation(AXIS, (theta * self.max_angle_deg).to_radians());
        let d = self.d as f64;
        let blob = |p: [f64; 3], s: f64, w: f64| GaussianBlob {
            center: p.map(|c| c * d),
            sigma: s * d,
            // Peak density w: integral = w·(2π)^{3/2}·σ³.
            amplitude: w * (2.0 * std::f64::consts::PI).powf(1.5) * (s * d).powi(3),
        };
        let mut out: Vec<GaussianBlob> =
            DOMAIN_A.iter().map(|b| blob([b[0], b[1], b[2]], b[3], b[4])).collect();
        for b in &DOMAIN_B {
            let rel = [b[0] - HINGE[0], b[1] - HINGE[1], b[2] - HINGE[2]];
            let rot = [0, 1, 2].map(|i| HINGE[i] + r[i][0] * rel[0] + r[i][1] * rel[1] + r[i][2] * rel[2]);
            out.push(blob(rot, b[3], b[4]));
        }
        Ok(out)
    }

    /// The `D³` volume at conformation `θ` (`[z][y][x]`, voxel size 1).
    pub fn volume(&self, theta: f64) -> Result<Vec<f32>> {
        render_blobs(&self.blobs(theta)?, self.d, 1.0)
    }
}

/// Rotation by `angle` (radians) about `axis` (Rodrigues).
fn axis_rotation(axis: [f64; 3], angle: f64) -> [[f64; 3]; 3] {
    let n = (axis[0] * axis[0] + axis[1] * axis[1] + axis[2] * axis[2]).sqrt();
    let [x, y, z] = axis.map(|a| a / n);
    let (s, c) = angle.sin_cos();
    let t = 1.0 - c;
    [
        [c + x * x * t, x * y * t - z * s, x * z * t + y * s],
        [y * x * t + z * s, c + y * y * t, y * z * t - x * s],
        [z * x * t - y * s, z * y * t + x * s, c + z * z * t],
    ]
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fsc::fsc;
    use crate::project::tests::ncc as corr;

    #[test]
    fn fits_in_the_window_at_every_box_size() {
        for d in [16, 32, 64] {
            let p = HingePhantom::new(d).unwrap();
            for theta in [0.0, 0.5, 1.0] {
                for b in p.blobs(theta).unwrap() {
                    let r = b.center.iter().map(|c| c * c).sum::<f64>().sqrt() + 2.0 * b.sigma;
                    assert!(r < 0.85 * d as f64 / 2.0 + 1e-9, "D={d} θ={theta}: blob reaches {r}");
                }
            }
        }
    }

    #[test]
    fn states_are_distinct_and_motion_is_continuous() {
        let d = 32;
        let p = HingePhantom::new(d).unwrap();
        let (a, b) = (p.volume(p.state(0, 2).unwrap()).unwrap(), p.volume(p.state(1, 2).unwrap()).unwrap());
        // Domain A is shared, the arm moved: clearly different maps.
        let c01 = corr(&a, &b);
        assert!(c01 < 0.8, "open vs closed correlation {c01}");
        // A small step in θ is a small change.
        let a2 = p.volume(0.02).unwrap();
        assert!(corr(&a, &a2) > 0.99);
        // Mass is the same in every conformation (rigid motion inside the box).
        let (ma, mb) = (a.iter().map(|&v| v as f64).sum::<f64>(), b.iter().map(|&v| v as f64).sum::<f64>());
        assert!((ma - mb).abs() < 1e-4 * ma);
        let curve = fsc(&a, &b, d, None).unwrap();
        assert!(curve.fsc[4..].iter().all(|&c| c < 0.75), "states differ beyond 4 px⁻¹: {:?}", curve.fsc);
    }

    #[test]
    fn no_rotation_maps_the_phantom_onto_itself() {
        // Asymmetry check: the 180° rotations about the coordinate axes (the usual accidental symmetries of
        // blob layouts) change the map a lot.
        let d = 24;
        let v = HingePhantom::new(d).unwrap().volume(0.0).unwrap();
        let idx = |x: usize, y: usize, z: usize| (z * d + y) * d + x;
        let flip = |i: usize| (d - i) % d; // −(i − D/2) + D/2
        for axis in 0..3 {
            let mut r = vec![0.0f32; v.len()];
            for z in 0..d {
                for y in 0..d {
                    for x in 0..d {
                        let (sx, sy, sz) = match axis {
                            0 => (x, flip(y), flip(z)),
                            1 => (flip(x), y, flip(z)),
                            _ => (flip(x), flip(y), z),
                        };
                        r[idx(x, y, z)] = v[idx(sx, sy, sz)];
                    }
                }
            }
            let c = corr(&v, &r);
            assert!(c < 0.75, "180° about axis {axis}: correlation {c}");
        }
    }

    #[test]
    fn bad_parameters() {
        assert!(matches!(HingePhantom::new(4), Err(Error::Param { .. })));
        let p = HingePhantom::new(16).unwrap();
        assert!(matches!(p.blobs(1.5), Err(Error::Param { .. })));
        assert!(matches!(p.state(2, 2), Err(Error::Param { .. })));
    }
}
