//! Hexagonal 2-D histogram ("hexbin") with a logarithmic colour scale: the density view of a latent
//! embedding that stays readable at 10⁶ points, where a scatter saturates.
//!
//! Binning is O(N) and happens in pixel space, so hexagons are regular on screen whatever the axis
//! ranges. The hexagon centres form two rectangular lattices: A at (i·s, j·s√3) and B offset by
//! (s/2, s√3/2); a point belongs to the nearer of its nearest A and B centres, which is exactly its
//! hexagon (pointy-top, circumradius s/√3). Colour: viridis at ln(count)/ln(max count); empty cells
//! stay white.

use plotters::prelude::*;

use super::frame::{self, Axes, Frame};
use super::image::{Align, RgbImage};
use super::overlay::Overlay;
use super::palette;
use super::scatter::{check_xy, overlay_xs, overlay_ys};
use crate::viz_error::{VizError, VizResult};

/// Hexagons across the plotting area (matplotlib's `gridsize` is 100; 50 reads better at 800 px).
const HEXES_ACROSS: f64 = 50.0;

/// Width reserved on the right for the colour bar.
const COLORBAR_WIDTH: u32 = 90;

/// Counts per hexagon, in pixel space.
#[derive(Clone, Debug, PartialEq)]
pub struct HexCounts {
    /// Centre (column, row) in pixels of every non-empty hexagon.
    pub centers: Vec<(f64, f64)>,
    /// Number of points in each hexagon (parallel to `centers`, all ≥ 1).
    pub counts: Vec<u32>,
    /// Lattice spacing s in pixels (distance between neighbouring centres).
    pub spacing: f64,
}

/// Bin pixel positions `(col, row)` of the points into hexagons of spacing `s`, with the lattice origin
/// at `origin`. Non-finite positions are skipped.
pub fn bin_hexagons(points: impl Iterator<Item = (f64, f64)>, origin: (f64, f64), s: f64) -> HexCounts {
    let sy = s * 3f64.sqrt();
    let mut bins: std::collections::HashMap<(i64, i64), u32> = std::collections::HashMap::new();
    for (c, r) in points {
        if !(c.is_finite() && r.is_finite()) {
            continue;
        }
        let (u, v) = ((c - origin.0) / s, (r - origin.1) / sy);
        // Nearest centre of lattice A (integer i, j) and of lattice B (half-integer i, j).
        let (ia, ja) = (u.round(), v.round());
        let (ib, jb) = ((u - 0.5).round() + 0.5, (v - 0.5).round() + 0.5);
        let da = (u - ia).powi(2) + 3.0 * (v - ja).powi(2);
        let db = (u - ib).powi(2) + 3.0 * (v - jb).powi(2);
        // Keys in half-units: A cells have even coordinates, B cells odd ones.
        let key =
            if da <= db { (2 * ia as i64, 2 * ja as i64) } else { ((2.0 * ib) as i64, (2.0 * jb) as i64) };
        *bins.entry(key).or_insert(0) += 1;
    }
    let mut cells: Vec<_> = bins.into_iter().collect();
    cells.sort_unstable();
    let centers = cells
        .iter()
        .map(|&((i2, j2), _)| (origin.0 + i2 as f64 * s / 2.0, origin.1 + j2 as f64 * sy / 2.0))
        .collect();
    HexCounts { centers, counts: cells.iter().map(|c| c.1).collect(), spacing: s }
}

/// Colour of a hexagon holding `count` points when the fullest holds `max`: viridis on a log scale.
fn count_color(count: u32, max: u32) -> [u8; 3] {
    if max <= 1 {
        return palette::viridis(1.0);
    }
    palette::viridis((count as f64).ln() / (max as f64).ln())
}

/// A hexbin density plot of (`x[i]`, `y[i]`) with a log-scale colour bar and `overlay` on top
/// (cryoDRGN's `z_pca_hexbin.png`, `umap_hexbin.png`, `kmeans20/z_pca_hex.png`).
///
/// Errors: [`VizError::Shape`] when `x` and `y` differ in length.
pub fn hexbin(x: &[f32], y: &[f32], overlay: &Overlay, axes: &Axes) -> VizResult<RgbImage> {
    check_xy(x, y, None)?;
    let (w, h) = frame::DEFAULT_SIZE;
    let mut img = RgbImage::new(w + COLORBAR_WIDTH, h, [255; 3]);
    let xr = frame::padded_range(x.iter().map(|&v| v as f64).chain(overlay_xs(overlay)));
    let yr = frame::padded_range(y.iter().map(|&v| v as f64).chain(overlay_ys(overlay)));
    let fr = frame::draw_axes(&mut img, (0, 0, w, h), xr, yr, axes)?;
    let s = (fr.px.end - fr.px.start) as f64 / HEXES_ACROSS;
    let origin = (fr.px.start as f64, fr.py.start as f64);
    let bins = bin_hexagons(x.iter().zip(y).map(|(&a, &b)| fr.to_px(a as f64, b as f64)), origin, s);
    draw_hexagons(&mut img, &fr, &bins)?;
    overlay.draw(&mut img, &fr)?;
    let max = bins.counts.iter().copied().max().unwrap_or(0);
    draw_colorbar(&mut img, w as i64 + 8, &fr, max)?;
    Ok(img)
}

