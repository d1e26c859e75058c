//! Annotations drawn over scatter and hexbin plots: labelled markers (k-means centres) and paths
//! (latent traversals drawn as connected points).

use plotters::prelude::*;
use plotters::style::text_anchor::{HPos, Pos, VPos};

use super::frame::Frame;
use super::image::RgbImage;
use super::{font, palette};
use crate::viz_error::{VizError, VizResult};

/// One labelled marker, in data coordinates.
#[derive(Clone, Debug, PartialEq)]
pub struct Marker {
    /// Horizontal data coordinate.
    pub x: f32,
    /// Vertical data coordinate.
    pub y: f32,
    /// Text written next to the marker (may be empty).
    pub label: String,
    /// Fill colour; markers get a dark outline so pastel colours stay visible.
    pub color: [u8; 3],
}

/// Everything drawn on top of the points.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Overlay {
    /// Labelled markers.
    pub markers: Vec<Marker>,
    /// Polylines in data coordinates, each drawn as connected dots (traversals).
    pub paths: Vec<Vec<[f32; 2]>>,
}

impl Overlay {
    /// k-means centres: marker `k` at `centers[k]`, labelled `k` (0-based, as in `labels.pkl`; it
    /// matches `vol_{k+1:03}.mrc`) and filled with ChimeraX's colour for the `k`-th opened map.
    pub fn centers(centers: &[[f32; 2]]) -> Self {
        let markers = centers
            .iter()
            .enumerate()
            .map(|(k, c)| Marker { x: c[0], y: c[1], label: k.to_string(), color: palette::chimerax(k) })
            .collect();
        Self { markers, paths: Vec::new() }
    }

    /// A traversal: the points connected in order.
    pub fn path(points: Vec<[f32; 2]>) -> Self {
        Self { markers: Vec::new(), paths: vec![points] }
    }

    /// Whether there is nothing to draw.
    pub fn is_empty(&self) -> bool {
        self.markers.is_empty() && self.paths.iter().all(Vec::is_empty)
    }

    /// Draw onto `img` through `frame`. Non-finite coordinates are skipped.
    pub(crate) fn draw(&self, img: &mut RgbImage, frame: &Frame) -> VizResult<()> {
        if self.is_empty() {
            return Ok(());
        }
        font::ensure_registered()?;
        let err = |e| VizError::draw("overlay", e);
        let root = super::canvas::area(img);
        let to_px = |x: f32, y: f32| -> Option<(i32, i32)> {
            if !(x.is_finite() && y.is_finite()) {
                return None;
            }
            let (c, r) = frame.to_px(x as f64, y as f64);
            Some((c.round() as i32, r.round() as i32))
        };
        let dark = RGBColor(30, 30, 30);
        for path in &self.paths {
            let pts: Vec<(i32, i32)> = path.iter().filter_map(|p| to_px(p[0], p[1])).collect();
            root.draw(&PathElement::new(pts.clone(), dark.stroke_width(2))).map_err(err)?;
            let n = pts.len().max(2) - 1;
            for (i, &p) in pts.iter().enumerate() {
                // Dots coloured along the path (start dark, end light) so its direction reads at a glance.
                let c = palette::viridis(i as f64 / n as f64);
                root.draw(&Circle::new(p, 5, RGBColor(c[0], c[1], c[2]).filled())).map_err(err)?;
                root.draw(&Circle::new(p, 5, dark.stroke_width(1))).map_err(err)?;
            }
        }
        let text = TextStyle::from((font::FAMILY, 17).into_font())
            .color(&BLACK)
            .pos(Pos::new(HPos::Left, VPos::Center));
        for m in &self.markers {
            let Some(p) = to_px(m.x, m.y) else { continue };
            let c = m.color;
            root.draw(&Circle::new(p, 8, RGBColor(c[0], c[1], c[2]).filled())).map_err(err)?;
            root.draw(&Circle::new(p, 8, dark.stroke_width(1))).map_err(err)?;
            if !m.label.is_empty() {
                root.draw_text(&m.label, &text, (p.0 + 11, p.1)).map_err(err)?;
            }
        }
        root.present().map_err(err)
    }
}
