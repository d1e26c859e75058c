//! The grids against cryoDRGN 4.3.1's own output (`testdata/so3_grid.npz`, written by
//! `scripts/fixtures/so3_grid.py`), plus geometric properties of the Hopf grid.

use super::healpix;
use super::shift;
use super::so3::{self, get_neighbor, Mat3F32, QuatF32, So3Grid};
use crate::rotation::test_util::assert_rotation;
use crate::testdata::{read_npz, NpyArray};
use std::path::PathBuf;

fn fixture(name: &str) -> NpyArray {
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("src/grid/testdata/so3_grid.npz");
    read_npz(&path, name)
}

fn quat(a: &NpyArray, i: usize) -> QuatF32 {
    std::array::from_fn(|k| a.data[4 * i + k] as f32)
}

fn assert_close(got: &[f64], want: &[f64], tol: f64, what: &str) {
    assert_eq!(got.len(), want.len(), "{what}: length");
    for (i, (g, w)) in got.iter().zip(want).enumerate() {
        assert!((g - w).abs() <= tol, "{what}[{i}]: {g} vs {w}");
    }
}

fn flat_quats(q: &[QuatF32]) -> Vec<f64> {
    q.iter().flat_map(|q| q.map(f64::from)).collect()
}

fn flat_mats(m: &[Mat3F32]) -> Vec<f64> {
    m.iter().flat_map(|m| m.iter().flat_map(|row| row.map(f64::from))).collect()
}

/// cryoDRGN's ranking distance, recomputed on the fixture's own quaternions.
fn rank_dist(a: &QuatF32, b: &QuatF32) -> f32 {
    let d = |s: f32| {
        let t = |k: usize| (a[k] - s * b[k]) * (a[k] - s * b[k]);
        ((t(0) + t(1)) + t(2)) + t(3)
    };
    d(1.0).min(d(-1.0))
}

#[test]
fn healpix_matches_healpy() {
    for r in 0..4 {
        let want = fixture(&format!("s2_r{r}"));
        let got: Vec<f64> = healpix::grid_nest(r).into_iter().flat_map(|(t, p)| [t, p]).collect();
        assert_eq!(want.shape, [12 << (2 * r), 2]);
        assert_close(&got, &want.data, 1e-14, &format!("s2 r={r}"));
    }
}

#[test]
fn s1_and_base_grid_match_cryodrgn() {
    for r in 1..3 {
        assert_close(&so3::grid_s1(r), &fixture(&format!("s1_r{r}")).data, 1e-15, "s1");
    }
    let g1 = So3Grid::new(1);
    let want_q = fixture("so3_r1_quat");
    assert_eq!(want_q.shape, [576, 4]);
    assert_close(&flat_quats(g1.quaternions()), &want_q.data, 1e-6, "r1 quat");
    assert_close(&flat_mats(&g1.matrices()), &fixture("so3_r1_rot").data, 1e-6, "r1 rot");
    // The flat index is s2·n_psi + s1, as cryoDRGN's get_base_ind reads it.
    for (i, q) in g1.quaternions().iter().enumerate() {
        let (s2, s1) = g1.indices(i);
        let (theta, phi) = healpix::pix2ang_nest(1, s2);
        assert_eq!(*q, so3::hopf_to_quat(theta, phi, so3::grid_s1(1)[s1]));
    }

    let g2 = So3Grid::new(2);
    let ind = fixture("so3_r2_ind");
    let sample: Vec<usize> = ind.data.iter().map(|&i| i as usize).collect();
    let q2: Vec<QuatF32> = sample.iter().map(|&i| g2.quaternions()[i]).collect();
    assert_close(&flat_quats(&q2), &fixture("so3_r2_quat").data, 1e-6, "r2 quat");
    let m2: Vec<Mat3F32> = q2.iter().map(|&q| so3::quat_to_matrix(q)).collect();
    assert_close(&flat_mats(&m2), &fixture("so3_r2_rot").data, 1e-6, "r2 rot");

    assert_close(&flat_quats(&so3::s2_grid_quats(1)), &fixture("s2quat_r1").data, 1e-6, "s2 grid quat");
}

