//! Axes drawn by plotters, plus the data → pixel map that fast plots use to draw their points
//! themselves (plotters' per-element path is too slow for 10⁶ points).

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::font;
use super::image::RgbImage;
use crate::viz_error::{VizError, VizResult};

/// Title and axis labels of a plot.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub struct Axes {
    /// Text above the plot.
    pub title: String,
    /// Label of the horizontal axis.
    pub x_label: String,
    /// Label of the vertical axis.
    pub y_label: String,
}

impl Axes {
    /// Axes with a title and both labels.
    pub fn new(title: impl Into<String>, x_label: impl Into<String>, y_label: impl Into<String>) -> Self {
        Self { title: title.into(), x_label: x_label.into(), y_label: y_label.into() }
    }
}

/// Default plot size in pixels (close to matplotlib's 6.4 × 4.8 in at 100 dpi, a bit larger to be
/// readable in a report).
pub const DEFAULT_SIZE: (u32, u32) = (800, 640);

/// The pixel rectangle of a chart's plotting area and the data ranges it shows.
#[derive(Clone, Debug, PartialEq)]
pub(crate) struct Frame {
    pub x: Range<f64>,
    pub y: Range<f64>,
    /// Pixel columns of the plotting area (absolute in the image).
    pub px: Range<i32>,
    /// Pixel rows of the plotting area (absolute; the top row shows `y.end`).
    pub py: Range<i32>,
}

impl Frame {
    /// Pixel position (column, row; fractional) of data point (x, y). y grows upwards.
    pub fn to_px(&self, x: f64, y: f64) -> (f64, f64) {
        let fx = (x - self.x.start) / (self.x.end - self.x.start);
        let fy = (y - self.y.start) / (self.y.end - self.y.start);
        let c = self.px.start as f64 + fx * (self.px.end - self.px.start - 1) as f64;
        let r = (self.py.end - 1) as f64 - fy * (self.py.end - self.py.start - 1) as f64;
        (c, r)
    }

    /// Whether the pixel lies inside the plotting area.
    pub fn contains(&self, col: i64, row: i64) -> bool {
        col >= self.px.start as i64
            && col < self.px.end as i64
            && row >= self.py.start as i64
            && row < self.py.end as i64
    }
}

/// Range of the finite values of `v`, padded by 4% on each side; `(-0.5, 0.5)` around the value when all
/// are equal, `(0, 1)` when none is finite.
pub(crate) fn padded_range(v: impl Iterator<Item = f64>) -> Range<f64> {
    let (mut lo, mut hi) = (f64::INFINITY, f64::NEG_INFINITY);
    for x in v.filter(|x| x.is_finite()) {
        lo = lo.min(x);
        hi = hi.max(x);
    }
    if lo > hi {
        return 0.0..1.0;
    }
    if hi - lo <= f64::EPSILON * hi.abs().max(1.0) {
        return lo - 0.5..hi + 0.5;
    }
    let pad = 0.04 * (hi - lo);
    lo - pad..hi + pad
}

/// Draw title, axes, ticks and labels in the `area` rectangle (x, y, width, height) of `img` for the
/// given data ranges, and return the plotting area.
pub(crate) fn draw_axes(
    img: &mut RgbImage,
    area: (u32, u32, u32, u32),
    x: Range<f64>,
    y: Range<f64>,
    axes: &Axes,
) -> VizResult<Frame> {
    font::ensure_registered()?;
    let root = super::canvas::area(img);
    let sub = root.shrink((area.0, area.1), (area.2, area.3));
    let frame = axes_on(&sub, x, y, axes)?;
    sub.present().map_err(|e| VizError::draw(&axes.title, e))?;
    Ok(frame)
}

/// Like [`draw_axes`] on an existing plotters area.
pub(crate) fn axes_on<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    x: Range<f64>,
    y: Range<f64>,
    axes: &Axes,
) -> VizResult<Frame> {
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| VizError::draw(&axes.title, e);
    let mut builder = ChartBuilder::on(area);
    builder.margin(12).x_label_area_size(44).y_label_area_size(64);
    if !axes.title.is_empty() {
        builder.caption(&axes.title, (font::FAMILY, 22));
    }
    let mut chart = builder.build_cartesian_2d(x.clone(), y.clone()).map_err(err)?;
    chart
        .configure_mesh()
        .disable_mesh()
        .x_desc(&axes.x_label)
        .y_desc(&axes.y_label)
        .label_style((font::FAMILY, 14))
        .axis_desc_style((font::FAMILY, 16))
        .x_labels(7)
        .y_labels(7)
        .draw()
        .map_err(err)?;
    let (px, py) = chart.plotting_area().get_pixel_range();
    Ok(Frame { x, y, px, py })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn padded_range_handles_degenerate_inputs() {
        assert_eq!(padded_range([1.0, f64::NAN, 3.0].into_iter()), 0.92..3.08);
        assert_eq!(padded_range([2.0, 2.0].into_iter()), 1.5..2.5);
        assert_eq!(padded_range([f64::NAN].into_iter()), 0.0..1.0);
    }

    #[test]
    fn frame_maps_corners_to_plotting_area_corners() {
        let f = Frame { x: 0.0..10.0, y: -1.0..1.0, px: 100..300, py: 50..150 };
        assert_eq!(f.to_px(0.0, -1.0), (100.0, 149.0));
        assert_eq!(f.to_px(10.0, 1.0), (299.0, 50.0));
        assert!(f.contains(100, 50) && !f.contains(300, 50));
    }
}
