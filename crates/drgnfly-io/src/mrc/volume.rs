//! Whole-volume reading with the map axis order applied.
//!
//! An MRC file stores sections of rows of columns; mapc/mapr/maps say which spatial axis (1 = X, 2 = Y,
//! 3 = Z) runs along the columns, rows and sections. [`read_volume`] always returns `[z][y][x]` with x
//! fastest, whatever the stored order. mapc/mapr/maps = 0, 0, 0 (left unset by some old writers) is read as
//! the standard 1, 2, 3.

use std::path::Path;

use crate::error::{Error, Result};

use super::header::MrcHeader;
use super::stack::MrcStack;

/// A volume in standard orientation.
#[derive(Clone, Debug)]
pub struct MrcVolume {
    /// Densities indexed `[z][y][x]`, x fastest: `data[(z * ny + y) * nx + x]`.
    pub data: Vec<f32>,
    /// `[nz, ny, nx]` after the axis permutation (equal to the header's nz, ny, nx when mapc/r/s = 1, 2, 3).
    pub shape: [usize; 3],
    /// Voxel size along `[x, y, z]` in Å (0 when the header cell is 0: see [`MrcHeader::known_voxel_size`]).
    pub voxel_size: [f32; 3],
    /// Header origin along `[x, y, z]` in Å (nxstart/nystart/nzstart are not folded in; see the header).
    pub origin: [f32; 3],
    /// The header as stored in the file.
    pub header: MrcHeader,
}

/// Read a whole map (any supported mode, compressed or not) into `f32` with x fastest.
///
/// Errors as [`MrcStack::open`], plus [`Error::Invalid`] when mapc/mapr/maps is not a permutation of 1, 2, 3.
pub fn read_volume(path: impl AsRef<Path>) -> Result<MrcVolume> {
    let path = path.as_ref();
    let stack = MrcStack::open(path)?;
    let header = stack.header().clone();
    let axes = axis_order(path, &header)?;
    let (ny, nx) = stack.image_shape();
    let stored_shape = [stack.len(), ny, nx];
    // The file was checked to hold nz·ny·nx values, so this allocation is bounded by its real size.
    let mut stored = vec![0.0f32; stack.len() * stack.image_len()];
    stack.read_images_into(0, stack.len(), &mut stored)?;
    let (data, shape) =
        if axes == [0, 1, 2] { (stored, stored_shape) } else { permute_to_xyz(&stored, stored_shape, axes) };
    Ok(MrcVolume { data, shape, voxel_size: header.voxel_size(), origin: header.origin_a, header })
}

/// The spatial axis (0 = X, 1 = Y, 2 = Z) of the columns, rows and sections.
pub(crate) fn axis_order(path: &Path, h: &MrcHeader) -> Result<[usize; 3]> {
    let codes = [h.mapc, h.mapr, h.maps];
    if codes == [0, 0, 0] {
        return Ok([0, 1, 2]);
    }
    let mut sorted = codes;
    sorted.sort_unstable();
    if sorted != [1, 2, 3] {
        return Err(Error::invalid(
            path,
            Some("header fields mapc, mapr, maps".to_string()),
            format!("axis order ({}, {}, {}) is not a permutation of 1, 2, 3", codes[0], codes[1], codes[2]),
            "the header is damaged; set mapc/mapr/maps to 1, 2, 3 if the data are stored x fastest",
        ));
    }
    Ok(codes.map(|c| (c - 1) as usize))
}

/// Reorder `stored` (`[sections][rows][columns]`) so that x runs fastest, then y, then z.
///
/// `axes[k]` is the spatial axis of stored dimension k (columns, rows, sections). Returns the data and
/// `[nz, ny, nx]`.
fn permute_to_xyz(stored: &[f32], stored_shape: [usize; 3], axes: [usize; 3]) -> (Vec<f32>, [usize; 3]) {
    let [ns, nr, nc] = stored_shape;
    // Spatial extents along X, Y, Z.
    let mut extent = [0usize; 3];
    extent[axes[0]] = nc;
    extent[axes[1]] = nr;
    extent[axes[2]] = ns;
    let stride_of_axis = [1, extent[0], extent[0] * extent[1]];
    let (col_stride, row_stride, sec_stride) =
        (stride_of_axis[axes[0]], stride_of_axis[axes[1]], stride_of_axis[axes[2]]);
    let mut out = vec![0.0f32; stored.len()];
    for (s, section) in stored.chunks_exact(nr * nc).enumerate() {
        for (r, row) in section.chunks_exact(nc).enumerate() {
            let base = s * sec_stride + r * row_stride;
            for (c, &v) in row.iter().enumerate() {
                out[base + c * col_stride] = v;
            }
        }
    }
    (out, [extent[2], extent[1], extent[0]])
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mrc::test_util::RawMrc;

    /// A value that names its spatial position.
    fn code(x: usize, y: usize, z: usize) -> f32 {
        (100 * x + 10 * y + z) as f32
    }

    #[test]
    fn permuted_axes_come_back_x_fastest() {
        // Columns run along Z (4), rows along X (2), sections along Y (3).
        let (nx_sp, ny_sp, nz_sp) = (2, 3, 4);
        let mut values = Vec::new();
        for s in 0..ny_sp {
            for r in 0..nx_sp {
                for c in 0..nz_sp {
                    values.push(code(r, s, c));
                }
            }
        }
        let raw = RawMrc { dims: [4, 2, 3], mapcrs: [3, 1, 2], ..RawMrc::default() };
        let dir = tempfile::tempdir().unwrap();
        let p = raw.write_f32(dir.path(), "perm.mrc", &values);
        let v = read_volume(&p).unwrap();
        assert_eq!(v.shape, [nz_sp, ny_sp, nx_sp]);
        for z in 0..nz_sp {
            for y in 0..ny_sp {
                for x in 0..nx_sp {
                    assert_eq!(v.data[(z * ny_sp + y) * nx_sp + x], code(x, y, z), "at x={x} y={y} z={z}");
                }
            }
        }
    }

    #[test]
    fn standard_order_is_unchanged() {
        let values: Vec<f32> = (0..24).map(|k| k as f32).collect();
        let raw = RawMrc { dims: [4, 3, 2], cell: [8.0, 6.0, 4.0], ..RawMrc::default() };
        let dir = tempfile::tempdir().unwrap();
        let p = raw.write_f32(dir.path(), "std.mrc", &values);
        let v = read_volume(&p).unwrap();
        assert_eq!(v.shape, [2, 3, 4]);
        assert_eq!(v.data, values);
        assert_eq!(v.voxel_size, [2.0, 2.0, 2.0]);
    }

    #[test]
    fn invalid_axis_orders_are_refused() {
        let dir = tempfile::tempdir().unwrap();
        for mapcrs in [[1, 1, 3], [0, 2, 3], [1, 2, 4]] {
            let raw = RawMrc { dims: [2, 2, 2], mapcrs, ..RawMrc::default() };
            let p = raw.write_f32(dir.path(), "bad.mrc", &[0.0; 8]);
            let e = read_volume(&p).unwrap_err();
            assert!(
                matches!(e, Error::Invalid { ref record, .. } if record.as_deref() == Some("header fields mapc, mapr, maps"))
            );
        }
    }
}
