//! Scatter plot with marginal histograms on top (x) and right (y): cryoDRGN's `z_pca_marginals.png` and
//! `umap_marginals.png` (seaborn `jointplot`).

use plotters::prelude::*;

use super::frame::{self, Axes, Frame};
use super::image::RgbImage;
use super::overlay::Overlay;
use super::scatter::{check_xy, draw_points, DEFAULT_POINT};
use crate::viz_error::{VizError, VizResult};

/// Bins of each marginal histogram.
const BINS: usize = 60;

/// Counts of `v` in `bins` equal bins over `range` (values outside or non-finite are skipped).
pub fn histogram(v: &[f32], range: std::ops::Range<f64>, bins: usize) -> Vec<u32> {
    let mut counts = vec![0u32; bins];
    let width = (range.end - range.start) / bins.max(1) as f64;
    for &x in v {
        let x = x as f64;
        if !x.is_finite() || x < range.start || x > range.end || width <= 0.0 {
            continue;
        }
        let b = (((x - range.start) / width) as usize).min(bins - 1);
        counts[b] += 1;
    }
    counts
}

/// A scatter of (`x[i]`, `y[i]`) with histograms of x above and of y to the right.
///
/// Errors: [`VizError::Shape`] when `x` and `y` differ in length.
pub fn scatter_with_marginals(x: &[f32], y: &[f32], axes: &Axes) -> VizResult<RgbImage> {
    check_xy(x, y, None)?;
    let (size, margin) = (720u32, 150u32);
    let (w, h) = (size + margin, size + margin);
    let mut img = RgbImage::new(w, h, [255; 3]);
    let xr = frame::padded_range(x.iter().map(|&v| v as f64));
    let yr = frame::padded_range(y.iter().map(|&v| v as f64));
    let main_axes = Axes { title: String::new(), ..axes.clone() };
    let fr = frame::draw_axes(&mut img, (0, margin, size, size), xr.clone(), yr.clone(), &main_axes)?;
    draw_points(&mut img, &fr, x, y, None);
    Overlay::default().draw(&mut img, &fr)?;
    let hx = histogram(x, xr, BINS);
    let hy = histogram(y, yr, BINS);
    draw_marginals(&mut img, &fr, &hx, &hy, margin as i32)?;
    if !axes.title.is_empty() {
        img.draw_text(&axes.title, (w / 2) as i32, 6, 22.0, [0; 3], super::image::Align::Center)?;
    }
    Ok(img)
}

/// Bars of the x histogram above the plotting area and of the y histogram to its right, aligned with
/// its pixel columns and rows.
fn draw_marginals(img: &mut RgbImage, fr: &Frame, hx: &[u32], hy: &[u32], margin: i32) -> VizResult<()> {
    let root = super::canvas::area(img);
    let err = |e| VizError::draw("marginal histograms", e);
    let fill = RGBColor(DEFAULT_POINT[0], DEFAULT_POINT[1], DEFAULT_POINT[2]).mix(0.75).filled();
    let edge = WHITE.stroke_width(1);
    let depth = (margin - 50) as f64;
    // Top: bars grow upwards from just above the plotting area.
    let base = fr.py.start - 6;
    let xmax = hx.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bw = (fr.px.end - fr.px.start) as f64 / hx.len().max(1) as f64;
    for (i, &c) in hx.iter().enumerate() {
        let x0 = fr.px.start + (i as f64 * bw).round() as i32;
        let x1 = fr.px.start + ((i + 1) as f64 * bw).round() as i32;
        let top = base - (c as f64 / xmax * depth).round() as i32;
        root.draw(&Rectangle::new([(x0, top), (x1, base)], fill)).map_err(err)?;
        root.draw(&Rectangle::new([(x0, top), (x1, base)], edge)).map_err(err)?;
    }
    // Right: bars grow rightwards; bin 0 (lowest y) at the bottom.
    let base = fr.px.end + 6;
    let ymax = hy.iter().copied().max().unwrap_or(0).max(1) as f64;
    let bh = (fr.py.end - fr.py.start) as f64 / hy.len().max(1) as f64;
    for (i, &c) in hy.iter().enumerate() {
        let y1 = fr.py.end - (i as f64 * bh).round() as i32;
        let y0 = fr.py.end - ((i + 1) as f64 * bh).round() as i32;
        let right = base + (c as f64 / ymax * depth).round() as i32;
        root.draw(&Rectangle::new([(base, y0), (right, y1)], fill)).map_err(err)?;
        root.draw(&Rectangle::new([(base, y0), (right, y1)], edge)).map_err(err)?;
    }
    root.present().map_err(err)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn histogram_counts_in_range_values() {
        let v = [0.0, 0.1, 0.5, 0.99, 1.0, 2.0, f32::NAN];
        assert_eq!(histogram(&v, 0.0..1.0, 2), vec![2, 3]);
    }

    #[test]
    fn marginal_bars_follow_the_data() {
        // All x near the left edge, y spread: the top histogram must be filled only on the left.
        let n = 2000;
        let x: Vec<f32> = (0..n).map(|i| if i % 10 == 0 { 1.0 } else { 0.0 }).collect();
        let y: Vec<f32> = (0..n).map(|i| i as f32 / n as f32).collect();
        let img = scatter_with_marginals(&x, &y, &Axes::new("marginals", "z1", "z2")).unwrap();
        let blue_in_row = |row: u32, cols: std::ops::Range<u32>| {
            cols.filter(|&c| {
                let p = img.pixel(c, row).unwrap();
                p[2] > 150 && p[0] < 150
            })
            .count()
        };
        // The plotting area starts near row 150 + 12; row 120 is ~35 px above the bars' base: the tall
        // left bar (90% of points) reaches it, the short right one (10%) does not.
        let left = blue_in_row(120, 0..300);
        let right = blue_in_row(120, 400..720);
        assert!(left > 5 && right == 0, "left {left}, right {right}");
    }
}
