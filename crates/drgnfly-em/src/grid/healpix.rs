//! HEALPix NESTED pixel centres, `pix2ang(nside, ipix, nest=True)`, for `nside = 2^order`.
//!
//! cryoDRGN's S² grid (`so3_grid.grid_s2`) reads these from its bundled `healpy_grid.json` (computed by
//! healpy) or calls healpy. This is HEALPix C++'s `T_Healpix_Base::pix2loc` for the NEST scheme
//! (`nest2xyf` → ring index → z, φ) and `pix2ang` (θ = atan2(sin θ, z) near the poles, acos z elsewhere),
//! written out here so the grid needs no C or Python library; the arithmetic follows HEALPix's order so
//! the angles agree with healpy's to the last bit or two.

use std::f64::consts::FRAC_PI_2;

/// Ring of each base face's top corner in units of `nside` (HEALPix `jrll`).
const JRLL: [u64; 12] = [2, 2, 2, 2, 3, 3, 3, 3, 4, 4, 4, 4];
/// Longitude of each base face's centre in units of π/4 (HEALPix `jpll`).
const JPLL: [u64; 12] = [1, 3, 5, 7, 0, 2, 4, 6, 1, 3, 5, 7];

/// Largest supported `order` (`nside = 2^order`): pixel indices stay far inside `u64` and `f64` exactness.
pub const MAX_ORDER: u32 = 20;

/// Number of pixels, `12·4^order`.
///
/// # Panics
/// If `order > MAX_ORDER`.
pub fn npix(order: u32) -> usize {
    assert!(order <= MAX_ORDER, "HEALPix order {order} > {MAX_ORDER}");
    12 << (2 * order)
}

/// Every other bit of `v` (bits 0, 2, 4, …) packed together: the inverse of the nested bit interleave.
fn compress_bits(v: u64) -> u64 {
    let mut v = v & 0x5555_5555_5555_5555;
    v = (v | (v >> 1)) & 0x3333_3333_3333_3333;
    v = (v | (v >> 2)) & 0x0f0f_0f0f_0f0f_0f0f;
    v = (v | (v >> 4)) & 0x00ff_00ff_00ff_00ff;
    v = (v | (v >> 8)) & 0x0000_ffff_0000_ffff;
    (v | (v >> 16)) & 0x0000_0000_ffff_ffff
}

/// `(θ, φ)` in radians of the centre of NESTED pixel `pix` at `nside = 2^order`: θ ∈ (0, π) the
/// colatitude, φ ∈ [0, 2π) the longitude (healpy `pix2ang(2**order, pix, nest=True)`).
///
/// # Panics
/// If `order > MAX_ORDER` or `pix ≥ 12·4^order`.
pub fn pix2ang_nest(order: u32, pix: usize) -> (f64, f64) {
    let npix = npix(order);
    assert!(pix < npix, "HEALPix pixel {pix} out of range for nside 2^{order} ({npix} pixels)");
    let nside = 1u64 << order;
    let nl4 = 4 * nside;
    let fact2 = 4.0 / npix as f64;
    let fact1 = (nside << 1) as f64 * fact2;

    // nest2xyf
    let pix = pix as u64;
    let face = (pix >> (2 * order)) as usize;
    let in_face = pix & ((1u64 << (2 * order)) - 1);
    let ix = compress_bits(in_face) as i64;
    let iy = compress_bits(in_face >> 1) as i64;

    // Ring number counted from the north pole, 1 … 4·nside − 1.
    let jr = ((JRLL[face] << order) as i64) - ix - iy - 1;
    let nside = nside as i64;
    let (z, sth, nr) = if jr < nside {
        let nr = jr;
        let tmp = (nr * nr) as f64 * fact2;
        let z = 1.0 - tmp;
        (z, (z > 0.99).then(|| (tmp * (2.0 - tmp)).sqrt()), nr)
    } else if jr > 3 * nside {
        let nr = nl4 as i64 - jr;
        let tmp = (nr * nr) as f64 * fact2;
        let z = tmp - 1.0;
        (z, (z < -0.99).then(|| (tmp * (2.0 - tmp)).sqrt()), nr)
    } else {
        (((2 * nside - jr) as f64) * fact1, None, nside)
    };
    let mut tmp = JPLL[face] as i64 * nr + ix - iy;
    if tmp < 0 {
        tmp += 8 * nr;
    }
    let phi = if nr == nside {
        0.75 * FRAC_PI_2 * tmp as f64 * fact1
    } else {
        (0.5 * FRAC_PI_2 * tmp as f64) / nr as f64
    };
    let theta = match sth {
        Some(s) => s.atan2(z),
        None => z.acos(),
    };
    (theta, phi)
}

/// `(θ, φ)` of all `12·4^order` pixels in NESTED order (cryoDRGN `so3_grid.grid_s2(order)`).
///
/// # Panics
/// If `order > MAX_ORDER`.
pub fn grid_nest(order: u32) -> Vec<(f64, f64)> {
    (0..npix(order)).map(|p| pix2ang_nest(order, p)).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::f64::consts::PI;

    #[test]
    fn nside_1_is_the_twelve_base_faces() {
        // Nside 1: faces 0–3 at z = 2/3, 4–7 on the equator, 8–11 at z = −2/3.
        for (p, (theta, phi)) in grid_nest(0).into_iter().enumerate() {
            let want_z = [2.0 / 3.0, 0.0, -2.0 / 3.0][p / 4];
            assert!((theta.cos() - want_z).abs() < 1e-15, "pix {p}");
            let want_phi = if (4..8).contains(&p) {
                (p - 4) as f64 * PI / 2.0
            } else {
                (2 * (p % 4) + 1) as f64 * PI / 4.0
            };
            assert!((phi - want_phi).abs() < 1e-15, "pix {p}: φ {phi} want {want_phi}");
        }
    }

    #[test]
    fn equal_area_rings_and_nested_children() {
        for order in 0..5 {
            let grid = grid_nest(order);
            // Children 4p … 4p+3 surround their parent: each lies within one parent pixel size.
            if order > 0 {
                let parent = grid_nest(order - 1);
                let size = (4.0 * PI / parent.len() as f64).sqrt();
                for (c, &(t, p)) in grid.iter().enumerate() {
                    let (pt, pp) = parent[c / 4];
                    let cos = t.cos() * pt.cos() + t.sin() * pt.sin() * (p - pp).cos();
                    assert!(cos.clamp(-1.0, 1.0).acos() < size, "order {order} child {c}");
                }
            }
            // Equal area: the mean of z over all pixels is 0 and every φ is in [0, 2π).
            let mean_z: f64 = grid.iter().map(|(t, _)| t.cos()).sum::<f64>() / grid.len() as f64;
            assert!(mean_z.abs() < 1e-12);
            assert!(grid.iter().all(|&(t, p)| (0.0..PI).contains(&t) && (0.0..2.0 * PI).contains(&p)));
        }
    }
}
