//! Uniform random rotations (Haar measure on SO(3)) from uniform quaternions (Shoemake 1992), seeded.

use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::quaternion::{matrix_from_quaternion, Quat};
use super::Mat3;

/// A uniform random unit quaternion: with `u₁, u₂, u₃ ~ U[0, 1)`,
/// `(√(1−u₁)·sin 2πu₂, √(1−u₁)·cos 2πu₂, √u₁·sin 2πu₃, √u₁·cos 2πu₃)` (as cryoDRGN `random_quaternions`).
pub fn random_quaternion(rng: &mut impl Rng) -> Quat {
    let (u1, u2, u3): (f64, f64, f64) = (rng.random(), rng.random(), rng.random());
    let tau = std::f64::consts::TAU;
    let (a, b) = ((1.0 - u1).sqrt(), u1.sqrt());
    [a * (tau * u2).sin(), a * (tau * u2).cos(), b * (tau * u3).sin(), b * (tau * u3).cos()]
}

/// A uniform random rotation. (cryoDRGN's `random_rotmat` feeds the same quaternions through its own map,
/// [`super::quaternion::matrix_from_quaternion_cryodrgn`]; both are uniform because the Haar measure is
/// invariant under the fixed rotation that relates the two maps.)
pub fn random_rotation(rng: &mut impl Rng) -> Mat3 {
    matrix_from_quaternion(random_quaternion(rng))
}

/// `n` uniform random rotations from a ChaCha8 stream seeded with `seed` (reproducible across platforms).
pub fn random_rotations(n: usize, seed: u64) -> Vec<Mat3> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    (0..n).map(|_| random_rotation(&mut rng)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::test_util::assert_rotation;

    #[test]
    fn rotations_are_uniform_and_reproducible() {
        let rs = random_rotations(20000, 42);
        assert_eq!(rs[..3], random_rotations(3, 42)[..]);
        for r in &rs[..100] {
            assert_rotation(r, 1e-12);
        }
        // Under the Haar measure each matrix entry has mean 0 and variance 1/3, and the rotation angle θ has
        // density (1 − cos θ)/π, so E[cos θ] = E[(tr − 1)/2] = −1/2.
        let n = rs.len() as f64;
        for (i, j) in [(0, 0), (1, 2), (2, 1)] {
            let mean: f64 = rs.iter().map(|r| r[i][j]).sum::<f64>() / n;
            let var: f64 = rs.iter().map(|r| r[i][j] * r[i][j]).sum::<f64>() / n;
            assert!(mean.abs() < 0.02, "mean[{i}][{j}] = {mean}");
            assert!((var - 1.0 / 3.0).abs() < 0.02, "var[{i}][{j}] = {var}");
        }
        let cos_mean: f64 = rs.iter().map(|r| (r[0][0] + r[1][1] + r[2][2] - 1.0) / 2.0).sum::<f64>() / n;
        assert!((cos_mean + 0.5).abs() < 0.02, "E[cos θ] = {cos_mean}");
    }
}
