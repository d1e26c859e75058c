//! Estimated poses against a simulation's ground truth, measured as the cryoDRGN2 and HetACUMN papers do:
//! rotations after the best global rotation (trying both hands), translations after removing the map's own
//! offset from the centre. `eval-poses` prints these; `eval-simulation` turns them into the pose terms of
//! HetACUMN's entanglement score.

use super::align::{
    aligned_angles_deg, frobenius_sq_from_deg, map_offset, rotation_error_deg, RotationError,
};
use crate::pose::Pose;
use crate::Result;

/// Per-particle errors of estimated poses against the truth.
#[derive(Debug, Clone)]
pub struct PoseAccuracy {
    /// The global alignment (and hand) that best maps the estimated rotations onto the true ones.
    pub rotation: RotationError,
    /// Angle between each aligned estimate and its truth, degrees.
    pub angles_deg: Vec<f64>,
    /// `‖R̂Q − R‖²_F` of each particle (the papers' rotation metric; `8 sin²(θ/2)`).
    pub frobenius_sq: Vec<f64>,
    /// `|t̂ − t|` of each particle, pixels, as estimated.
    pub shift_errors_px: Vec<f64>,
    /// The map's offset from the centre that the shift errors imply (pixels, true frame; [`map_offset`]);
    /// zero when the views cannot fix it.
    pub map_offset_px: [f64; 3],
    /// `|t̂ − t|` after removing that offset's projection: an ab initio map's centre is arbitrary, like its
    /// orientation.
    pub centred_shift_errors_px: Vec<f64>,
}

impl PoseAccuracy {
    /// Compare `estimated` with `truth`, matched by index (same non-zero length).
    pub fn measure(estimated: &[Pose], truth: &[Pose]) -> Result<Self> {
        let ra: Vec<_> = estimated.iter().map(|p| p.rot).collect();
        let rb: Vec<_> = truth.iter().map(|p| p.rot).collect();
        let rotation = rotation_error_deg(&ra, &rb, true)?;
        let angles_deg = aligned_angles_deg(&ra, &rb, &rotation);
        let frobenius_sq = angles_deg.iter().map(|&t| frobenius_sq_from_deg(t)).collect();
        let dt: Vec<[f64; 2]> = estimated
            .iter()
            .zip(truth)
            .map(|(p, q)| [0, 1].map(|k| f64::from(p.shift_px[k] - q.shift_px[k])))
            .collect();
        let shift_errors_px = dt.iter().map(|e| e[0].hypot(e[1])).collect();
        let o = map_offset(&rb, &dt).unwrap_or([0.0; 3]);
        let centred_shift_errors_px = dt
            .iter()
            .zip(&rb)
            .map(|(e, r)| {
                let [x, y] = [0, 1].map(|k| e[k] - (r[k][0] * o[0] + r[k][1] * o[1] + r[k][2] * o[2]));
                x.hypot(y)
            })
            .collect();
        Ok(Self {
            rotation,
            angles_deg,
            frobenius_sq,
            shift_errors_px,
            map_offset_px: o,
            centred_shift_errors_px,
        })
    }

    /// HetACUMN's E_rot: the median `‖ΔR‖²_F` (its tables' "Rot." column).
    pub fn e_rot(&self) -> f64 {
        median(&self.frobenius_sq)
    }

    /// The median squared shift error in pixels², map offset removed (HetACUMN's "Trans." column).
    pub fn median_shift_sq_px(&self) -> f64 {
        let sq: Vec<f64> = self.centred_shift_errors_px.iter().map(|e| e * e).collect();
        median(&sq)
    }

    /// HetACUMN's E_trans for `d`×`d` images: [`Self::median_shift_sq_px`] in box fractions (pose.pkl's unit
    /// of translation), i.e. divided by `d²`. The paper does not state the unit; this is the one under
    /// which its Table 3 equals Rot. + Trans. + E_z of its Tables 1–2 at its D = 128 (e.g. cryoDRGN2 on the
    /// 20k set: 2e-4 + 8.7/128² = 7.3e-4 with E_z ≈ 0 for 0% error).
    pub fn e_trans(&self, d: usize) -> f64 {
        self.median_shift_sq_px() / (d * d).max(1) as f64
    }
}

/// The median (the mean of the middle two for an even count; NaN for none).
pub fn median(v: &[f64]) -> f64 {
    if v.is_empty() {
        return f64::NAN;
    }
    let mut s = v.to_vec();
    s.sort_by(f64::total_cmp);
    let m = s.len() / 2;
    if s.len() % 2 == 1 {
        s[m]
    } else {
        0.5 * (s[m - 1] + s[m])
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::random::random_rotations;
    use crate::rotation::{mul, IDENTITY};

    #[test]
    fn a_global_rotation_and_a_map_offset_cost_nothing_and_errors_show() {
        let truth: Vec<Pose> = random_rotations(200, 3)
            .into_iter()
            .enumerate()
            .map(|(i, rot)| Pose { rot, shift_px: [(i % 5) as f32 - 2.0, (i % 3) as f32] })
            .collect();
        let q = random_rotations(1, 9)[0];
        let o = [1.5, -0.5, 2.0];
        // The same reconstruction turned by q and moved by o: R̂ = R q, t̂ = t + (R[0]·o, R[1]·o).
        let moved: Vec<Pose> = truth
            .iter()
            .map(|p| {
                let r = p.rot;
                let off = [0, 1].map(|k| (r[k][0] * o[0] + r[k][1] * o[1] + r[k][2] * o[2]) as f32);
                Pose { rot: mul(&r, &q), shift_px: [p.shift_px[0] + off[0], p.shift_px[1] + off[1]] }
            })
            .collect();
        let acc = PoseAccuracy::measure(&moved, &truth).unwrap();
        assert!(acc.e_rot() < 1e-10 && acc.e_trans(64) < 1e-10, "{} {}", acc.e_rot(), acc.e_trans(64));
        assert!(acc.map_offset_px.iter().zip(o).all(|(a, b)| (a - b).abs() < 1e-4));
        // A 1 px error along x on every particle, and a 10° turn about z on half of them.
        let turn = |deg: f64| {
            let (s, c) = deg.to_radians().sin_cos();
            [[c, -s, 0.0], [s, c, 0.0], [0.0, 0.0, 1.0]]
        };
        let wrong: Vec<Pose> = truth
            .iter()
            .enumerate()
            .map(|(i, p)| Pose {
                rot: mul(&if i % 2 == 0 { turn(10.0) } else { IDENTITY }, &p.rot),
                shift_px: [p.shift_px[0] + 1.0, p.shift_px[1]],
            })
            .collect();
        let acc = PoseAccuracy::measure(&wrong, &truth).unwrap();
        // Half exact, half 10°: the median lies between 0 and 8 sin²(5°) = 0.0607 (the alignment shares out).
        assert!(acc.e_rot() > 1e-4 && acc.e_rot() < 0.0607, "{}", acc.e_rot());
        // No 3D offset projects to the same image shift in every view: the error stays, 1 px² in D² = 64².
        let e = acc.e_trans(64) * 4096.0;
        assert!((0.8..1.2).contains(&e), "{e}");
        assert_eq!(median(&[3.0, 1.0, 2.0]), 2.0);
        assert_eq!(median(&[4.0, 1.0, 2.0, 3.0]), 2.5);
    }
}