/// Checks one `get_neighbor` result against cryoDRGN's: the same 8 `(s2, s1)` and, position by position,
/// the same f32 ranking distance. cryoDRGN's distances tie exactly in symmetric pairs, and numpy's default
/// `argsort` (a SIMD sort on AVX-512 machines) leaves the order of ties to the implementation, so only the
/// order within a tie may differ here; `stable` is cryoDRGN's result with `argsort(kind="stable")`, which
/// must match exactly.
fn check_neighbors(
    parent: QuatF32,
    (s2, s1, r): (usize, usize, u32),
    want_ind: &[[usize; 2]],
    want_q: &[QuatF32],
    stable: Option<&[[usize; 2]]>,
) {
    let got = get_neighbor(parent, s2, s1, r);
    let what = format!("parent ({s2}, {s1}) at r={r}");
    let mut got_set: Vec<[usize; 2]> = got.iter().map(|n| [n.s2, n.s1]).collect();
    let mut want_set = want_ind.to_vec();
    got_set.sort();
    want_set.sort();
    assert_eq!(got_set, want_set, "{what}: kept set");
    for k in 0..8 {
        assert_eq!(rank_dist(&got[k].quat, &parent), rank_dist(&want_q[k], &parent), "{what}: rank {k}");
        let j = want_ind.iter().position(|w| *w == [got[k].s2, got[k].s1]).expect("in the kept set");
        let close = got[k].quat.iter().zip(&want_q[j]).all(|(a, b)| (a - b).abs() <= 1e-6);
        assert!(close, "{what}: quat {k}: {:?} vs {:?}", got[k].quat, want_q[j]);
    }
    if let Some(stable) = stable {
        let got_ind: Vec<[usize; 2]> = got.iter().map(|n| [n.s2, n.s1]).collect();
        assert_eq!(got_ind, stable, "{what}: stable order");
    }
}

fn pairs(a: &NpyArray, i: usize, n: usize) -> Vec<[usize; 2]> {
    (0..n).map(|k| [a.data[2 * (n * i + k)] as usize, a.data[2 * (n * i + k) + 1] as usize]).collect()
}

#[test]
fn neighbors_match_cryodrgn() {
    // Every r = 1 grid point subdivided to r = 2, with cryoDRGN's quaternions.
    let g1 = So3Grid::new(1);
    let (ind, qs, stable) = (fixture("nbr_r1_ind"), fixture("nbr_r1_quat"), fixture("nbr_r1_ind_stable"));
    assert_eq!(ind.shape, [576, 8, 2]);
    for i in 0..g1.len() {
        let (s2, s1) = g1.indices(i);
        let want_q: Vec<QuatF32> = (0..8).map(|k| quat(&qs, 8 * i + k)).collect();
        let stable = pairs(&stable, i, 8);
        check_neighbors(g1.quaternions()[i], (s2, s1, 1), &pairs(&ind, i, 8), &want_q, Some(&stable));
    }

    // Every r = 2 grid point subdivided to r = 3 (indices only; the quaternions are r = 3 grid points).
    let (g2, g3) = (So3Grid::new(2), So3Grid::new(3));
    let (ind, stable) = (fixture("nbr_r2_ind"), fixture("nbr_r2_ind_stable"));
    assert_eq!(ind.shape, [4608, 8, 2]);
    for i in 0..g2.len() {
        let (s2, s1) = g2.indices(i);
        let want = pairs(&ind, i, 8);
        // In-plane index n_psi (ψ just past 2π) is the quaternion −q of index 0.
        let want_q: Vec<QuatF32> = want
            .iter()
            .map(|&[a, b]| {
                let q = g3.quaternions()[g3.flat_index(a, b % g3.n_psi())];
                if b >= g3.n_psi() {
                    q.map(|c| -c)
                } else {
                    q
                }
            })
            .collect();
        let stable = pairs(&stable, i, 8);
        check_neighbors(g2.quaternions()[i], (s2, s1, 2), &want, &want_q, Some(&stable));
    }

    // Parents that are themselves subdivision outputs, as in later search iterations, including the
    // unwrapped in-plane index n_psi(r) that cryoDRGN produces just past 2π.
    let (pq, pi, pr) =
        (fixture("chain_parent_quat"), fixture("chain_parent_ind"), fixture("chain_parent_res"));
    let (cq, ci) = (fixture("chain_quat"), fixture("chain_ind"));
    let mut unwrapped = 0;
    for i in 0..pr.data.len() {
        let r = pr.data[i] as u32;
        let [s2, s1] = pairs(&pi, i, 1)[0];
        unwrapped += (s1 >= so3::n_psi(r)) as usize;
        let want_q: Vec<QuatF32> = (0..8).map(|k| quat(&cq, 8 * i + k)).collect();
        check_neighbors(quat(&pq, i), (s2, s1, r), &pairs(&ci, i, 8), &want_q, None);
    }
    assert!(unwrapped > 0);
}

