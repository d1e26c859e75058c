//! Quaternions `q = (w, x, y, z)` (Hamilton, scalar first) and cryoDRGN's own quaternion → matrix map.
//!
//! [`matrix_from_quaternion`] is the standard map (`q = (cos θ/2, sin θ/2·n)` rotates by θ about n).
//! cryoDRGN's `lie_tools.quaternions_to_SO3` is a different, self-consistent parametrisation:
//! `(1, 0, 0, 0)` maps to `diag(1, −1, −1)`, not the identity. Its SO(3) search grids (Hopf → quaternion →
//! matrix) and `quat` pose embeddings only reproduce with that exact map: [`matrix_from_quaternion_cryodrgn`]
//! and its inverse [`quaternion_from_matrix_cryodrgn`].

use super::Mat3;

/// A quaternion `[w, x, y, z]`.
pub type Quat = [f64; 4];

fn normalized(q: Quat) -> Quat {
    let n = q.iter().map(|c| c * c).sum::<f64>().sqrt();
    if n == 0.0 {
        [1.0, 0.0, 0.0, 0.0]
    } else {
        q.map(|c| c / n)
    }
}

/// The rotation of unit quaternion `q` (normalised first; the zero quaternion maps to the identity):
/// `[[1−2(y²+z²), 2(xy−wz), 2(xz+wy)], [2(xy+wz), 1−2(x²+z²), 2(yz−wx)], [2(xz−wy), 2(yz+wx), 1−2(x²+y²)]]`.
pub fn matrix_from_quaternion(q: Quat) -> Mat3 {
    let [w, x, y, z] = normalized(q);
    [
        [1.0 - 2.0 * (y * y + z * z), 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
        [2.0 * (x * y + w * z), 1.0 - 2.0 * (x * x + z * z), 2.0 * (y * z - w * x)],
        [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), 1.0 - 2.0 * (x * x + y * y)],
    ]
}

/// The unit quaternion of a rotation, with `w ≥ 0` (Shepperd's method: divide by the largest of
/// `4w², 4x², 4y², 4z²` for stability).
pub fn quaternion_from_matrix(r: &Mat3) -> Quat {
    let tr = r[0][0] + r[1][1] + r[2][2];
    let squares = [
        1.0 + tr,
        1.0 + r[0][0] - r[1][1] - r[2][2],
        1.0 - r[0][0] + r[1][1] - r[2][2],
        1.0 - r[0][0] - r[1][1] + r[2][2],
    ];
    let q = match largest(&squares) {
        0 => {
            let s = 2.0 * squares[0].sqrt(); // 4w
            [s / 4.0, (r[2][1] - r[1][2]) / s, (r[0][2] - r[2][0]) / s, (r[1][0] - r[0][1]) / s]
        }
        1 => {
            let s = 2.0 * squares[1].sqrt(); // 4x
            [(r[2][1] - r[1][2]) / s, s / 4.0, (r[0][1] + r[1][0]) / s, (r[0][2] + r[2][0]) / s]
        }
        2 => {
            let s = 2.0 * squares[2].sqrt(); // 4y
            [(r[0][2] - r[2][0]) / s, (r[0][1] + r[1][0]) / s, s / 4.0, (r[1][2] + r[2][1]) / s]
        }
        _ => {
            let s = 2.0 * squares[3].sqrt(); // 4z
            [(r[1][0] - r[0][1]) / s, (r[0][2] + r[2][0]) / s, (r[1][2] + r[2][1]) / s, s / 4.0]
        }
    };
    if q[0] < 0.0 {
        q.map(|c| -c)
    } else {
        q
    }
}

/// cryoDRGN's `quaternions_to_SO3` for `q = (r, i, j, k)` (normalised first):
/// `[[r²−i²−j²+k², 2(ri+jk), 2(rj−ik)], [2(ri−jk), −r²+i²−j²+k², 2(ij+rk)], [2(rj+ik), 2(ij−rk), −r²−i²+j²+k²]]`.
pub fn matrix_from_quaternion_cryodrgn(q: Quat) -> Mat3 {
    let [r, i, j, k] = normalized(q);
    [
        [r * r - i * i - j * j + k * k, 2.0 * (r * i + j * k), 2.0 * (r * j - i * k)],
        [2.0 * (r * i - j * k), -r * r + i * i - j * j + k * k, 2.0 * (i * j + r * k)],
        [2.0 * (r * j + i * k), 2.0 * (i * j - r * k), -r * r - i * i + j * j + k * k],
    ]
}

