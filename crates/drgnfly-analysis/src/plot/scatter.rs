//! Scatter plots of 2-D latent embeddings (PCA, UMAP), optionally coloured by class and annotated.
//!
//! Points are drawn straight into the pixel buffer (not as plotters elements) so 10⁶ points take
//! milliseconds. Point size and opacity shrink with N, as cryoDRGN's plots do (`s=2, alpha=.1` for large
//! data): N ≤ 2·10³ → 5 px, ≤ 2·10⁴ → 3 px, ≤ 2·10⁵ → 2 px, else 1 px; α = clamp(5·10⁴/N, 0.1, 1).
//! Non-finite points are skipped.

use super::frame::{self, Axes, Frame};
use super::image::{Align, RgbImage};
use super::overlay::Overlay;
use super::palette;
use crate::viz_error::{VizError, VizResult};

/// Colour of points without class labels (matplotlib's default blue).
pub(crate) const DEFAULT_POINT: [u8; 3] = [0x1f, 0x77, 0xb4];

/// Width reserved on the right for the class legend.
const LEGEND_WIDTH: u32 = 130;

/// Check that `x`, `y` and optional `labels` have one entry per particle.
pub(crate) fn check_xy(x: &[f32], y: &[f32], labels: Option<&[u16]>) -> VizResult<()> {
    if x.len() != y.len() {
        return Err(VizError::shape("scatter y", format!("{} values (as x)", x.len()), y.len()));
    }
    if let Some(l) = labels {
        if l.len() != x.len() {
            return Err(VizError::shape(
                "scatter labels",
                format!("{} values (one per point)", x.len()),
                l.len(),
            ));
        }
    }
    Ok(())
}

/// Point side in pixels and opacity for `n` points.
pub(crate) fn point_style(n: usize) -> (i64, f32) {
    let size = match n {
        0..=2_000 => 5,
        2_001..=20_000 => 3,
        20_001..=200_000 => 2,
        _ => 1,
    };
    (size, (5e4 / n.max(1) as f32).clamp(0.1, 1.0))
}

/// Draw the points through `frame` (clipped to the plotting area).
pub(crate) fn draw_points(img: &mut RgbImage, frame: &Frame, x: &[f32], y: &[f32], labels: Option<&[u16]>) {
    let (size, alpha) = point_style(x.len());
    let half = size / 2;
    for i in 0..x.len() {
        let (xi, yi) = (x[i], y[i]);
        if !(xi.is_finite() && yi.is_finite()) {
            continue;
        }
        let rgb = labels.map_or(DEFAULT_POINT, |l| palette::category(l[i] as usize));
        let (c, r) = frame.to_px(xi as f64, yi as f64);
        let (c, r) = (c.round() as i64, r.round() as i64);
        for dy in -half..size - half {
            for dx in -half..size - half {
                // Round dots at 5 px: skip the corners.
                if size >= 5 && dx.abs() == 2 && dy.abs() == 2 {
                    continue;
                }
                if frame.contains(c + dx, r + dy) {
                    img.blend(c + dx, r + dy, rgb, alpha);
                }
            }
        }
    }
}

/// Draw a legend "■ k (count)" for each class present, top to bottom from (`x`, `y`).
pub(crate) fn draw_legend(img: &mut RgbImage, x: i64, y: i64, labels: &[u16]) -> VizResult<()> {
    let mut counts = std::collections::BTreeMap::new();
    for &l in labels {
        *counts.entry(l).or_insert(0usize) += 1;
    }
    let row = if counts.len() > 24 { 14 } else { 20 };
    for (i, (&k, &n)) in counts.iter().enumerate() {
        let yy = y + i as i64 * row;
        if yy + row > img.height() as i64 {
            let more = counts.len() - i;
            img.draw_text(&format!("… {more} more"), x as i32, yy as i32, 12.0, [60; 3], Align::Left)?;
            break;
        }
        img.fill_rect(x, yy + 3, x + 12, yy + 15, palette::category(k as usize));
        img.draw_text(&format!("{k} ({n})"), x as i32 + 17, yy as i32 + 2, 13.0, [30; 3], Align::Left)?;
    }
    Ok(())
}

