//! RELION Euler angles (rot, tilt, psi), in degrees, ↔ rotation matrix.
//!
//! `A = Rz′(ψ)·Ry′(θ)·Rz′(φ)` with `Rz′(a) = [[c, s, 0], [−s, c, 0], [0, 0, 1]]` and
//! `Ry′(a) = [[c, 0, −s], [0, 1, 0], [s, 0, c]]` (passive ZYZ): RELION's `Euler_angles2matrix`, which is the
//! pose matrix cryoDRGN's `parse_pose_star` stores (its slice `Aᵀ(kx, ky, 0)` is RELION's too).

use super::{mul, Mat3};

fn rz(deg: f64) -> Mat3 {
    let (s, c) = deg.to_radians().sin_cos();
    [[c, s, 0.0], [-s, c, 0.0], [0.0, 0.0, 1.0]]
}

fn ry(deg: f64) -> Mat3 {
    let (s, c) = deg.to_radians().sin_cos();
    [[c, 0.0, -s], [0.0, 1.0, 0.0], [s, 0.0, c]]
}

/// The pose matrix of RELION angles `(rot, tilt, psi)` in degrees: `Rz′(psi)·Ry′(tilt)·Rz′(rot)`.
///
/// ```
/// use drgnfly_em::rotation::relion::matrix_from_euler;
/// let r = matrix_from_euler([-147.9485, 22.58999, 162.539]);
/// assert!((r[0][0] - 0.90571941).abs() < 1e-6 && (r[2][1] + 0.20385275).abs() < 1e-6);
/// ```
pub fn matrix_from_euler([rot, tilt, psi]: [f64; 3]) -> Mat3 {
    mul(&rz(psi), &mul(&ry(tilt), &rz(rot)))
}

/// RELION angles `(rot, tilt, psi)` in degrees of a rotation matrix, with `tilt ∈ [0, 180]` and rot, psi
/// wrapped to `[−180, 180)`. At the poles (`tilt` = 0 or 180, where only rot ± psi is defined) `rot = 0`.
pub fn euler_from_matrix(a: &Mat3) -> [f64; 3] {
    // From the product: a02 = −cψ·sθ, a12 = sψ·sθ, a20 = sθ·cφ, a21 = sθ·sφ, a22 = cθ; take sθ ≥ 0.
    let sin_tilt = a[0][2].hypot(a[1][2]);
    let tilt = sin_tilt.atan2(a[2][2]);
    let (rot, psi) = if sin_tilt > 1e-9 {
        (a[2][1].atan2(a[2][0]), a[1][2].atan2(-a[0][2]))
    } else if a[2][2] > 0.0 {
        // tilt = 0: A = Rz′(rot + psi), a00 = cos, a01 = sin.
        (0.0, a[0][1].atan2(a[0][0]))
    } else {
        // tilt = 180: A = Rz′(psi)·diag(−1, 1, −1)·Rz′(rot), a00 = −cos, a01 = sin (rot = 0).
        (0.0, a[0][1].atan2(-a[0][0]))
    };
    [wrap_deg(rot.to_degrees()), tilt.to_degrees(), wrap_deg(psi.to_degrees())]
}

/// Wraps an angle in degrees to `[−180, 180)`.
pub fn wrap_deg(a: f64) -> f64 {
    let w = (a + 180.0).rem_euclid(360.0) - 180.0;
    // rem_euclid can round up to exactly 360 for tiny negative inputs.
    if w >= 180.0 {
        w - 360.0
    } else {
        w
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::angle_between_deg;
    use crate::rotation::test_util::{assert_rotation, max_diff};

    #[test]
    fn golden_vector_from_cryodrgn_tests() {
        let r = matrix_from_euler([-147.9485, 22.58999, 162.539]);
        let want = [
            [0.90571941, 0.21306972, 0.36643367],
            [-0.27142096, 0.95553406, 0.11526193],
            [-0.32558103, -0.20385275, 0.92327734],
        ];
        assert!(max_diff(&r, &want) < 1e-6, "{r:?}");
        assert_rotation(&r, 1e-12);
    }

    #[test]
    fn euler_round_trips_including_gimbal_cases() {
        let cases = [
            [-147.9485, 22.58999, 162.539],
            [10.0, 90.0, 170.0],
            [-1.2, 90.5, 67.0],
            [-120.0, 135.0, 30.0],
            [179.0, 179.5, -179.0],
            [0.0, 0.0, 45.0],
            [30.0, 0.0, -30.0],
            [0.0, 180.0, 20.0],
            [50.0, 180.0, 20.0],
        ];
        for e in cases {
            let r = matrix_from_euler(e);
            assert_rotation(&r, 1e-12);
            let back = euler_from_matrix(&r);
            let r2 = matrix_from_euler(back);
            assert!(angle_between_deg(&r, &r2) < 1e-6, "{e:?} → {back:?}");
            assert!((-180.0..180.0).contains(&back[0]) && (-180.0..180.0).contains(&back[2]));
            if e[1] > 0.0 && e[1] < 180.0 {
                for k in 0..3 {
                    assert!((wrap_deg(back[k] - e[k])).abs() < 1e-8, "{e:?} → {back:?}");
                }
            }
        }
        assert_eq!(wrap_deg(180.0), -180.0);
        assert_eq!(wrap_deg(-190.0), 170.0);
    }
}
