//! Pose error between two sets of rotations after the best global alignment (ground-truth metrics).
//!
//! Two reconstructions of the same data may differ by a global rotation of the volume. If
//! `V_b(x) = V_a(Q x)`, then `F_b(k) = F_a(Q k)` and the pose that gives the same slice satisfies
//! `R_bᵀ = Qᵀ R_aᵀ`, i.e. **`R_b = R_a·Q`** (right multiplication, because a pose maps the slice through
//! `Rᵀ(kx, ky, 0)`). The best `Q` minimises `Σ‖R_a Q − R_b‖²_F`, i.e. maximises `tr(Qᵀ M)` with
//! `M = Σ R_aᵀ R_b`; it is found with Horn's unit-quaternion method: `tr(R(q)ᵀ M) = qᵀ N q` for a symmetric
//! 4×4 `N`, maximised by the eigenvector of its largest eigenvalue (Jacobi iteration; no linear-algebra
//! dependency needed for 4×4).
//!
//! The other hand: the mirror image `V(J x)`, `J = diag(1, 1, −1)`, gives identical images with the poses
//! `J R J` (J leaves every in-plane `(kx, ky, 0)` unchanged), and any other mirror differs from J by a
//! rotation, which the global alignment absorbs. So `allow_flip` also aligns `{J R_a J}` and keeps the better.

use super::quaternion::matrix_from_quaternion;
use super::{angle_between_deg, mul, Mat3};
use crate::{Error, Result};

/// Summary of [`rotation_error_deg`].
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct RotationError {
    /// Mean geodesic angle between `R_a·Q` (or `J R_a J·Q`) and `R_b`, degrees.
    pub mean_deg: f64,
    /// Median of the same angles, degrees.
    pub median_deg: f64,
    /// Whether the hand-flipped set `J R_a J` aligned better.
    pub flipped: bool,
    /// The global alignment `Q` (right-multiplied onto the possibly flipped `a`).
    pub alignment: Mat3,
}

/// Mean and median angular error in degrees between rotations `a` and `b` (same length, matched by
/// index), after the best global rotation `Q` with `R_b ≈ R_a Q`; with `allow_flip` the hand-flipped `a`
/// is tried too. See the module docs for why right multiplication and `J R J`.
pub fn rotation_error_deg(a: &[Mat3], b: &[Mat3], allow_flip: bool) -> Result<RotationError> {
    if a.len() != b.len() || a.is_empty() {
        return Err(Error::Shape {
            op: "rotation_error_deg",
            expected: "two non-empty pose sets of equal length".into(),
            got: format!("{} and {}", a.len(), b.len()),
        });
    }
    let mut best = errors_after_alignment(a, b, false);
    if allow_flip {
        let flipped = errors_after_alignment(a, b, true);
        if flipped.mean_deg < best.mean_deg {
            best = flipped;
        }
    }
    Ok(best)
}

/// The angle in degrees between each aligned `a` (`R_a·Q`, or `J R_a J·Q` when `err.flipped`) and its `b`, in
/// input order, for per-particle statistics (`a`, `b` and `err` as in [`rotation_error_deg`]).
pub fn aligned_angles_deg(a: &[Mat3], b: &[Mat3], err: &RotationError) -> Vec<f64> {
    a.iter()
        .zip(b)
        .map(|(ra, rb)| {
            let ra = if err.flipped { flip_hand(ra) } else { *ra };
            angle_between_deg(&mul(&ra, &err.alignment), rb)
        })
        .collect()
}

/// `‖R_1 − R_2‖²_F` of two rotations `θ` degrees apart: `8 sin²(θ/2)`, the pose metric of the cryoDRGN2 and
/// HetACUMN papers.
pub fn frobenius_sq_from_deg(theta_deg: f64) -> f64 {
    8.0 * (theta_deg.to_radians() / 2.0).sin().powi(2)
}

