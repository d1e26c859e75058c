//! [`VolumeRef`]: a borrowed, checked 3-D density map.

use crate::viz_error::{VizError, VizResult};

/// A density map borrowed from an f32 buffer: index `[z][y][x]`, x fastest (MRC order), shape
/// `[nz, ny, nx]`. Every value is finite (checked once here so the algorithms need no NaN handling).
#[derive(Clone, Copy, Debug)]
pub struct VolumeRef<'a> {
    data: &'a [f32],
    shape: [usize; 3],
}

impl<'a> VolumeRef<'a> {
    /// Wrap `data` of shape `[nz, ny, nx]`.
    ///
    /// Errors: [`VizError::Shape`] when `data.len() ≠ nz·ny·nx` or a side is < 2;
    /// [`VizError::Invalid`] naming the first non-finite voxel.
    pub fn new(data: &'a [f32], shape: [usize; 3]) -> VizResult<Self> {
        let n = shape.iter().try_fold(1usize, |acc, &s| acc.checked_mul(s));
        if n != Some(data.len()) || shape.iter().any(|&s| s < 2) {
            return Err(VizError::shape(
                "volume data",
                format!("nz·ny·nx = {}·{}·{} values, every side ≥ 2", shape[0], shape[1], shape[2]),
                data.len(),
            ));
        }
        if let Some(i) = data.iter().position(|v| !v.is_finite()) {
            let (z, y, x) = (i / (shape[1] * shape[2]), (i / shape[2]) % shape[1], i % shape[2]);
            return Err(VizError::invalid(
                "volume data",
                format!("voxel (z={z}, y={y}, x={x}) is {}; maps must be finite to draw", data[i]),
            ));
        }
        Ok(Self { data, shape })
    }

    /// Wrap a cubic `d × d × d` map.
    pub fn cube(data: &'a [f32], d: usize) -> VizResult<Self> {
        Self::new(data, [d, d, d])
    }

    /// `[nz, ny, nx]`.
    pub fn shape(&self) -> [usize; 3] {
        self.shape
    }

    /// The voxels, x fastest.
    pub fn data(&self) -> &'a [f32] {
        self.data
    }

    /// Value at (x, y, z).
    ///
    /// # Panics
    /// When an index is out of range (callers iterate within `shape`).
    #[inline]
    pub fn at(&self, x: usize, y: usize, z: usize) -> f32 {
        self.data[(z * self.shape[1] + y) * self.shape[2] + x]
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shape_and_finiteness_are_checked() {
        let v = vec![0.0f32; 8];
        assert!(VolumeRef::cube(&v, 2).is_ok());
        assert!(matches!(VolumeRef::cube(&v, 3), Err(VizError::Shape { .. })));
        assert!(matches!(VolumeRef::new(&v, [8, 1, 1]), Err(VizError::Shape { .. })));
        let mut bad = v.clone();
        bad[5] = f32::NAN;
        let e = VolumeRef::cube(&bad, 2).unwrap_err();
        assert!(matches!(e, VizError::Invalid { .. }) && e.to_string().contains("z=1, y=0, x=1"), "{e}");
        let vol = VolumeRef::new(&[0.0, 1.0, 2.0, 3.0, 4.0, 5.0, 6.0, 7.0], [2, 2, 2]).unwrap();
        assert_eq!(vol.at(1, 0, 1), 5.0);
    }
}
