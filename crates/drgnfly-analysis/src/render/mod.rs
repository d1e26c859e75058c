//! Volume pictures without ChimeraX: grey-scale slices and projections, and shaded isosurface renders
//! (marching cubes + a software rasteriser), alone or as captioned contact sheets.
//!
//! Maps are `[z][y][x]` f32 arrays with x fastest ([`VolumeRef`]). Orientation follows ChimeraX's
//! default view (x right, y up, viewer at +z) for the XY plane and the front view; see
//! [`slices`](slices_and_projections) and [`View`] for the others.
//!
//! ```
//! use drgnfly_analysis::render::{render_isosurface, RenderOptions, VolumeRef};
//! let d = 16;
//! let map: Vec<f32> = (0..d * d * d)
//!     .map(|i| {
//!         let (z, y, x) = ((i / (d * d)) as f32 - 8.0, ((i / d) % d) as f32 - 8.0, (i % d) as f32 - 8.0);
//!         (-(x * x + y * y + z * z) / 10.0).exp()
//!     })
//!     .collect();
//! let img = render_isosurface(&VolumeRef::cube(&map, d).unwrap(), &RenderOptions::default()).unwrap();
//! assert_eq!((img.width(), img.height()), (256, 256));
//! ```

mod isolevel;
mod marching_cubes;
mod mc_table;
mod mesh;
mod raster;
mod sheet;
mod slices;
mod volume;

pub use isolevel::IsoLevel;
pub use marching_cubes::marching_cubes;
pub use mesh::Mesh;
pub use raster::{render_mesh, View};
pub use sheet::{contact_sheet, render_tiles, Tile};
pub use slices::{central_slice, projection, slices_and_projections, Axis, Plane};
pub use volume::VolumeRef;

use crate::plot::{palette, RgbImage};
use crate::viz_error::VizResult;

/// How [`render_isosurface`] draws a map.
#[derive(Clone, Debug, PartialEq)]
pub struct RenderOptions {
    /// Threshold rule (default: 80% of the mass above the solvent level, see [`IsoLevel`]).
    pub level: IsoLevel,
    /// Side of each view's picture in pixels (default 256).
    pub size: u32,
    /// Views, drawn side by side (default: the three-quarter view only).
    pub views: Vec<View>,
    /// Surface colour (default: ChimeraX's first map colour, light grey).
    pub color: [u8; 3],
}

impl Default for RenderOptions {
    fn default() -> Self {
        Self {
            level: IsoLevel::default(),
            size: 256,
            views: vec![View::ThreeQuarter],
            color: palette::chimerax(0),
        }
    }
}