/// The 3D offset `o` (pixels, `(x, y, z)` in the frame of the true rotations `truth`) by which a
/// reconstruction sits off-centre, from its poses' shift errors `Δt_i = t̂_i − t_i` (pixels): a map moved
/// by `o` projects, in view `R_i`, moved by `(R_i[0]·o, R_i[1]·o)` (the image axes are the first two rows
/// of `R`), which its estimated shifts absorb. Least squares over all particles; `None` when the views
/// cannot fix it (all about one axis). An ab initio map's centre is arbitrary, so shift errors are
/// meaningful after removing `o`, and the map is compared with the truth after moving it back.
pub fn map_offset(truth: &[Mat3], shift_errors: &[[f64; 2]]) -> Option<[f64; 3]> {
    let (mut a, mut rhs) = ([[0.0f64; 3]; 3], [0.0f64; 3]);
    for (r, dt) in truth.iter().zip(shift_errors) {
        for (row, &d) in r[..2].iter().zip(dt) {
            for i in 0..3 {
                rhs[i] += row[i] * d;
                for j in 0..3 {
                    a[i][j] += row[i] * row[j];
                }
            }
        }
    }
    solve3(&a, &rhs)
}

/// `A x = b` for a symmetric positive definite 3×3 `A` by Cramer's rule; `None` when near singular.
fn solve3(a: &Mat3, b: &[f64; 3]) -> Option<[f64; 3]> {
    let det = |m: &Mat3| {
        m[0][0] * (m[1][1] * m[2][2] - m[1][2] * m[2][1]) - m[0][1] * (m[1][0] * m[2][2] - m[1][2] * m[2][0])
            + m[0][2] * (m[1][0] * m[2][1] - m[1][1] * m[2][0])
    };
    let scale = a[0][0] + a[1][1] + a[2][2];
    let d = det(a);
    if scale.is_nan() || scale <= 0.0 || d.abs() < 1e-9 * scale.powi(3) {
        return None;
    }
    let mut x = [0.0; 3];
    for (k, xk) in x.iter_mut().enumerate() {
        let mut m = *a;
        for (row, &bi) in m.iter_mut().zip(b) {
            row[k] = bi;
        }
        *xk = det(&m) / d;
    }
    Some(x)
}

/// The map `a` (`D³`, `[z][y][x]`, centre `D/2`) of the reconstruction whose poses are `a` in
/// [`rotation_error_deg`], brought into the frame (and hand) of `b` and moved back by its `offset` (pixels,
/// from [`map_offset`]; zero to only rotate): `V_b(s) = V_a(J? Q (s + offset))`, trilinear, 0 outside — so
/// it can be compared with the ground truth voxel by voxel or by FSC.
pub fn align_volume(volume: &[f32], d: usize, err: &RotationError, offset: [f64; 3]) -> Result<Vec<f32>> {
    if volume.len() != d * d * d || d < 2 {
        return Err(Error::Shape {
            op: "align_volume",
            expected: format!("({d}, {d}, {d}) volume"),
            got: format!("{} values", volume.len()),
        });
    }
    let q = err.alignment;
    let c = (d / 2) as f64;
    let lim = (d - 1) as f64;
    let at = |z: usize, y: usize, x: usize| volume[(z * d + y) * d + x];
    let mut out = vec![0f32; d * d * d];
    for (i, o) in out.iter_mut().enumerate() {
        let s = [
            (i % d) as f64 - c + offset[0],
            ((i / d) % d) as f64 - c + offset[1],
            (i / (d * d)) as f64 - c + offset[2],
        ];
        let mut r = [0.0; 3];
        for (row, v) in q.iter().zip(r.iter_mut()) {
            *v = row[0] * s[0] + row[1] * s[1] + row[2] * s[2];
        }
        if err.flipped {
            r[2] = -r[2];
        }
        let g = r.map(|v| v + c);
        if g.iter().any(|&v| !(0.0..lim).contains(&v)) {
            continue;
        }
        let (x0, y0, z0) = (g[0] as usize, g[1] as usize, g[2] as usize);
        let (fx, fy, fz) = ((g[0] - x0 as f64) as f32, (g[1] - y0 as f64) as f32, (g[2] - z0 as f64) as f32);
        let lerp_x = |z: usize, y: usize| at(z, y, x0) + fx * (at(z, y, x0 + 1) - at(z, y, x0));
        let lerp_y = |z: usize| lerp_x(z, y0) + fy * (lerp_x(z, y0 + 1) - lerp_x(z, y0));
        *o = lerp_y(z0) + fz * (lerp_y(z0 + 1) - lerp_y(z0));
    }
    Ok(out)
}

