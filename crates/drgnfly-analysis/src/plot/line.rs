//! Line plots: learning curves (cryoDRGN's `learning_curve_epochE.png`, `00_total_loss.png`) and FSC
//! curves with the 0.143 and 0.5 criteria.
//!
//! Non-finite values break a line into pieces instead of failing: a NaN epoch (cryoDRGN issue #346,
//! where `analyze` crashed parsing such a log) shows as a gap.

use std::ops::Range;

use plotters::coord::Shift;
use plotters::prelude::*;

use super::frame::{self, Axes};
use super::image::RgbImage;
use super::{font, palette};
use crate::viz_error::{VizError, VizResult};

/// One named curve.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Series {
    /// Legend entry.
    pub name: String,
    /// Horizontal values.
    pub x: Vec<f64>,
    /// Vertical values, one per `x`.
    pub y: Vec<f64>,
}

impl Series {
    /// A named series.
    pub fn new(name: impl Into<String>, x: Vec<f64>, y: Vec<f64>) -> Self {
        Self { name: name.into(), x, y }
    }
}

/// A horizontal reference line, e.g. FSC = 0.143.
#[derive(Clone, Debug, PartialEq)]
pub struct RefLine {
    /// Height in data units.
    pub y: f64,
    /// Text written at its right end.
    pub label: String,
}

/// Plot `series` as lines (with dots when short) plus horizontal `ref_lines`. The y range is `y_range`,
/// or the data's when `None`.
///
/// Errors: [`VizError::Shape`] when a series' `x` and `y` differ in length.
pub fn line_plot(
    series: &[Series],
    ref_lines: &[RefLine],
    y_range: Option<Range<f64>>,
    axes: &Axes,
) -> VizResult<RgbImage> {
    let (w, h) = frame::DEFAULT_SIZE;
    let mut img = RgbImage::new(w, h, [255; 3]);
    {
        let root = super::canvas::area(&mut img);
        lines_on(&root, series, ref_lines, y_range, axes)?;
        root.present().map_err(|e| VizError::draw(&axes.title, e))?;
    }
    Ok(img)
}

/// The learning curve of a VAE run: generative (reconstruction) loss and total loss in the top panel,
/// KL divergence in the bottom one (its scale is usually far smaller), against 1-based epoch numbers.
///
/// Errors: [`VizError::Shape`] when the three losses do not have one value per epoch.
pub fn learning_curve(epochs: &[f64], gen_loss: &[f64], kld: &[f64], total: &[f64]) -> VizResult<RgbImage> {
    for (what, v) in [("generative loss", gen_loss), ("KLD", kld), ("total loss", total)] {
        if v.len() != epochs.len() {
            return Err(VizError::shape(
                format!("learning curve {what}"),
                format!("{} epochs", epochs.len()),
                v.len(),
            ));
        }
    }
    let (w, h) = (800, 900);
    let mut img = RgbImage::new(w, h, [255; 3]);
    {
        let root = super::canvas::area(&mut img);
        let (top, bottom) = root.split_vertically(520);
        let losses = [
            Series::new("generative loss", epochs.to_vec(), gen_loss.to_vec()),
            Series::new("total loss", epochs.to_vec(), total.to_vec()),
        ];
        lines_on(&top, &losses, &[], None, &Axes::new("Learning curve", "epoch", "loss"))?;
        let kl = [Series::new("KLD", epochs.to_vec(), kld.to_vec())];
        lines_on(&bottom, &kl, &[], None, &Axes::new("", "epoch", "KL divergence"))?;
        root.present().map_err(|e| VizError::draw("learning curve", e))?;
    }
    Ok(img)
}

/// FSC curves against spatial frequency, with the 0.143 (gold-standard half maps) and 0.5 (map vs
/// model) criteria drawn as reference lines; y spans [−0.05, 1.05].
pub fn fsc_plot(curves: &[Series], axes: &Axes) -> VizResult<RgbImage> {
    let refs = [RefLine { y: 0.5, label: "0.5".into() }, RefLine { y: 0.143, label: "0.143".into() }];
    line_plot(curves, &refs, Some(-0.05..1.05), axes)
}