/// Inverse of [`matrix_from_quaternion_cryodrgn`] (cryoDRGN `SO3_to_quaternions`, without its 1e-6
/// regulariser), up to the sign of `q`. From the map: `4r² = 1 + m00 − m11 − m22`, `4i² = 1 − m00 + m11 −
/// m22`, `4j² = 1 − m00 − m11 + m22`, `4k² = 1 + tr`, and the off-diagonal sums and differences give the
/// products `4ri, 4rj, 4rk, 4ij, 4ik, 4jk`.
pub fn quaternion_from_matrix_cryodrgn(m: &Mat3) -> Quat {
    let tr = m[0][0] + m[1][1] + m[2][2];
    let squares = [
        1.0 + m[0][0] - m[1][1] - m[2][2],
        1.0 - m[0][0] + m[1][1] - m[2][2],
        1.0 - m[0][0] - m[1][1] + m[2][2],
        1.0 + tr,
    ];
    let ri = m[0][1] + m[1][0];
    let rj = m[0][2] + m[2][0];
    let rk = m[1][2] - m[2][1];
    let ij = m[1][2] + m[2][1];
    let ik = m[2][0] - m[0][2];
    let jk = m[0][1] - m[1][0];
    match largest(&squares) {
        0 => {
            let s = 2.0 * squares[0].sqrt(); // 4r
            [s / 4.0, ri / s, rj / s, rk / s]
        }
        1 => {
            let s = 2.0 * squares[1].sqrt(); // 4i
            [ri / s, s / 4.0, ij / s, ik / s]
        }
        2 => {
            let s = 2.0 * squares[2].sqrt(); // 4j
            [rj / s, ij / s, s / 4.0, jk / s]
        }
        _ => {
            let s = 2.0 * squares[3].sqrt(); // 4k
            [rk / s, ik / s, jk / s, s / 4.0]
        }
    }
}

fn largest(v: &[f64; 4]) -> usize {
    (0..4).fold(0, |best, i| if v[i] > v[best] { i } else { best })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::cryosparc::rotation_from_axis_angle;
    use crate::rotation::test_util::{assert_rotation, max_diff};

    fn samples() -> Vec<Quat> {
        vec![
            [1.0, 0.0, 0.0, 0.0],
            [0.0, 1.0, 0.0, 0.0],
            [0.0, 0.0, 0.0, 1.0],
            [0.3, -0.2, 0.9, 0.1],
            [-0.5, 0.5, 0.5, -0.5],
            [0.01, 0.7, -0.7, 0.1],
        ]
    }

    #[test]
    fn hamilton_matches_axis_angle_and_round_trips() {
        let theta: f64 = 1.2;
        let n = [0.0, 0.6, 0.8];
        let q = [
            (theta / 2.0).cos(),
            n[0] * (theta / 2.0).sin(),
            n[1] * (theta / 2.0).sin(),
            n[2] * (theta / 2.0).sin(),
        ];
        let want = rotation_from_axis_angle(n.map(|c| c * theta));
        assert!(max_diff(&matrix_from_quaternion(q), &want) < 1e-14);
        for q in samples() {
            let r = matrix_from_quaternion(q);
            assert_rotation(&r, 1e-12);
            let back = quaternion_from_matrix(&r);
            assert!(max_diff(&matrix_from_quaternion(back), &r) < 1e-12, "{q:?} → {back:?}");
            assert!(back[0] >= 0.0);
        }
    }

    #[test]
    fn cryodrgn_map_quirk_and_inverse() {
        let m = matrix_from_quaternion_cryodrgn([1.0, 0.0, 0.0, 0.0]);
        assert_eq!(m, [[1.0, 0.0, 0.0], [0.0, -1.0, 0.0], [0.0, 0.0, -1.0]]);
        for q in samples() {
            let r = matrix_from_quaternion_cryodrgn(q);
            assert_rotation(&r, 1e-12);
            let back = quaternion_from_matrix_cryodrgn(&r);
            assert!(max_diff(&matrix_from_quaternion_cryodrgn(back), &r) < 1e-12, "{q:?} → {back:?}");
            // Up to sign, the quaternion itself comes back.
            let n = q.iter().map(|c| c * c).sum::<f64>().sqrt();
            let dot: f64 = q.iter().zip(&back).map(|(a, b)| a / n * b).sum();
            assert!((dot.abs() - 1.0).abs() < 1e-12, "{q:?} → {back:?}");
        }
    }
}