/// Fill each non-empty hexagon with its count's colour.
fn draw_hexagons(img: &mut RgbImage, fr: &Frame, bins: &HexCounts) -> VizResult<()> {
    let max = bins.counts.iter().copied().max().unwrap_or(0);
    // Circumradius s/√3, 3% larger so anti-aliased edges of neighbours leave no white seams.
    let radius = 1.03 * bins.spacing / 3f64.sqrt();
    let root = super::canvas::area(img);
    let plot = root.shrink(
        (fr.px.start as u32, fr.py.start as u32),
        ((fr.px.end - fr.px.start) as u32, (fr.py.end - fr.py.start) as u32),
    );
    let err = |e| VizError::draw("hexbin", e);
    for (&(cx, cy), &n) in bins.centers.iter().zip(&bins.counts) {
        let corners: Vec<(i32, i32)> = (0..6)
            .map(|k| {
                let a = std::f64::consts::FRAC_PI_2 + k as f64 * std::f64::consts::FRAC_PI_3;
                let px = cx + radius * a.cos() - fr.px.start as f64;
                let py = cy + radius * a.sin() - fr.py.start as f64;
                (px.round() as i32, py.round() as i32)
            })
            .collect();
        let c = count_color(n, max);
        plot.draw(&Polygon::new(corners, RGBColor(c[0], c[1], c[2]).filled())).map_err(err)?;
    }
    plot.present().map_err(err)
}

/// A vertical colour bar at column `x0` beside the plotting area, labelled at powers of ten.
fn draw_colorbar(img: &mut RgbImage, x0: i64, fr: &Frame, max: u32) -> VizResult<()> {
    let (top, bottom) = (fr.py.start as i64, fr.py.end as i64 - 1);
    let span = (bottom - top).max(1) as f64;
    for row in top..=bottom {
        let t = (bottom - row) as f64 / span;
        img.fill_rect(x0, row, x0 + 16, row + 1, palette::viridis(t));
    }
    let lmax = (max.max(1) as f64).ln();
    let mut decade = 1u64;
    while decade <= max as u64 {
        let t = if lmax > 0.0 { (decade as f64).ln() / lmax } else { 1.0 };
        let row = bottom - (t * span).round() as i64;
        img.fill_rect(x0 + 16, row, x0 + 20, row + 1, [0; 3]);
        img.draw_text(&decade.to_string(), x0 as i32 + 23, row as i32 - 7, 13.0, [0; 3], Align::Left)?;
        decade *= 10;
    }
    img.draw_text("count", x0 as i32, top as i32 - 22, 13.0, [0; 3], Align::Left)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_point_lands_in_the_hexagon_of_its_nearest_centre() {
        // Deterministic pseudo-random points; compare the lattice trick with brute force.
        let mut state = 12345u64;
        let mut next = || {
            state = state.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
            (state >> 11) as f64 / (1u64 << 53) as f64 * 200.0
        };
        let s = 10.0;
        for _ in 0..2000 {
            let p = (next(), next());
            let bins = bin_hexagons(std::iter::once(p), (3.0, 7.0), s);
            assert_eq!(bins.counts, vec![1]);
            let got = bins.centers[0];
            let d_got = (got.0 - p.0).hypot(got.1 - p.1);
            // Brute force over centres near p.
            let sy = s * 3f64.sqrt();
            let mut best = f64::INFINITY;
            for i in -30..30 {
                for j in -30..30 {
                    for off in [0.0, 0.5] {
                        let c = (3.0 + (i as f64 + off) * s, 7.0 + (j as f64 + off) * sy);
                        best = best.min((c.0 - p.0).hypot(c.1 - p.1));
                    }
                }
            }
            assert!((d_got - best).abs() < 1e-9, "point {p:?}: got {d_got}, nearest {best}");
            assert!(d_got <= s / 3f64.sqrt() + 1e-9);
        }
    }

    #[test]
    fn a_million_points_are_all_counted() {
        let n = 1_000_000;
        let x: Vec<f32> = (0..n).map(|i| ((i as f64 * 0.618_034).fract() * 4.0 - 2.0) as f32).collect();
        let y: Vec<f32> = (0..n).map(|i| (i as f64 * 0.414_213_5).fract().powi(2) as f32).collect();
        let t = std::time::Instant::now();
        let img = hexbin(&x, &y, &Overlay::default(), &Axes::new("density", "PC1", "PC2")).unwrap();
        eprintln!("hexbin of 10^6 points: {:?}", t.elapsed());
        // Re-bin to check the totals the picture was drawn from.
        let fr = Frame { x: -2.0..2.0, y: 0.0..1.0, px: 0..700, py: 0..560 };
        let bins =
            bin_hexagons(x.iter().zip(&y).map(|(&a, &b)| fr.to_px(a as f64, b as f64)), (0.0, 0.0), 14.0);
        assert_eq!(bins.counts.iter().map(|&c| c as usize).sum::<usize>(), n);
        // The fullest bins (bottom rows: y = u² piles up near 0) are drawn yellow-ish.
        let yellow = img.as_bytes().chunks_exact(3).filter(|p| p[0] > 180 && p[1] > 200 && p[2] < 90).count();
        assert!(yellow > 500, "no high-density hexagons drawn ({yellow} px)");
    }
}