/// Draw the chart into `area`.
fn lines_on<DB: DrawingBackend>(
    area: &DrawingArea<DB, Shift>,
    series: &[Series],
    ref_lines: &[RefLine],
    y_range: Option<Range<f64>>,
    axes: &Axes,
) -> VizResult<()> {
    font::ensure_registered()?;
    for s in series {
        if s.x.len() != s.y.len() {
            return Err(VizError::shape(
                format!("series '{}' y", s.name),
                format!("{} values (as x)", s.x.len()),
                s.y.len(),
            ));
        }
    }
    let xr = frame::padded_range(series.iter().flat_map(|s| s.x.iter().copied()));
    let yr = y_range.unwrap_or_else(|| {
        frame::padded_range(
            series.iter().flat_map(|s| s.y.iter().copied()).chain(ref_lines.iter().map(|r| r.y)),
        )
    });
    let err = |e: DrawingAreaErrorKind<DB::ErrorType>| VizError::draw(&axes.title, e);
    let mut builder = ChartBuilder::on(area);
    builder.margin(14).x_label_area_size(44).y_label_area_size(70);
    if !axes.title.is_empty() {
        builder.caption(&axes.title, (font::FAMILY, 22));
    }
    let mut chart = builder.build_cartesian_2d(xr.clone(), yr).map_err(err)?;
    chart
        .configure_mesh()
        .max_light_lines(2)
        .light_line_style(RGBColor(240, 240, 240))
        .bold_line_style(RGBColor(220, 220, 220))
        .x_desc(&axes.x_label)
        .y_desc(&axes.y_label)
        .label_style((font::FAMILY, 14))
        .axis_desc_style((font::FAMILY, 16))
        .draw()
        .map_err(err)?;
    for r in ref_lines {
        let grey = RGBColor(120, 120, 120);
        chart
            .draw_series(LineSeries::new([(xr.start, r.y), (xr.end, r.y)], grey.stroke_width(1)))
            .map_err(err)?;
        // Label just below the line's right end, inside the plotting area.
        let style = TextStyle::from((font::FAMILY, 13).into_font()).color(&grey);
        let at = (xr.start + 0.93 * (xr.end - xr.start), r.y);
        chart.plotting_area().draw(&Text::new(r.label.clone(), at, style)).map_err(err)?;
    }
    for (k, s) in series.iter().enumerate() {
        let c = palette::category(k);
        let color = RGBColor(c[0], c[1], c[2]);
        // Split at non-finite values so a NaN epoch leaves a gap.
        let mut first = true;
        for piece in
            s.x.iter().zip(&s.y).collect::<Vec<_>>().split(|(x, y)| !(x.is_finite() && y.is_finite()))
        {
            let pts: Vec<(f64, f64)> = piece.iter().map(|&(&x, &y)| (x, y)).collect();
            if pts.is_empty() {
                continue;
            }
            let drawn =
                chart.draw_series(LineSeries::new(pts.clone(), color.stroke_width(2))).map_err(err)?;
            if first {
                drawn
                    .label(&s.name)
                    .legend(move |(x, y)| PathElement::new([(x, y), (x + 20, y)], color.stroke_width(2)));
                first = false;
            }
            if s.x.len() <= 60 {
                chart.draw_series(pts.iter().map(|&p| Circle::new(p, 3, color.filled()))).map_err(err)?;
            }
        }
    }
    if series.iter().any(|s| !s.name.is_empty()) {
        chart
            .configure_series_labels()
            .background_style(WHITE.mix(0.85))
            .border_style(RGBColor(200, 200, 200))
            .label_font((font::FAMILY, 14))
            .position(SeriesLabelPosition::UpperRight)
            .draw()
            .map_err(err)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn has_color(img: &RgbImage, rgb: [u8; 3]) -> usize {
        img.as_bytes().chunks_exact(3).filter(|p| *p == rgb).count()
    }

    #[test]
    fn fsc_plot_draws_curves_and_reference_lines() {
        let x: Vec<f64> = (0..33).map(|i| i as f64 / 64.0).collect();
        let y: Vec<f64> = x.iter().map(|f| 1.0 / (1.0 + (f * 20.0).powi(4))).collect();
        let img = fsc_plot(&[Series::new("state 1", x, y)], &Axes::new("FSC", "1/px", "FSC")).unwrap();
        assert!(has_color(&img, palette::category(0)) > 300);
        // The 0.5 and 0.143 lines: two long grey runs in different rows.
        let grey_rows = (0..img.height())
            .filter(|&r| (0..img.width()).filter(|&c| img.pixel(c, r) == Some([120, 120, 120])).count() > 500)
            .count();
        assert_eq!(grey_rows, 2);
    }

    #[test]
    fn learning_curve_survives_nan_and_checks_lengths() {
        let e: Vec<f64> = (1..=20).map(f64::from).collect();
        let gen: Vec<f64> = e.iter().map(|x| if *x == 7.0 { f64::NAN } else { 1.0 / x }).collect();
        let kld: Vec<f64> = e.iter().map(|x| 0.01 * x).collect();
        let total: Vec<f64> = gen.iter().zip(&kld).map(|(a, b)| a + b).collect();
        let img = learning_curve(&e, &gen, &kld, &total).unwrap();
        assert!(has_color(&img, palette::category(0)) > 200 && has_color(&img, palette::category(1)) > 200);
        assert!(matches!(learning_curve(&e, &gen[..3], &kld, &total), Err(VizError::Shape { .. })));
    }
}
