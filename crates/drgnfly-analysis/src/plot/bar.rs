//! Bar plots: particles per class (cryoDRGN landscape's state-count plots, k-means class sizes).

use plotters::prelude::*;

use super::frame::{self, Axes};
use super::image::RgbImage;
use super::{font, palette};
use crate::viz_error::{VizError, VizResult};

/// Vertical bars, one per category, bar `k` coloured [`palette::category`]`(k)` and labelled `names[k]`
/// under the axis.
///
/// Errors: [`VizError::Shape`] when `names` and `values` differ in length.
pub fn bar_plot(names: &[String], values: &[f64], axes: &Axes) -> VizResult<RgbImage> {
    if names.len() != values.len() {
        return Err(VizError::shape(
            "bar plot values",
            format!("{} (one per name)", names.len()),
            values.len(),
        ));
    }
    font::ensure_registered()?;
    let (w, h) = frame::DEFAULT_SIZE;
    let mut img = RgbImage::new(w, h, [255; 3]);
    {
        let root = super::canvas::area(&mut img);
        let err = |e| VizError::draw(&axes.title, e);
        let top = values.iter().copied().filter(|v| v.is_finite()).fold(0.0f64, f64::max);
        let bottom = values.iter().copied().filter(|v| v.is_finite()).fold(0.0f64, f64::min);
        let pad = 0.05 * (top - bottom).max(1e-12);
        let n = names.len().max(1);
        let mut builder = ChartBuilder::on(&root);
        builder.margin(14).x_label_area_size(44).y_label_area_size(70);
        if !axes.title.is_empty() {
            builder.caption(&axes.title, (font::FAMILY, 22));
        }
        let mut chart = builder
            .build_cartesian_2d(
                (0..n).into_segmented(),
                (bottom - if bottom < 0.0 { pad } else { 0.0 })..(top + pad),
            )
            .map_err(err)?;
        let label_of = |v: &SegmentValue<usize>| match v {
            SegmentValue::CenterOf(i) => names.get(*i).cloned().unwrap_or_default(),
            _ => String::new(),
        };
        chart
            .configure_mesh()
            .disable_x_mesh()
            .light_line_style(RGBColor(238, 238, 238))
            .x_labels(n.min(40))
            .x_label_formatter(&label_of)
            .x_desc(&axes.x_label)
            .y_desc(&axes.y_label)
            .label_style((font::FAMILY, 13))
            .axis_desc_style((font::FAMILY, 16))
            .draw()
            .map_err(err)?;
        chart
            .draw_series(values.iter().enumerate().filter(|(_, v)| v.is_finite()).map(|(k, &v)| {
                let c = palette::category(k);
                let mut bar = Rectangle::new(
                    [(SegmentValue::Exact(k), 0.0), (SegmentValue::Exact(k + 1), v)],
                    RGBColor(c[0], c[1], c[2]).filled(),
                );
                bar.set_margin(0, 0, 3, 3);
                bar
            }))
            .map_err(err)?;
        root.present().map_err(err)?;
    }
    Ok(img)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn bar_heights_are_proportional_to_values() {
        let names: Vec<String> = (0..3).map(|k| k.to_string()).collect();
        let img =
            bar_plot(&names, &[10.0, 20.0, 40.0], &Axes::new("class sizes", "class", "particles")).unwrap();
        // Height of each bar = rows containing its colour.
        let height = |k: usize| {
            let c = palette::category(k);
            (0..img.height()).filter(|&r| (0..img.width()).any(|x| img.pixel(x, r) == Some(c))).count() as f64
        };
        let (a, b, c) = (height(0), height(1), height(2));
        assert!((b / a - 2.0).abs() < 0.05 && (c / a - 4.0).abs() < 0.1, "heights {a} {b} {c}");
        assert!(matches!(bar_plot(&names, &[1.0], &Axes::default()), Err(VizError::Shape { .. })));
    }
}