/// `J R J` with `J = diag(1, 1, −1)`: negates the entries (0,2), (1,2), (2,0), (2,1).
pub fn flip_hand(r: &Mat3) -> Mat3 {
    let mut f = *r;
    f[0][2] = -f[0][2];
    f[1][2] = -f[1][2];
    f[2][0] = -f[2][0];
    f[2][1] = -f[2][1];
    f
}

/// The rotation `Q` maximising `tr(Qᵀ M)`.
pub fn best_rotation(m: &Mat3) -> Mat3 {
    // tr(R(q)ᵀ M) = Σ R(q)_ij M_ij is a quadratic form in q; read N off it by polarisation, using the
    // homogeneous form of R(q) (valid for unnormalised q): N_aa = f(e_a), N_ab = (f(e_a + e_b) − N_aa − N_bb)/2.
    let f = |q: [f64; 4]| -> f64 {
        let [w, x, y, z] = q;
        let r = [
            [w * w + x * x - y * y - z * z, 2.0 * (x * y - w * z), 2.0 * (x * z + w * y)],
            [2.0 * (x * y + w * z), w * w - x * x + y * y - z * z, 2.0 * (y * z - w * x)],
            [2.0 * (x * z - w * y), 2.0 * (y * z + w * x), w * w - x * x - y * y + z * z],
        ];
        (0..9).map(|k| r[k / 3][k % 3] * m[k / 3][k % 3]).sum()
    };
    let e = |i: usize| -> [f64; 4] { std::array::from_fn(|k| if k == i { 1.0 } else { 0.0 }) };
    let mut n = [[0.0; 4]; 4];
    for (i, row) in n.iter_mut().enumerate() {
        row[i] = f(e(i));
    }
    for i in 0..4 {
        for j in i + 1..4 {
            let sum: [f64; 4] = std::array::from_fn(|k| e(i)[k] + e(j)[k]);
            n[i][j] = (f(sum) - n[i][i] - n[j][j]) / 2.0;
            n[j][i] = n[i][j];
        }
    }
    matrix_from_quaternion(top_eigenvector(n))
}

/// Eigenvector of the largest eigenvalue of a symmetric 4×4 matrix, by cyclic Jacobi rotations.
fn top_eigenvector(mut a: [[f64; 4]; 4]) -> [f64; 4] {
    let mut v = [[0.0; 4]; 4];
    for (i, row) in v.iter_mut().enumerate() {
        row[i] = 1.0;
    }
    for _sweep in 0..50 {
        let off: f64 = (0..4)
            .flat_map(|i| (0..4).map(move |j| (i, j)))
            .filter(|(i, j)| i != j)
            .map(|(i, j)| a[i][j] * a[i][j])
            .sum();
        let scale: f64 = (0..4).map(|i| a[i][i] * a[i][i]).sum::<f64>() + off;
        if off <= 1e-30 * scale.max(1e-300) {
            break;
        }
        for p in 0..4 {
            for q in p + 1..4 {
                if a[p][q] == 0.0 {
                    continue;
                }
                // Zero a[p][q] with the rotation of angle φ, tan 2φ = 2a_pq / (a_qq − a_pp).
                let theta = (a[q][q] - a[p][p]) / (2.0 * a[p][q]);
                let t = theta.signum() / (theta.abs() + (theta * theta + 1.0).sqrt());
                let t = if theta == 0.0 { 1.0 } else { t };
                let c = 1.0 / (t * t + 1.0).sqrt();
                let s = t * c;
                for row in a.iter_mut() {
                    let (akp, akq) = (row[p], row[q]);
                    row[p] = c * akp - s * akq;
                    row[q] = s * akp + c * akq;
                }
                let (rp, rq) = (a[p], a[q]);
                a[p] = std::array::from_fn(|k| c * rp[k] - s * rq[k]);
                a[q] = std::array::from_fn(|k| s * rp[k] + c * rq[k]);
                for row in v.iter_mut() {
                    let (vp, vq) = (row[p], row[q]);
                    row[p] = c * vp - s * vq;
                    row[q] = s * vp + c * vq;
                }
            }
        }
    }
    let top = (0..4).fold(0, |b, i| if a[i][i] > a[b][b] { i } else { b });
    [v[0][top], v[1][top], v[2][top], v[3][top]]
}

