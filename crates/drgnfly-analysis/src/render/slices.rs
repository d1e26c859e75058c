//! Central slices and axis projections of a map, as grey-scale pictures: the quick look at a volume
//! that needs no 3-D viewer (cryoDRGN's `mask_slices.png` shows slices only).
//!
//! # Orientation
//! Each plane is shown with its first axis to the right and its second up, so the XY plane is exactly
//! ChimeraX's default view (x right, y up, viewer at +z). Right × up points at the viewer, so the
//! planes are seen from +z, −y and +x:
//!
//! | plane | perpendicular to | right | up | seen from |
//! |---|---|---|---|---|
//! | XY | z | +x | +y | +z |
//! | XZ | y | +x | +z | −y |
//! | YZ | x | +y | +z | +x |
//!
//! Grey levels: each plane is
//! stretched from its minimum (black) to its maximum (white), so high density is white.

use super::volume::VolumeRef;
use crate::plot::{Align, RgbImage};
use crate::viz_error::VizResult;

/// The axis a slice or projection is perpendicular to.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Axis {
    /// Perpendicular to x: the YZ plane.
    X,
    /// Perpendicular to y: the XZ plane.
    Y,
    /// Perpendicular to z: the XY plane.
    Z,
}

/// A 2-D array in display order: row 0 at the top, column 0 at the left (see the module's table).
#[derive(Clone, Debug, PartialEq)]
pub struct Plane {
    /// Columns.
    pub width: usize,
    /// Rows.
    pub height: usize,
    /// `height × width` values, row-major.
    pub values: Vec<f32>,
}

/// (right, up) sizes and the map index of display pixel (col, row) at depth `k` along `axis`.
fn layout(shape: [usize; 3], axis: Axis) -> (usize, usize, usize) {
    let [nz, ny, nx] = shape;
    match axis {
        Axis::Z => (nx, ny, nz),
        Axis::Y => (nx, nz, ny),
        Axis::X => (ny, nz, nx),
    }
}

fn voxel(vol: &VolumeRef, axis: Axis, col: usize, row: usize, k: usize, height: usize) -> f32 {
    let up = height - 1 - row;
    match axis {
        Axis::Z => vol.at(col, up, k),
        Axis::Y => vol.at(col, k, up),
        Axis::X => vol.at(k, col, up),
    }
}

/// The slice through the box centre (index n/2) perpendicular to `axis`.
pub fn central_slice(vol: &VolumeRef, axis: Axis) -> Plane {
    let (width, height, depth) = layout(vol.shape(), axis);
    let k = depth / 2;
    let values = (0..height)
        .flat_map(|row| (0..width).map(move |col| (row, col)))
        .map(|(row, col)| voxel(vol, axis, col, row, k, height))
        .collect();
    Plane { width, height, values }
}

/// The sum of the map along `axis` (a noise-free projection image).
pub fn projection(vol: &VolumeRef, axis: Axis) -> Plane {
    let (width, height, depth) = layout(vol.shape(), axis);
    let mut values = vec![0f32; width * height];
    for row in 0..height {
        for col in 0..width {
            values[row * width + col] =
                (0..depth).map(|k| voxel(vol, axis, col, row, k, height) as f64).sum::<f64>() as f32;
        }
    }
    Plane { width, height, values }
}

impl Plane {
    /// Grey-scale picture, min → black, max → white, each pixel repeated `zoom × zoom` times.
    pub fn to_image(&self, zoom: usize) -> RgbImage {
        let zoom = zoom.max(1);
        let (lo, hi) =
            self.values.iter().fold((f32::INFINITY, f32::NEG_INFINITY), |(l, h), &v| (l.min(v), h.max(v)));
        let span = if hi > lo { hi - lo } else { 1.0 };
        let mut img = RgbImage::new((self.width * zoom) as u32, (self.height * zoom) as u32, [0; 3]);
        for row in 0..self.height {
            for col in 0..self.width {
                let g = (((self.values[row * self.width + col] - lo) / span) * 255.0).round() as u8;
                let (x, y) = ((col * zoom) as i64, (row * zoom) as i64);
                img.fill_rect(x, y, x + zoom as i64, y + zoom as i64, [g; 3]);
            }
        }
        img
    }
}

