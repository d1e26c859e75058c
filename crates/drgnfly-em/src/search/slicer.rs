//! [`HartleyVolumeSlicer`]: a model given as a Hartley volume table, sliced by trilinear interpolation.

use rayon::prelude::*;

use super::SlicePredictor;
use crate::rotation::Mat3;
use crate::{Error, Result};

/// A homogeneous model given as a centred 3D Hartley volume, sliced by trilinear interpolation.
///
/// The table is indexed `[z][y][x]` with the zero frequency at index `D/2` on every axis and one lattice
/// step (`1/D` cycles/px) per index, the layout of `drgnfly_nn::decoder::Decoder::eval_volume` (which
/// evaluates the `(D+1)³` lattice of extent 0.5 and returns its first `D` indices per axis) and of the
/// centred `ht3_center` of a real `D³` volume ([`crate::hartley::HartleyPlan::ht3_center`]). Both sizes are
/// accepted:
///
/// * `(D+1)³` values (`lattice_side = D + 1`): the symmetrized table, used as is;
/// * `D³` values (the `eval_volume` output, or an `ht3_center` transform): padded to `(D+1)³` by copying
///   index 0 to index `D` on each axis (the −Nyquist plane duplicated as +Nyquist, as
///   [`crate::hartley::symmetrize_ht`] does in 2D; the transform is periodic, so this is the value there).
///
/// The slice at pose `R`, lattice point `(kx, ky)` (integer steps from the centre), is the trilinear
/// interpolation of the table at `D/2 + Rᵀ(kx, ky, 0)`; points outside `[0, D]³` are 0. On the points
/// [`crate::project::Projector`] (oversampling 1) also reaches this equals its slices; the difference is
/// the last half-open cell below +Nyquist, which the projector treats as outside.
#[derive(Debug, Clone)]
pub struct HartleyVolumeSlicer {
    side: usize,
    table: Vec<f32>,
}

impl HartleyVolumeSlicer {
    /// Wraps a Hartley volume for lattice side `lattice_side = D + 1` (odd, ≥ 3); `values` holds `(D+1)³` or
    /// `D³` values (see the type's docs). Memory: `4·(D+1)³` bytes.
    pub fn new(values: Vec<f32>, lattice_side: usize) -> Result<Self> {
        if lattice_side < 3 || lattice_side.is_multiple_of(2) {
            return Err(Error::Param {
                name: "lattice_side",
                value: lattice_side.to_string(),
                why: "must be odd and ≥ 3 (D + 1 for an even box size D)".into(),
            });
        }
        let (e, d) = (lattice_side, lattice_side - 1);
        let table = if values.len() == e * e * e {
            values
        } else if values.len() == d * d * d {
            let mut t = vec![0.0f32; e * e * e];
            for z in 0..e {
                for y in 0..e {
                    let src = &values[((z % d) * d + y % d) * d..][..d];
                    let dst = &mut t[(z * e + y) * e..][..e];
                    dst[..d].copy_from_slice(src);
                    dst[d] = src[0];
                }
            }
            t
        } else {
            return Err(Error::Shape {
                op: "HartleyVolumeSlicer::new",
                expected: format!("({e}, {e}, {e}) or ({d}, {d}, {d}) values"),
                got: format!("{} values", values.len()),
            });
        };
        Ok(Self { side: e, table })
    }

    /// The lattice side `D + 1`.
    pub fn lattice_side(&self) -> usize {
        self.side
    }

    /// One slice at the in-plane steps `k` into `out`.
    fn slice(&self, r: &Mat3, k: &[[f32; 2]], out: &mut [f32]) {
        let e = self.side;
        let (c, lim) = ((e / 2) as f32, (e - 1) as f32);
        // k₃ = Rᵀ(kx, ky, 0): component j is R[0][j]·kx + R[1][j]·ky.
        let ex = r[0].map(|v| v as f32);
        let ey = r[1].map(|v| v as f32);
        let t = &self.table;
        let (sy, sz) = (e, e * e);
        let top = e - 2;
        for (o, &[kx, ky]) in out.iter_mut().zip(k) {
            let gx = c + ex[0] * kx + ey[0] * ky;
            let gy = c + ex[1] * kx + ey[1] * ky;
            let gz = c + ex[2] * kx + ey[2] * ky;
            if !((0.0..=lim).contains(&gx) && (0.0..=lim).contains(&gy) && (0.0..=lim).contains(&gz)) {
                *o = 0.0;
                continue;
            }
            // At exactly +Nyquist the cell below is used with weight 1 on its upper corner.
            let (x0, y0, z0) = ((gx as usize).min(top), (gy as usize).min(top), (gz as usize).min(top));
            let (fx, fy, fz) = (gx - x0 as f32, gy - y0 as f32, gz - z0 as f32);
            let b = (z0 * e + y0) * e + x0;
            let lerp = |i: usize| t[i] + fx * (t[i + 1] - t[i]);
            let a0 = lerp(b) + fy * (lerp(b + sy) - lerp(b));
            let a1 = lerp(b + sz) + fy * (lerp(b + sz + sy) - lerp(b + sz));
            *o = a0 + fz * (a1 - a0);
        }
    }
}

impl SlicePredictor for HartleyVolumeSlicer {
    /// Parallel over rotations.
    fn predict(&self, rots: &[Mat3], points: &[usize], out: &mut [f32]) -> Result<()> {
        let e = self.side;
        if out.len() != rots.len() * points.len() {
            return Err(Error::Shape {
                op: "HartleyVolumeSlicer::predict",
                expected: format!("{} rotations × {} points", rots.len(), points.len()),
                got: format!("{} values", out.len()),
            });
        }
        if let Some(&bad) = points.iter().find(|&&i| i >= e * e) {
            return Err(Error::Param {
                name: "points",
                value: bad.to_string(),
                why: format!("lattice indices must be < {} on the {e}×{e} lattice", e * e),
            });
        }
        if points.is_empty() {
            return Ok(());
        }
        let h = (e / 2) as f32;
        let k: Vec<[f32; 2]> = points.iter().map(|&i| [(i % e) as f32 - h, (i / e) as f32 - h]).collect();
        out.par_chunks_mut(points.len()).zip(rots.par_iter()).for_each(|(o, r)| self.slice(r, &k, o));
        Ok(())
    }
}