fn errors_after_alignment(a: &[Mat3], b: &[Mat3], flip: bool) -> RotationError {
    let a: Vec<Mat3> = if flip { a.iter().map(flip_hand).collect() } else { a.to_vec() };
    let mut m = [[0.0; 3]; 3];
    for (ra, rb) in a.iter().zip(b) {
        // M += R_aᵀ R_b
        for i in 0..3 {
            for j in 0..3 {
                m[i][j] += (0..3).map(|k| ra[k][i] * rb[k][j]).sum::<f64>();
            }
        }
    }
    let q = best_rotation(&m);
    let mut errs: Vec<f64> = a.iter().zip(b).map(|(ra, rb)| angle_between_deg(&mul(ra, &q), rb)).collect();
    let mean_deg = errs.iter().sum::<f64>() / errs.len() as f64;
    errs.sort_unstable_by(f64::total_cmp);
    let mid = errs.len() / 2;
    let median_deg = if errs.len() % 2 == 1 { errs[mid] } else { 0.5 * (errs[mid - 1] + errs[mid]) };
    RotationError { mean_deg, median_deg, flipped: flip, alignment: q }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::random::random_rotations;
    use crate::rotation::relion::matrix_from_euler;
    use crate::rotation::test_util::{assert_rotation, max_diff};

    /// Three Gaussian blobs of different sizes: no symmetry.
    fn blobs(d: usize, rot: &Mat3, flip: bool) -> Vec<f32> {
        let c = (d / 2) as f64;
        let centres = [([5.0, 0.0, 0.0], 2.5), ([0.0, -4.0, 1.0], 2.0), ([-2.0, 2.0, 5.0], 1.5)];
        (0..d * d * d)
            .map(|i| {
                let mut s = [(i % d) as f64 - c, ((i / d) % d) as f64 - c, (i / (d * d)) as f64 - c];
                // The mirrored, rotated map: V(Rᵀ J? s).
                if flip {
                    s[2] = -s[2];
                }
                let mut r = [0.0; 3];
                for (j, v) in r.iter_mut().enumerate() {
                    *v = (0..3).map(|k| rot[k][j] * s[k]).sum();
                }
                centres
                    .iter()
                    .map(|(m, w): &([f64; 3], f64)| {
                        let d2: f64 = (0..3).map(|k| (r[k] - m[k]).powi(2)).sum();
                        (-d2 / (2.0 * w * w)).exp() as f32
                    })
                    .sum()
            })
            .collect()
    }

    fn correlation(a: &[f32], b: &[f32]) -> f64 {
        let dot: f64 = a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum();
        let n = |v: &[f32]| v.iter().map(|x| f64::from(*x).powi(2)).sum::<f64>().sqrt();
        dot / (n(a) * n(b))
    }

    #[test]
    fn a_rotated_or_mirrored_reconstruction_is_brought_back_with_its_poses() {
        let d = 24;
        let truth_map = blobs(d, &crate::rotation::IDENTITY, false);
        let truth = random_rotations(50, 4);
        let q = matrix_from_euler([40.0, 65.0, -20.0]);
        // V_a(r) = V_b(Qᵀ r), so V_b(s) = V_a(Q s); its poses are R_a = R_b Qᵀ.
        let poses_a: Vec<Mat3> = truth.iter().map(|rb| mul(rb, &super::super::transpose(&q))).collect();
        for mirror in [false, true] {
            let (map_a, poses_a): (Vec<f32>, Vec<Mat3>) = if mirror {
                (blobs(d, &q, true), poses_a.iter().map(flip_hand).collect())
            } else {
                (blobs(d, &q, false), poses_a.clone())
            };
            let err = rotation_error_deg(&poses_a, &truth, true).unwrap();
            assert_eq!(err.flipped, mirror);
            assert!(err.median_deg < 1e-6, "{err:?}");
            assert!(aligned_angles_deg(&poses_a, &truth, &err).iter().all(|&a| a < 1e-6));
            let back = align_volume(&map_a, d, &err, [0.0; 3]).unwrap();
            let (before, after) = (correlation(&map_a, &truth_map), correlation(&back, &truth_map));
            assert!(after > 0.99 && before < 0.8, "mirror {mirror}: correlation {before:.3} → {after:.3}");
        }
        assert!((frobenius_sq_from_deg(180.0) - 8.0).abs() < 1e-12);
        assert!((frobenius_sq_from_deg(90.0) - 4.0).abs() < 1e-12);
    }

    #[test]
    fn map_offset_is_recovered_from_shift_errors() {
        let truth = random_rotations(300, 9);
        let o = [1.5, -0.75, 2.0];
        let errors: Vec<[f64; 2]> = truth
            .iter()
            .enumerate()
            .map(|(i, r)| {
                // The offset's projection plus a little per-particle noise.
                let noise = 0.05 * ((i as f64 * 0.7).sin());
                [0, 1].map(|k| r[k][0] * o[0] + r[k][1] * o[1] + r[k][2] * o[2] + noise)
            })
            .collect();
        let got = map_offset(&truth, &errors).unwrap();
        assert!(got.iter().zip(&o).all(|(g, w)| (g - w).abs() < 0.02), "{got:?}");
        // One view direction cannot fix the offset along it.
        let one = vec![crate::rotation::IDENTITY; 10];
        assert!(map_offset(&one, &[[0.0, 0.0]; 10]).is_none());
    }

    #[test]
    fn globally_rotated_copy_has_zero_error() {
        let a = random_rotations(200, 1);
        let q = matrix_from_euler([33.0, 71.0, -150.0]);
        let b: Vec<Mat3> = a.iter().map(|r| mul(r, &q)).collect();
        let e = rotation_error_deg(&a, &b, false).unwrap();
        assert!(e.mean_deg < 1e-5 && e.median_deg < 1e-5, "{e:?}");
        assert!(max_diff(&e.alignment, &q) < 1e-9);
        assert_rotation(&e.alignment, 1e-12);
        // Without alignment the error is large.
        let raw: f64 = a.iter().zip(&b).map(|(x, y)| angle_between_deg(x, y)).sum::<f64>() / 200.0;
        assert!(raw > 30.0);
    }

    #[test]
    fn flipped_copy_is_recognised_only_when_allowed() {
        let a = random_rotations(200, 2);
        let q = matrix_from_euler([-10.0, 120.0, 45.0]);
        let b: Vec<Mat3> = a.iter().map(|r| mul(&flip_hand(r), &q)).collect();
        let e = rotation_error_deg(&a, &b, true).unwrap();
        assert!(e.flipped && e.mean_deg < 1e-5, "{e:?}");
        let no = rotation_error_deg(&a, &b, false).unwrap();
        assert!(!no.flipped && no.mean_deg > 10.0, "{no:?}");
    }

    #[test]
    fn noisy_poses_give_the_noise_level() {
        let a = random_rotations(500, 3);
        let noise: Vec<Mat3> = (0..500)
            .map(|i| {
                crate::rotation::cryosparc::rotation_from_axis_angle([
                    0.0,
                    0.0,
                    if i % 2 == 0 { 0.05 } else { -0.05 },
                ])
            })
            .collect();
        let b: Vec<Mat3> = a.iter().zip(&noise).map(|(r, n)| mul(n, r)).collect();
        let e = rotation_error_deg(&a, &b, true).unwrap();
        assert!((e.median_deg - 0.05f64.to_degrees()).abs() < 0.05, "{e:?}");
        assert!(matches!(rotation_error_deg(&a, &b[1..], false), Err(Error::Shape { .. })));
    }

    #[test]
    fn jacobi_top_eigenvector() {
        let n = [[2.0, 1.0, 0.0, 0.0], [1.0, 2.0, 0.0, 0.0], [0.0, 0.0, 1.0, 0.0], [0.0, 0.0, 0.0, -4.0]];
        let v = top_eigenvector(n);
        let s = std::f64::consts::FRAC_1_SQRT_2;
        assert!((v[0].abs() - s).abs() < 1e-12 && (v[1].abs() - s).abs() < 1e-12 && v[0] * v[1] > 0.0);
    }
}
