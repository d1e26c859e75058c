//! Rotations: conventions of RELION, cryoSPARC and cryoDRGN, random rotations and pose-error metrics.
//!
//! A rotation is a row-major [`Mat3`] in f64. A pose rotation `R` means what it means in cryoDRGN: the
//! image's Fourier slice is the volume's transform at `Rᵀ·(kx, ky, 0)` (row vectors times R), see
//! [the crate conventions](crate#conventions). File formats store f32 or f64; convert at the boundary.
//!
//! - [`relion`]: RELION's ZYZ Euler angles (rot, tilt, psi) ↔ matrix.
//! - [`cryosparc`]: axis-angle vectors (Rodrigues) and cryoSPARC's transposed pose.
//! - [`quaternion`]: Hamilton quaternions, and cryoDRGN's own quaternion → matrix map.
//! - [`random`]: uniform random rotations (Shoemake), seeded.
//! - [`align`]: pose error after the best global rotation, optionally trying the other hand.
//! - [`accuracy`]: estimated poses against the truth (rotations aligned, map offset removed), as the papers
//!   report them.

pub mod accuracy;
pub mod align;
pub mod cryosparc;
pub mod quaternion;
pub mod random;
pub mod relion;

/// A 3×3 matrix, row-major: `m[row][col]`.
pub type Mat3 = [[f64; 3]; 3];

/// The identity.
pub const IDENTITY: Mat3 = [[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];

/// `a·b`.
pub fn mul(a: &Mat3, b: &Mat3) -> Mat3 {
    let mut c = [[0.0; 3]; 3];
    for (i, row) in c.iter_mut().enumerate() {
        for (j, v) in row.iter_mut().enumerate() {
            *v = (0..3).map(|k| a[i][k] * b[k][j]).sum();
        }
    }
    c
}

/// `aᵀ`.
pub fn transpose(a: &Mat3) -> Mat3 {
    let mut t = [[0.0; 3]; 3];
    for (i, row) in a.iter().enumerate() {
        for (j, &v) in row.iter().enumerate() {
            t[j][i] = v;
        }
    }
    t
}

/// The determinant.
pub fn det(a: &Mat3) -> f64 {
    a[0][0] * (a[1][1] * a[2][2] - a[1][2] * a[2][1]) - a[0][1] * (a[1][0] * a[2][2] - a[1][2] * a[2][0])
        + a[0][2] * (a[1][0] * a[2][1] - a[1][1] * a[2][0])
}

/// The geodesic angle between rotations `a` and `b` in degrees, ∈ [0, 180]. With `M = aᵀb`,
/// `cos θ = (tr M − 1)/2` and `2 sin θ = |vee(M − Mᵀ)|`; `atan2` of the two stays accurate near 0 and 180°,
/// where `acos` alone loses half the digits.
pub fn angle_between_deg(a: &Mat3, b: &Mat3) -> f64 {
    let m = mul(&transpose(a), b);
    let cos = (m[0][0] + m[1][1] + m[2][2] - 1.0) / 2.0;
    let (x, y, z) = (m[2][1] - m[1][2], m[0][2] - m[2][0], m[1][0] - m[0][1]);
    let sin = (x * x + y * y + z * z).sqrt() / 2.0;
    sin.atan2(cos).to_degrees()
}

/// Converts a matrix read as f32 (pose.pkl) to f64.
pub fn from_f32(m: &[[f32; 3]; 3]) -> Mat3 {
    m.map(|row| row.map(f64::from))
}

/// Converts to f32 for writing.
pub fn to_f32(m: &Mat3) -> [[f32; 3]; 3] {
    m.map(|row| row.map(|v| v as f32))
}

#[cfg(test)]
pub(crate) mod test_util {
    use super::*;

    /// Asserts `R·Rᵀ = I` and `det R = 1` to `tol`.
    pub fn assert_rotation(r: &Mat3, tol: f64) {
        let rrt = mul(r, &transpose(r));
        assert!(max_diff(&rrt, &IDENTITY) < tol, "R·Rᵀ = {rrt:?}");
        assert!((det(r) - 1.0).abs() < tol, "det = {}", det(r));
    }

    /// Max |a − b| over entries.
    pub fn max_diff(a: &Mat3, b: &Mat3) -> f64 {
        (0..9).map(|k| (a[k / 3][k % 3] - b[k / 3][k % 3]).abs()).fold(0.0, f64::max)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matrix_helpers() {
        let a = [[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [7.0, 8.0, 10.0]];
        assert_eq!(transpose(&a)[0], [1.0, 4.0, 7.0]);
        assert!((det(&a) + 3.0).abs() < 1e-12);
        assert_eq!(mul(&a, &IDENTITY), a);
        let rz = [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
        assert!((angle_between_deg(&IDENTITY, &rz) - 90.0).abs() < 1e-12);
        assert_eq!(to_f32(&rz), [[0.0, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]]);
        assert_eq!(from_f32(&to_f32(&rz)), rz);
    }
}
