//! cryoDRGN2's SO(3) search grid (`cryodrgn/so3_grid.py`): Yershova et al.'s Hopf-fibration grid, a
//! HEALPix S² grid times an S¹ grid of in-plane angles, and its subdivision for the hierarchical search.
//!
//! Values follow cryoDRGN to the bit where it matters: angles in f64, quaternions rounded to f32 (as
//! `hopf_to_quat` does), rotations through cryoDRGN's own quaternion map
//! ([`matrix_from_quaternion_cryodrgn`]), and the 8 kept children ranked by f32 distances with numpy's
//! summation order, so a pose index means the same grid point here and in cryoDRGN.

use super::healpix;
use crate::rotation::quaternion::matrix_from_quaternion_cryodrgn;
use std::f64::consts::PI;

/// Largest supported resolution `r`: the base grid at `r` has `12·4^r × 6·2^r` points. Searches build the
/// base grid at r ≤ 2 and subdivide a few levels; [`So3Grid::new`] at r = 8 would hold 1.2·10⁹ points, but
/// indices, angles and [`get_neighbor`] stay exact up to there.
pub const MAX_RESOLUTION: u32 = 8;

/// A quaternion `(w, x, y, z)` in f32, as cryoDRGN stores its grid.
pub type QuatF32 = [f32; 4];

/// A rotation matrix in f32, row-major, as the trainers use it.
pub type Mat3F32 = [[f32; 3]; 3];

fn check_resolution(r: u32) {
    assert!(r <= MAX_RESOLUTION, "SO(3) grid resolution {r} > {MAX_RESOLUTION}");
}

/// Number of in-plane angles at resolution `r`, `6·2^r`.
///
/// # Panics
/// If `r > MAX_RESOLUTION`.
pub fn n_psi(r: u32) -> usize {
    check_resolution(r);
    6 << r
}

/// Number of S² (HEALPix) points at resolution `r`, `12·4^r`.
///
/// # Panics
/// If `r > MAX_RESOLUTION`.
pub fn n_s2(r: u32) -> usize {
    check_resolution(r);
    healpix::npix(r)
}

/// In-plane angle ψ of S¹ index `i` at resolution `r`: `i·dt + dt/2`, `dt = 2π/(6·2^r)` (cryoDRGN
/// `grid_s1`). Indices past `6·2^r` are allowed and give ψ ≥ 2π, as cryoDRGN's subdivision produces.
fn psi(r: u32, i: usize) -> f64 {
    let dt = 2.0 * PI / n_psi(r) as f64;
    i as f64 * dt + dt / 2.0
}

/// The `6·2^r` in-plane angles ψ = (i + ½)·2π/(6·2^r) (cryoDRGN `so3_grid.grid_s1`).
///
/// # Panics
/// If `r > MAX_RESOLUTION`.
pub fn grid_s1(r: u32) -> Vec<f64> {
    (0..n_psi(r)).map(|i| psi(r, i)).collect()
}

/// The `12·4^r` HEALPix NESTED pixel centres `(θ, φ)` at `nside = 2^r` (cryoDRGN `so3_grid.grid_s2`).
///
/// # Panics
/// If `r > MAX_RESOLUTION`.
pub fn grid_s2(r: u32) -> Vec<(f64, f64)> {
    check_resolution(r);
    healpix::grid_nest(r)
}

/// Hopf coordinates → quaternion, rounded to f32 (cryoDRGN `hopf_to_quat`):
/// `(cos θ/2·cos ψ/2, cos θ/2·sin ψ/2, sin θ/2·cos(φ + ψ/2), sin θ/2·sin(φ + ψ/2))`.
pub fn hopf_to_quat(theta: f64, phi: f64, psi: f64) -> QuatF32 {
    let (st, ct) = (theta / 2.0).sin_cos();
    let (sp, cp) = (psi / 2.0).sin_cos();
    let (sa, ca) = (phi + psi / 2.0).sin_cos();
    [(ct * cp) as f32, (ct * sp) as f32, (st * ca) as f32, (st * sa) as f32]
}

