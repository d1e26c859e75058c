//! Contact sheets: many renders in one captioned grid (per k-means class `vol_001 … vol_020`, per PC
//! traversal), rendered in parallel.

use rayon::prelude::*;

use super::{render_isosurface, RenderOptions, VolumeRef};
use crate::plot::{Align, RgbImage};
use crate::viz_error::VizResult;

/// One picture of a contact sheet and the caption under it.
#[derive(Clone, Debug, PartialEq)]
pub struct Tile {
    /// The picture.
    pub image: RgbImage,
    /// Caption, e.g. `vol_001`.
    pub caption: String,
}

/// Height of the caption strip under each tile, and the gap between tiles.
const CAPTION: i64 = 24;
const GAP: i64 = 8;

/// Arrange `tiles` row by row, `columns` per row, each captioned; an optional `title` on top. Tiles of
/// different sizes are centred in cells of the largest size.
pub fn contact_sheet(tiles: &[Tile], columns: usize, title: Option<&str>) -> VizResult<RgbImage> {
    let columns = columns.clamp(1, tiles.len().max(1));
    let rows = tiles.len().div_ceil(columns);
    let cw = tiles.iter().map(|t| t.image.width()).max().unwrap_or(0) as i64;
    let ch = tiles.iter().map(|t| t.image.height()).max().unwrap_or(0) as i64;
    let top = if title.is_some() { 36 } else { 0 };
    let width = columns as i64 * (cw + GAP) + GAP;
    let height = top + rows as i64 * (ch + CAPTION + GAP) + GAP;
    let mut sheet = RgbImage::new(width as u32, height as u32, [255; 3]);
    if let Some(t) = title {
        sheet.draw_text(t, (width / 2) as i32, 8, 20.0, [0; 3], Align::Center)?;
    }
    for (i, tile) in tiles.iter().enumerate() {
        let (r, c) = ((i / columns) as i64, (i % columns) as i64);
        let x0 = GAP + c * (cw + GAP);
        let y0 = top + GAP + r * (ch + CAPTION + GAP);
        let (tw, th) = (tile.image.width() as i64, tile.image.height() as i64);
        sheet.blit(&tile.image, x0 + (cw - tw) / 2, y0 + (ch - th) / 2);
        sheet.draw_text(
            &tile.caption,
            (x0 + cw / 2) as i32,
            (y0 + ch + 4) as i32,
            15.0,
            [20; 3],
            Align::Center,
        )?;
    }
    Ok(sheet)
}

/// Render every map with `options` (colour `colors[i]` when given, e.g. ChimeraX's per-class colours),
/// in parallel on the current rayon pool, captioned `captions[i]`.
///
/// Errors: the first error of any map (invalid level), or [`crate::VizError::Shape`] when `captions` or
/// `colors` do not have one entry per map.
pub fn render_tiles(
    volumes: &[VolumeRef],
    captions: &[String],
    colors: Option<&[[u8; 3]]>,
    options: &RenderOptions,
) -> VizResult<Vec<Tile>> {
    if captions.len() != volumes.len() {
        return Err(crate::VizError::shape("contact sheet captions", volumes.len(), captions.len()));
    }
    if let Some(c) = colors {
        if c.len() != volumes.len() {
            return Err(crate::VizError::shape("contact sheet colours", volumes.len(), c.len()));
        }
    }
    volumes
        .par_iter()
        .enumerate()
        .map(|(i, vol)| {
            let opts = RenderOptions { color: colors.map_or(options.color, |c| c[i]), ..options.clone() };
            Ok(Tile { image: render_isosurface(vol, &opts)?, caption: captions[i].clone() })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::render::View;

    fn blob(d: usize, c: f32) -> Vec<f32> {
        (0..d * d * d)
            .map(|i| {
                let (z, y, x) = ((i / (d * d)) as f32, ((i / d) % d) as f32, (i % d) as f32);
                (-((x - c).powi(2) + (y - 8.0).powi(2) + (z - 8.0).powi(2)) / 8.0).exp()
            })
            .collect()
    }

    #[test]
    fn sheet_has_one_captioned_cell_per_volume_in_order() {
        let d = 16;
        let maps: Vec<Vec<f32>> = (0..5).map(|k| blob(d, 4.0 + 2.0 * k as f32)).collect();
        let vols: Vec<VolumeRef> = maps.iter().map(|m| VolumeRef::cube(m, d).unwrap()).collect();
        let captions: Vec<String> = (1..=5).map(|k| format!("vol_{k:03}")).collect();
        let colors: Vec<[u8; 3]> = (0..5).map(crate::plot::palette::chimerax).collect();
        let opts = RenderOptions { size: 64, views: vec![View::Front], ..RenderOptions::default() };
        let tiles = render_tiles(&vols, &captions, Some(&colors), &opts).unwrap();
        assert_eq!(tiles.iter().map(|t| t.caption.as_str()).collect::<Vec<_>>(), captions);
        let sheet = contact_sheet(&tiles, 3, Some("k-means")).unwrap();
        // 3 columns × 2 rows of 64 px cells.
        assert_eq!(sheet.width() as i64, 3 * (64 + GAP) + GAP);
        assert_eq!(sheet.height() as i64, 36 + 2 * (64 + CAPTION + GAP) + GAP);
        // The blob moves right from tile to tile: its centroid column inside each cell grows.
        let centroid_x = |img: &RgbImage| {
            let (mut s, mut n) = (0.0, 0.0);
            for y in 0..img.height() {
                for x in 0..img.width() {
                    if img.pixel(x, y).is_some_and(|p| p != [255; 3]) {
                        (s, n) = (s + x as f64, n + 1.0);
                    }
                }
            }
            s / n
        };
        let xs: Vec<f64> = tiles.iter().map(|t| centroid_x(&t.image)).collect();
        assert!(xs.windows(2).all(|w| w[1] > w[0] + 3.0), "centroids {xs:?}");
        assert!(matches!(
            render_tiles(&vols, &captions[..2], None, &opts),
            Err(crate::VizError::Shape { .. })
        ));
    }
}