/// One picture with the three central slices (top row: XY, XZ, YZ) and the three projections (bottom
/// row, same planes), captioned, each plane enlarged by an integer factor to about 192 px.
pub fn slices_and_projections(vol: &VolumeRef) -> VizResult<RgbImage> {
    let longest = vol.shape().into_iter().max().unwrap_or(1);
    let zoom = 192usize.div_ceil(longest).max(1);
    let cell = (longest * zoom) as i64;
    let (pad, caption) = (12i64, 22i64);
    let width = 3 * cell + 4 * pad;
    let height = 2 * (cell + caption) + 3 * pad;
    let mut img = RgbImage::new(width as u32, height as u32, [255; 3]);
    let planes = [(Axis::Z, "XY"), (Axis::Y, "XZ"), (Axis::X, "YZ")];
    let [nz, ny, nx] = vol.shape();
    for (row, project) in [(0i64, false), (1, true)] {
        for (col, &(axis, name)) in planes.iter().enumerate() {
            let plane = if project { projection(vol, axis) } else { central_slice(vol, axis) };
            let tile = plane.to_image(zoom);
            let x0 = pad + col as i64 * (cell + pad);
            let y0 = pad + row * (cell + caption + pad);
            let text = match (project, axis) {
                (false, Axis::Z) => format!("{name} slice z = {}", nz / 2),
                (false, Axis::Y) => format!("{name} slice y = {}", ny / 2),
                (false, Axis::X) => format!("{name} slice x = {}", nx / 2),
                (true, _) => format!("{name} projection"),
            };
            img.draw_text(&text, (x0 + cell / 2) as i32, y0 as i32, 14.0, [0; 3], Align::Center)?;
            img.blit(
                &tile,
                x0 + (cell - tile.width() as i64) / 2,
                y0 + caption + (cell - tile.height() as i64) / 2,
            );
        }
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A map that is 0 except for three marked voxels: +x side (value 1), +y side (2), +z side (3).
    fn marked(d: usize) -> Vec<f32> {
        let mut v = vec![0f32; d * d * d];
        let c = d / 2;
        let idx = |x: usize, y: usize, z: usize| (z * d + y) * d + x;
        v[idx(d - 2, c, c)] = 1.0;
        v[idx(c, d - 2, c)] = 2.0;
        v[idx(c, c, d - 2)] = 3.0;
        v
    }

    /// (col, row) of the maximum of a plane.
    fn argmax(p: &Plane) -> (usize, usize) {
        let i = p.values.iter().enumerate().max_by(|a, b| a.1.total_cmp(b.1)).map(|(i, _)| i).unwrap_or(0);
        (i % p.width, i / p.width)
    }

    #[test]
    fn planes_are_oriented_as_documented() {
        let d = 16;
        let data = marked(d);
        let vol = VolumeRef::cube(&data, d).unwrap();
        let c = d / 2;
        // XY slice at z = c holds the +x mark (right) and the +y mark (up = small row).
        let xy = central_slice(&vol, Axis::Z);
        assert_eq!(xy.values[(d - 1 - c) * d + (d - 2)], 1.0, "+x is right");
        assert_eq!(xy.values[d + c], 2.0, "+y is up");
        // XZ slice at y = c: +x right, +z up.
        let xz = central_slice(&vol, Axis::Y);
        assert_eq!(xz.values[(d - 1 - c) * d + (d - 2)], 1.0);
        assert_eq!(xz.values[d + c], 3.0, "+z is up in XZ");
        // YZ slice at x = c: +y right, +z up.
        let yz = central_slice(&vol, Axis::X);
        assert_eq!(yz.values[(d - 1 - c) * d + (d - 2)], 2.0, "+y is right in YZ");
        assert_eq!(yz.values[d + c], 3.0);
        // Projections: the brightest mark (3, at +z) lands on the centre along z and at the top
        // (row 1) of the XZ and YZ projections.
        assert_eq!(argmax(&projection(&vol, Axis::Z)), (c, d - 1 - c));
        assert_eq!(argmax(&projection(&vol, Axis::Y)), (c, 1));
        assert_eq!(argmax(&projection(&vol, Axis::X)), (c, 1));
    }

    #[test]
    fn panel_shows_white_mark_on_black() {
        let d = 16;
        let data = marked(d);
        let img = slices_and_projections(&VolumeRef::cube(&data, d).unwrap()).unwrap();
        let white = img.as_bytes().chunks_exact(3).filter(|p| *p == [255, 255, 255]).count();
        let black = img.as_bytes().chunks_exact(3).filter(|p| *p == [0, 0, 0]).count();
        // Six 192 px tiles, nearly all black, with 12 px white marks.
        assert!(black > 6 * 192 * 192 * 9 / 10, "black {black}");
        assert!(white > 6 * 12 * 12, "white {white}");
    }
}