/// The isosurface of `vol` at `options.level`, one `size × size` picture per view, side by side.
///
/// Errors: [`crate::VizError::Invalid`] when the level cannot be resolved.
pub fn render_isosurface(vol: &VolumeRef, options: &RenderOptions) -> VizResult<RgbImage> {
    let level = options.level.resolve(vol)?;
    let mesh = marching_cubes(vol, level);
    let views = if options.views.is_empty() { &[View::ThreeQuarter][..] } else { &options.views[..] };
    let mut out = RgbImage::new(options.size * views.len() as u32, options.size, raster::BACKGROUND);
    for (k, &view) in views.iter().enumerate() {
        let img = render_mesh(&mesh, vol.shape(), view, options.size, options.color);
        out.blit(&img, (k as u32 * options.size) as i64, 0);
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sphere(d: usize, c: [f32; 3], r0: f32) -> Vec<f32> {
        (0..d * d * d)
            .map(|i| {
                let (z, y, x) = ((i / (d * d)) as f32, ((i / d) % d) as f32, (i % d) as f32);
                r0 - ((x - c[0]).powi(2) + (y - c[1]).powi(2) + (z - c[2]).powi(2)).sqrt()
            })
            .collect()
    }

    fn covered(img: &RgbImage) -> Vec<bool> {
        img.as_bytes().chunks_exact(3).map(|p| p.iter().any(|&c| c < 250)).collect()
    }

    /// 4-connected components of covered pixels.
    fn components(mask: &[bool], w: usize) -> usize {
        let mut seen = vec![false; mask.len()];
        let mut n = 0;
        for s in 0..mask.len() {
            if !mask[s] || seen[s] {
                continue;
            }
            n += 1;
            let mut stack = vec![s];
            seen[s] = true;
            while let Some(i) = stack.pop() {
                let (x, y) = (i % w, i / w);
                let nb =
                    [(x > 0).then(|| i - 1), (x + 1 < w).then(|| i + 1), (y > 0).then(|| i - w), Some(i + w)];
                for j in nb.into_iter().flatten() {
                    if j < mask.len() && mask[j] && !seen[j] {
                        seen[j] = true;
                        stack.push(j);
                    }
                }
            }
        }
        n
    }

    #[test]
    fn sphere_silhouette_has_the_analytic_area() {
        let (d, r) = (48, 10.0f32);
        let data = sphere(d, [24.0, 24.0, 24.0], r);
        let vol = VolumeRef::cube(&data, d).unwrap();
        for view in [View::Front, View::ThreeQuarter] {
            let opts = RenderOptions {
                level: IsoLevel::Value(0.0),
                size: 256,
                views: vec![view],
                ..Default::default()
            };
            let img = render_isosurface(&vol, &opts).unwrap();
            let area = covered(&img).iter().filter(|&&c| c).count() as f64;
            // Scale: 48 voxels span 95% of 256 px.
            let px_per_voxel = 0.95 * 256.0 / 48.0;
            let expected = std::f64::consts::PI * (r as f64 * px_per_voxel).powi(2);
            assert!((area / expected - 1.0).abs() < 0.04, "{view:?}: {area} px vs {expected}");
        }
    }

    #[test]
    fn two_blobs_show_as_two_components_in_the_right_places() {
        let d = 40;
        let a = sphere(d, [10.0, 20.0, 20.0], 5.0);
        let b = sphere(d, [30.0, 20.0, 20.0], 7.0);
        let data: Vec<f32> = a.iter().zip(&b).map(|(x, y)| x.max(*y)).collect();
        let vol = VolumeRef::cube(&data, d).unwrap();
        let opts = RenderOptions {
            level: IsoLevel::Value(0.0),
            size: 200,
            views: vec![View::Front, View::Top],
            ..Default::default()
        };
        let img = render_isosurface(&vol, &opts).unwrap();
        assert_eq!((img.width(), img.height()), (400, 200));
        let mask = covered(&img);
        assert_eq!(components(&mask, 400), 4, "two blobs in each of two views");
        // Front view: the larger blob (at +x) is on the right.
        let left: usize =
            (0..200).flat_map(|y| (0..100).map(move |x| y * 400 + x)).filter(|&i| mask[i]).count();
        let right: usize =
            (0..200).flat_map(|y| (100..200).map(move |x| y * 400 + x)).filter(|&i| mask[i]).count();
        assert!(right > left * 3 / 2, "left {left}, right {right}");
    }

    #[test]
    fn front_view_has_y_up() {
        // A blob at +y appears in the top half of the front view.
        let d = 32;
        let data = sphere(d, [16.0, 26.0, 16.0], 4.0);
        let opts = RenderOptions {
            level: IsoLevel::Value(0.0),
            size: 128,
            views: vec![View::Front],
            ..Default::default()
        };
        let img = render_isosurface(&VolumeRef::cube(&data, d).unwrap(), &opts).unwrap();
        let mask = covered(&img);
        let top = mask[..128 * 64].iter().filter(|&&c| c).count();
        let bottom = mask[128 * 64..].iter().filter(|&&c| c).count();
        assert!(top > 100 && bottom == 0, "top {top}, bottom {bottom}");
    }
}
