//! Axis-angle vectors (the Lie algebra so(3)) and cryoSPARC poses.
//!
//! cryoSPARC stores `alignments3D/pose` as an axis-angle vector `v` (radians × unit axis). cryoDRGN's pose
//! is the transpose of its exponential: `R = exp([v]×)ᵀ` (`parse_pose_csparc`).

use super::{transpose, Mat3, IDENTITY};

/// `[v]×`, the skew matrix with `[v]×·u = v × u`.
fn skew([x, y, z]: [f64; 3]) -> Mat3 {
    [[0.0, -z, y], [z, 0.0, -x], [-y, x, 0.0]]
}

/// Rodrigues' formula: `exp([v]×) = I + sin θ·K + (1 − cos θ)·K²`, `θ = |v|`, `K = [v/θ]×`.
pub fn rotation_from_axis_angle(v: [f64; 3]) -> Mat3 {
    let theta = (v[0] * v[0] + v[1] * v[1] + v[2] * v[2]).sqrt();
    if theta < 1e-300 {
        return IDENTITY;
    }
    let k = skew(v.map(|c| c / theta));
    let k2 = super::mul(&k, &k);
    let (s, c) = theta.sin_cos();
    let mut r = IDENTITY;
    for i in 0..3 {
        for j in 0..3 {
            r[i][j] += s * k[i][j] + (1.0 - c) * k2[i][j];
        }
    }
    r
}

/// The axis-angle vector `v` with `exp([v]×) = r`, `|v| ∈ [0, π]`. Robust near π, where the antisymmetric
/// part vanishes: the axis then comes from the symmetric part `(R + Rᵀ)/2 − cos θ·I = (1 − cos θ)·n nᵀ`.
pub fn axis_angle_from_rotation(r: &Mat3) -> [f64; 3] {
    let tr = r[0][0] + r[1][1] + r[2][2];
    let cos_t = ((tr - 1.0) / 2.0).clamp(-1.0, 1.0);
    // vee(R − Rᵀ) = 2 sin θ · n
    let anti = [r[2][1] - r[1][2], r[0][2] - r[2][0], r[1][0] - r[0][1]];
    // atan2 rather than acos: acos is ill-conditioned near 0 and π, where a float32 matrix (orthogonal to
    // ~1e-7) would give the angle ~4e-5 rad wrong (seen on a 179.99° pose of cryoDRGN's toy_rot_trans.pkl).
    let sin_t = 0.5 * (anti[0] * anti[0] + anti[1] * anti[1] + anti[2] * anti[2]).sqrt();
    let theta = sin_t.atan2(cos_t);
    if theta < std::f64::consts::FRAC_PI_2 {
        // θ/(2 sin θ) → 1/2 as θ → 0.
        let f = if theta < 1e-8 { 0.5 } else { theta / (2.0 * theta.sin()) };
        return anti.map(|a| a * f);
    }
    let one_m_cos = 1.0 - cos_t;
    let s: Mat3 = std::array::from_fn(|i| {
        std::array::from_fn(|j| {
            let sym = 0.5 * (r[i][j] + r[j][i]) - if i == j { cos_t } else { 0.0 };
            sym / one_m_cos
        })
    });
    // n nᵀ: take the column with the largest diagonal for the best conditioning.
    let k = (0..3).max_by(|&a, &b| s[a][a].total_cmp(&s[b][b])).unwrap_or(0);
    let norm = s[k][k].max(0.0).sqrt();
    let mut n = [s[0][k] / norm, s[1][k] / norm, s[2][k] / norm];
    if n[0] * anti[0] + n[1] * anti[1] + n[2] * anti[2] < 0.0 {
        n = n.map(|c| -c);
    }
    n.map(|c| c * theta)
}

/// cryoDRGN's pose from a cryoSPARC `alignments3D/pose` vector: `exp([v]×)ᵀ`.
pub fn pose_from_cryosparc(v: [f64; 3]) -> Mat3 {
    transpose(&rotation_from_axis_angle(v))
}

/// The cryoSPARC pose vector of a cryoDRGN pose (inverse of [`pose_from_cryosparc`]).
pub fn cryosparc_from_pose(r: &Mat3) -> [f64; 3] {
    axis_angle_from_rotation(&transpose(r))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::test_util::{assert_rotation, max_diff};
    use crate::rotation::{angle_between_deg, mul};

    #[test]
    fn rodrigues_known_rotations() {
        let r = rotation_from_axis_angle([0.0, 0.0, std::f64::consts::FRAC_PI_2]);
        // +90° about z takes x to y.
        assert!(max_diff(&r, &[[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]) < 1e-15);
        assert_eq!(rotation_from_axis_angle([0.0; 3]), IDENTITY);
        let p = pose_from_cryosparc([0.0, 0.0, std::f64::consts::FRAC_PI_2]);
        assert!(max_diff(&p, &transpose(&r)) < 1e-15);
    }

    #[test]
    fn log_inverts_exp_including_near_pi() {
        let axes: [[f64; 3]; 4] =
            [[1.0, 0.0, 0.0], [0.3, -0.5, 0.8], [-0.2, 0.9, 0.1], [0.577, 0.577, -0.577]];
        for a in axes {
            let n = (a[0] * a[0] + a[1] * a[1] + a[2] * a[2]).sqrt();
            for theta in [1e-10, 1e-3, 0.7, 1.6, 3.0, std::f64::consts::PI - 1e-6, std::f64::consts::PI] {
                let v = a.map(|c| c / n * theta);
                let r = rotation_from_axis_angle(v);
                assert_rotation(&r, 1e-12);
                let back = axis_angle_from_rotation(&r);
                let r2 = rotation_from_axis_angle(back);
                assert!(angle_between_deg(&r, &r2) < 1e-6, "θ={theta} axis {a:?}: {back:?}");
                if theta < 3.0 {
                    assert!((0..3).all(|k| (back[k] - v[k]).abs() < 1e-7), "θ={theta}: {back:?} vs {v:?}");
                }
                let pose = pose_from_cryosparc(v);
                assert!(angle_between_deg(&pose_from_cryosparc(cryosparc_from_pose(&pose)), &pose) < 1e-6);
                assert!(max_diff(&mul(&pose, &r), &IDENTITY) < 1e-12);
            }
        }
    }
}