#[test]
fn shift_grids_match_cryodrgn_bitwise() {
    let f32s = |a: &NpyArray| a.data.iter().map(|&v| v as f32).collect::<Vec<_>>();
    let flat = |g: &[shift::Shift]| g.iter().flatten().copied().collect::<Vec<_>>();
    let base = shift::base_shift_grid(1, 10.0, 7, 0.0, 0.0);
    assert_eq!(flat(&base), f32s(&fixture("shift_base_l1_e10_n7")));
    assert_eq!(
        flat(&shift::base_shift_grid(0, 10.0, 7, 1.0, -2.0)),
        f32s(&fixture("shift_base_l0_e10_n7_x1_ym2"))
    );
    assert_eq!(flat(&shift::base_shift_grid(2, 20.0, 7, 0.0, 0.0)), f32s(&fixture("shift_base_l2_e20_n7")));

    let centers = f32s(&fixture("shift_centers"));
    for it in 1..4u32 {
        let c = [centers[2 * (it as usize - 1)], centers[2 * (it as usize - 1) + 1]];
        let got = shift::refined_shifts(c, &base, it);
        assert_eq!(flat(&got), f32s(&fixture(&format!("shift_refined_it{it}"))), "iteration {it}");
    }

    let (inp, t, ind) = (fixture("shift_nbr_in"), f32s(&fixture("shift_nbr_t")), fixture("shift_nbr_ind"));
    for p in 0..inp.shape[0] {
        let [xi, yi, lev] = [0, 1, 2].map(|k| inp.data[3 * p + k] as usize);
        let got = shift::get_neighbor(xi, yi, lev as u32, 10.0, 7);
        for (k, (s, i)) in got.iter().enumerate() {
            assert_eq!(s[..], t[8 * p + 2 * k..8 * p + 2 * k + 2], "neighbour {p}/{k}");
            assert_eq!(i[..], pairs(&ind, p, 4)[k][..], "neighbour {p}/{k}");
        }
    }
}

#[test]
fn grid_rotations_are_proper() {
    for r in 0..4 {
        for m in So3Grid::new(r).matrices() {
            assert_rotation(&m.map(|row| row.map(f64::from)), 1e-6);
        }
    }
}

/// Angle in radians between the rotations of two unit quaternions.
fn angle(a: &QuatF32, b: &QuatF32) -> f64 {
    let dot: f64 = (0..4).map(|k| f64::from(a[k]) * f64::from(b[k])).sum();
    2.0 * dot.abs().min(1.0).acos()
}

#[test]
fn children_lie_near_their_parent() {
    // Children are points of the next grid, and near the parent: within ~1.2 in-plane steps of level
    // r + 1 for the nearest, and within 1.5 steps for all 8 outside the south polar cap (θ < 2.5). Near
    // θ = π the Hopf coordinates twist (the quaternion depends on φ + ψ/2 with full weight while φ varies
    // fast between S² children), the 4 in-plane candidates miss the true nearest points, and cryoDRGN
    // keeps children up to ~4.5 steps away at r = 3; that is its behaviour, kept here.
    for r in 0..4 {
        let (g, next) = (So3Grid::new(r), So3Grid::new(r + 1));
        let step = 2.0 * std::f64::consts::PI / so3::n_psi(r + 1) as f64;
        let s2 = so3::grid_s2(r);
        for (i, q) in g.quaternions().iter().enumerate() {
            let (a, b) = g.indices(i);
            let kids = get_neighbor(*q, a, b, r);
            let angles: Vec<f64> = kids.iter().map(|k| angle(&k.quat, q)).collect();
            let nearest = angles.iter().copied().fold(f64::INFINITY, f64::min);
            assert!(nearest < 1.25 * step, "r={r} point {i}: nearest child {nearest}");
            if s2[a].0 < 2.5 {
                assert!(angles.iter().all(|&x| x < 1.5 * step), "r={r} point {i}: {angles:?}");
            }
            for k in &kids {
                let on_grid = next.quaternions()[next.flat_index(k.s2, k.s1 % next.n_psi())];
                assert!(angle(&on_grid, &k.quat) < 1e-3, "r={r} point {i}: child off the grid");
            }
            let mut idx: Vec<_> = kids.iter().map(|k| (k.s2, k.s1)).collect();
            idx.sort();
            idx.dedup();
            assert_eq!(idx.len(), 8);
        }
    }
}