/// The rotation of an f32 grid quaternion through cryoDRGN's map (`lie_tools.quaternions_to_SO3`),
/// computed in f64 and rounded once.
pub fn quat_to_matrix(q: QuatF32) -> Mat3F32 {
    matrix_from_quaternion_cryodrgn(q.map(f64::from)).map(|row| row.map(|v| v as f32))
}

/// The base SO(3) grid at resolution `r`: `12·4^r` S² points × `6·2^r` in-plane angles, flat index
/// `s2·n_psi + s1` (cryoDRGN `grid_SO3`, `get_base_ind`).
#[derive(Debug, Clone)]
pub struct So3Grid {
    resolution: u32,
    n_psi: usize,
    quats: Vec<QuatF32>,
}

impl So3Grid {
    /// Builds the grid at resolution `r` (cryoDRGN's `--base-healpy`; 1 gives 576 points, 2 gives 4608).
    ///
    /// # Panics
    /// If `r > MAX_RESOLUTION`.
    pub fn new(r: u32) -> Self {
        let s1 = grid_s1(r);
        let quats = grid_s2(r)
            .into_iter()
            .flat_map(|(theta, phi)| s1.iter().map(move |&psi| hopf_to_quat(theta, phi, psi)))
            .collect();
        Self { resolution: r, n_psi: s1.len(), quats }
    }

    /// The resolution `r`.
    pub fn resolution(&self) -> u32 {
        self.resolution
    }

    /// Number of grid points, `12·4^r · 6·2^r`.
    pub fn len(&self) -> usize {
        self.quats.len()
    }

    /// Always false: every resolution has points.
    pub fn is_empty(&self) -> bool {
        self.quats.is_empty()
    }

    /// Number of in-plane angles, `6·2^r`.
    pub fn n_psi(&self) -> usize {
        self.n_psi
    }

    /// Number of S² points, `12·4^r`.
    pub fn n_s2(&self) -> usize {
        self.quats.len() / self.n_psi
    }

    /// All quaternions in flat-index order.
    pub fn quaternions(&self) -> &[QuatF32] {
        &self.quats
    }

    /// All rotation matrices in flat-index order.
    pub fn matrices(&self) -> Vec<Mat3F32> {
        self.quats.iter().map(|&q| quat_to_matrix(q)).collect()
    }

    /// `(s2, s1)` of flat index `i` (cryoDRGN `so3_grid.get_base_ind`).
    pub fn indices(&self, i: usize) -> (usize, usize) {
        (i / self.n_psi, i % self.n_psi)
    }

    /// Flat index of `(s2, s1)`.
    pub fn flat_index(&self, s2: usize, s1: usize) -> usize {
        s2 * self.n_psi + s1
    }
}

/// The S² points alone with ψ = 0, as quaternions (cryoDRGN `s2_grid_SO3`): the slices the decoder
/// evaluates when in-plane angles are applied by rotating images (`FAST_INPLANE`).
///
/// # Panics
/// If `r > MAX_RESOLUTION`.
pub fn s2_grid_quats(r: u32) -> Vec<QuatF32> {
    grid_s2(r).into_iter().map(|(theta, phi)| hopf_to_quat(theta, phi, 0.0)).collect()
}

/// One candidate of a subdivision: its quaternion and its `(s2, s1)` indices at the finer level.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Neighbor {
    /// The quaternion (f32, as cryoDRGN computes it).
    pub quat: QuatF32,
    /// HEALPix NESTED index at resolution `r + 1`.
    pub s2: usize,
    /// In-plane index at resolution `r + 1`. As in cryoDRGN, `2·s1 − 1` wraps to `n_psi(r+1) − 1` when
    /// negative, but the upper end is not wrapped: the last parent angle's children include index
    /// `n_psi(r+1)` (ψ just above 2π, the quaternion −q of index 0, the same rotation).
    pub s1: usize,
}