/// A scatter plot of (`x[i]`, `y[i]`), coloured by `labels` (class k → [`palette::category`]) with a
/// legend, or in one colour, with `overlay` (k-means centres, traversal paths) on top.
///
/// Errors: [`VizError::Shape`] when `y` or `labels` differ in length from `x`.
///
/// ```
/// use drgnfly_analysis::plot::{scatter, Axes, Overlay};
/// let (x, y) = (vec![0.0f32, 1.0, 2.0], vec![1.0f32, 0.0, 1.0]);
/// let img = scatter(&x, &y, Some(&[0, 1, 1]), &Overlay::default(), &Axes::new("PCA", "PC1", "PC2")).unwrap();
/// assert_eq!((img.width(), img.height()), (800 + 130, 640));
/// ```
pub fn scatter(
    x: &[f32],
    y: &[f32],
    labels: Option<&[u16]>,
    overlay: &Overlay,
    axes: &Axes,
) -> VizResult<RgbImage> {
    check_xy(x, y, labels)?;
    let (w, h) = frame::DEFAULT_SIZE;
    let legend = if labels.is_some() { LEGEND_WIDTH } else { 0 };
    let mut img = RgbImage::new(w + legend, h, [255; 3]);
    let xr = frame::padded_range(x.iter().map(|&v| v as f64).chain(overlay_xs(overlay)));
    let yr = frame::padded_range(y.iter().map(|&v| v as f64).chain(overlay_ys(overlay)));
    let fr = frame::draw_axes(&mut img, (0, 0, w, h), xr, yr, axes)?;
    draw_points(&mut img, &fr, x, y, labels);
    overlay.draw(&mut img, &fr)?;
    if let Some(l) = labels {
        draw_legend(&mut img, w as i64, fr.py.start as i64, l)?;
    }
    Ok(img)
}

/// x coordinates of the overlay, so the axes include them.
pub(crate) fn overlay_xs(o: &Overlay) -> impl Iterator<Item = f64> + '_ {
    o.markers.iter().map(|m| m.x as f64).chain(o.paths.iter().flatten().map(|p| p[0] as f64))
}

/// y coordinates of the overlay.
pub(crate) fn overlay_ys(o: &Overlay) -> impl Iterator<Item = f64> + '_ {
    o.markers.iter().map(|m| m.y as f64).chain(o.paths.iter().flatten().map(|p| p[1] as f64))
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Pixels of exactly this colour.
    fn count(img: &RgbImage, rgb: [u8; 3]) -> usize {
        img.as_bytes().chunks_exact(3).filter(|p| *p == rgb).count()
    }

    #[test]
    fn classes_get_their_colours_and_land_in_the_right_quadrant() {
        // Class 0 bottom-left, class 1 top-right, 500 points each (5 px dots, opaque).
        let mut x = Vec::new();
        let mut y = Vec::new();
        let mut l = Vec::new();
        for i in 0..1000 {
            let t = (i % 500) as f32 / 500.0;
            let (cx, cy) = if i < 500 { (-1.0, -1.0) } else { (1.0, 1.0) };
            x.push(cx + 0.3 * (t * 37.0).sin());
            y.push(cy + 0.3 * (t * 53.0).cos());
            l.push(u16::from(i >= 500));
        }
        let img = scatter(&x, &y, Some(&l), &Overlay::default(), &Axes::new("t", "a", "b")).unwrap();
        let (c0, c1) = (palette::category(0), palette::category(1));
        assert!(count(&img, c0) > 2000 && count(&img, c1) > 2000);
        // Centroid of each colour: class 0 left and low (large row), class 1 right and high.
        let centroid = |rgb| {
            let (mut sx, mut sy, mut n) = (0.0, 0.0, 0.0);
            for yy in 0..img.height() {
                for xx in 0..800 {
                    if img.pixel(xx, yy) == Some(rgb) {
                        (sx, sy, n) = (sx + xx as f64, sy + yy as f64, n + 1.0);
                    }
                }
            }
            (sx / n, sy / n)
        };
        let (a, b) = (centroid(c0), centroid(c1));
        assert!(a.0 < 350.0 && a.1 > 350.0, "class 0 at {a:?}");
        assert!(b.0 > 450.0 && b.1 < 300.0, "class 1 at {b:?}");
    }

    #[test]
    fn mismatched_lengths_are_errors_and_nan_points_are_skipped() {
        let e = scatter(&[0.0, 1.0], &[0.0], None, &Overlay::default(), &Axes::default());
        assert!(matches!(e, Err(VizError::Shape { .. })));
        let e = scatter(&[0.0], &[0.0], Some(&[0, 1]), &Overlay::default(), &Axes::default());
        assert!(matches!(e, Err(VizError::Shape { .. })));
        let img =
            scatter(&[f32::NAN, 0.0], &[0.0, f32::INFINITY], None, &Overlay::default(), &Axes::default())
                .unwrap();
        assert_eq!(count(&img, DEFAULT_POINT), 0);
    }

    #[test]
    fn centres_are_drawn_with_chimerax_colours() {
        let x: Vec<f32> = (0..100).map(|i| i as f32).collect();
        let over = Overlay::centers(&[[10.0, 10.0], [90.0, 90.0]]);
        let img = scatter(&x, &x, None, &over, &Axes::default()).unwrap();
        assert!(count(&img, palette::chimerax(1)) > 40, "centre 1 marker missing");
    }
}
