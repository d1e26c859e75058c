//! Rotation parametrisations that networks and per-particle tables learn: cryoDRGN's 6-D "s2s2" (two rows,
//! Gram–Schmidt gives the third) and unit quaternions, mapped differentiably to rotation matrices.

use candle_core::Tensor;

use crate::error::Result;

/// How rotations are parametrised.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum RotationParam {
    /// The first two rows of the matrix (cryoDRGN `s2s2`); 6 numbers.
    SixD,
    /// A unit quaternion `(w, x, y, z)`; 4 numbers.
    Quaternion,
}

impl RotationParam {
    /// Numbers per rotation.
    pub fn width(self) -> usize {
        match self {
            RotationParam::SixD => 6,
            RotationParam::Quaternion => 4,
        }
    }
}

/// Rotation matrices `(B, 3, 3)` from a batch of parameters `(B, width)`, differentiably (the maps a
/// pose table's rows go through): Gram–Schmidt on two rows for [`RotationParam::SixD`], the normalised quaternion's
/// matrix for [`RotationParam::Quaternion`].
pub fn rotation_matrices(params: &Tensor, param: RotationParam) -> Result<Tensor> {
    let b = params.dim(0)?;
    let col = |t: &Tensor, i: usize| t.narrow(1, i, 1);
    let unit = |v: &Tensor| -> candle_core::Result<Tensor> {
        v.broadcast_div(&(v.sqr()?.sum_keepdim(1)?.sqrt()? + 1e-12)?)
    };
    Ok(match param {
        RotationParam::SixD => {
            let e1 = unit(&params.narrow(1, 0, 3)?)?;
            let a2 = params.narrow(1, 3, 3)?;
            let e2 = unit(&(&a2 - e1.broadcast_mul(&(&e1 * &a2)?.sum_keepdim(1)?)?)?)?;
            let (x1, y1, z1) = (col(&e1, 0)?, col(&e1, 1)?, col(&e1, 2)?);
            let (x2, y2, z2) = (col(&e2, 0)?, col(&e2, 1)?, col(&e2, 2)?);
            let e3 = Tensor::cat(
                &[
                    ((&y1 * &z2)? - (&z1 * &y2)?)?,
                    ((&z1 * &x2)? - (&x1 * &z2)?)?,
                    ((&x1 * &y2)? - (&y1 * &x2)?)?,
                ],
                1,
            )?;
            Tensor::stack(&[e1, e2, e3], 1)?
        }
        RotationParam::Quaternion => {
            let q = unit(params)?;
            let (w, x, y, z) = (col(&q, 0)?, col(&q, 1)?, col(&q, 2)?, col(&q, 3)?);
            let two = |a: &Tensor, b: &Tensor| (a * b)? * 2.0;
            let one_minus = |a: &Tensor, b: &Tensor| -> candle_core::Result<Tensor> {
                ((a.sqr()? + b.sqr()?)? * -2.0)? + 1.0
            };
            let entries = [
                one_minus(&y, &z)?,
                (two(&x, &y)? - two(&w, &z)?)?,
                (two(&x, &z)? + two(&w, &y)?)?,
                (two(&x, &y)? + two(&w, &z)?)?,
                one_minus(&x, &z)?,
                (two(&y, &z)? - two(&w, &x)?)?,
                (two(&x, &z)? - two(&w, &y)?)?,
                (two(&y, &z)? + two(&w, &x)?)?,
                one_minus(&x, &y)?,
            ];
            Tensor::cat(&entries, 1)?.reshape((b, 3, 3))?
        }
    })
}