/// f32 squared distance `Σ (a − s·b)²`, summed left to right as numpy's `np.sum(·, axis=1)` does on the
/// (16, 4) candidate array (checked against numpy 2.4 on random data).
fn dist2(a: &QuatF32, b: &QuatF32, sign: f32) -> f32 {
    let t = |k: usize| {
        let d = a[k] - sign * b[k];
        d * d
    };
    ((t(0) + t(1)) + t(2)) + t(3)
}

/// The 8 points of the resolution-`r + 1` grid nearest to grid point `(s2, s1)` of resolution `r`,
/// whose quaternion is `quat` (cryoDRGN `so3_grid.get_neighbor`).
///
/// Candidates are the 4 nested S² children `4·s2 + {0,1,2,3}` times the 4 in-plane indices
/// `2·s1 − 1 … 2·s1 + 2` (S² major, ψ minor); the Hopf grid's finer neighbours in SO(3) are not simply
/// the nearest S¹ points, hence 16 candidates. They are ranked by `min(‖q' − q‖², ‖q' + q‖²)` in f32 and
/// the 8 smallest returned nearest first. Distances tie exactly in symmetric pairs (1000 times among the
/// kept 8 over all r = 1 and r = 2 parents); ties keep candidate order, i.e. numpy's
/// `argsort(kind="stable")`. cryoDRGN calls the default `argsort`, whose order among exact ties is up to
/// the sort implementation (a SIMD sort on AVX-512 machines); the kept sets agree for every r = 1 and
/// r = 2 parent, only the order within a tie can differ.
///
/// Near θ = π the Hopf coordinates twist (the quaternion follows φ + ψ/2 while φ changes fast between S²
/// children), so these candidates can miss the truly nearest points: kept children lie up to ~4.5 in-plane
/// steps of level r + 1 from the parent there at r = 3, against ≤ 1.5 elsewhere. That is cryoDRGN's
/// search, reproduced as is.
///
/// # Panics
/// If `r + 1 > MAX_RESOLUTION` or `s2 ≥ 12·4^r`.
pub fn get_neighbor(quat: QuatF32, s2: usize, s1: usize, r: u32) -> [Neighbor; 8] {
    let next = r + 1;
    assert!(s2 < n_s2(r), "S² index {s2} out of range at resolution {r}");
    let n_psi_next = n_psi(next);
    let s1_next: [usize; 4] =
        [if s1 == 0 { n_psi_next - 1 } else { 2 * s1 - 1 }, 2 * s1, 2 * s1 + 1, 2 * s1 + 2];
    let mut cands = [(0.0f32, Neighbor { quat: [0.0; 4], s2: 0, s1: 0 }); 16];
    for (a, s2_child) in (4 * s2..4 * s2 + 4).enumerate() {
        let (theta, phi) = healpix::pix2ang_nest(next, s2_child);
        for (b, &s1_child) in s1_next.iter().enumerate() {
            let q = hopf_to_quat(theta, phi, psi(next, s1_child));
            let d = dist2(&q, &quat, 1.0).min(dist2(&q, &quat, -1.0));
            cands[4 * a + b] = (d, Neighbor { quat: q, s2: s2_child, s1: s1_child });
        }
    }
    // Stable, so equal distances keep candidate order.
    cands.sort_by(|x, y| x.0.total_cmp(&y.0));
    std::array::from_fn(|k| cands[k].1)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sizes() {
        for r in 0..4 {
            let g = So3Grid::new(r);
            assert_eq!(g.n_s2(), 12 * 4usize.pow(r));
            assert_eq!(g.n_psi(), 6 * 2usize.pow(r));
            assert_eq!(g.len(), 12 * 4usize.pow(r) * 6 * 2usize.pow(r));
            assert_eq!(g.indices(g.flat_index(5, 3)), (5, 3));
        }
        assert_eq!(So3Grid::new(1).len(), 576);
        assert_eq!(So3Grid::new(2).len(), 4608);
    }
}
