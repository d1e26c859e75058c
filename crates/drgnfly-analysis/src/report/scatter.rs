//! [`InteractiveScatter`]: the data of one canvas scatter and its encoding into the page.

use base64::Engine;

use crate::plot::palette;
use crate::viz_error::{VizError, VizResult};

/// A latent embedding to explore in the browser.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct InteractiveScatter {
    /// Heading above the canvas.
    pub title: String,
    /// Horizontal axis label.
    pub x_label: String,
    /// Vertical axis label.
    pub y_label: String,
    /// Horizontal coordinate of each particle.
    pub x: Vec<f32>,
    /// Vertical coordinate of each particle.
    pub y: Vec<f32>,
    /// Class of each particle (empty: no classes, one colour).
    pub labels: Vec<u16>,
    /// Name of each class (missing names show as "class k").
    pub class_names: Vec<String>,
}

/// The base64 blocks and JSON metadata written into the page for one scatter.
pub(crate) struct Encoded {
    pub xy: String,
    pub labels: Option<String>,
    pub meta_json: String,
}

impl InteractiveScatter {
    /// Check lengths and encode: x, y interleaved as little-endian f32, labels as little-endian u16.
    pub(crate) fn encode(&self) -> VizResult<Encoded> {
        let n = self.x.len();
        if self.y.len() != n {
            return Err(VizError::shape(format!("interactive scatter '{}' y", self.title), n, self.y.len()));
        }
        if !self.labels.is_empty() && self.labels.len() != n {
            return Err(VizError::shape(
                format!("interactive scatter '{}' labels", self.title),
                n,
                self.labels.len(),
            ));
        }
        let mut xy = Vec::with_capacity(8 * n);
        for (x, y) in self.x.iter().zip(&self.y) {
            xy.extend_from_slice(&x.to_le_bytes());
            xy.extend_from_slice(&y.to_le_bytes());
        }
        let b64 = base64::engine::general_purpose::STANDARD;
        let labels = (!self.labels.is_empty()).then(|| {
            let bytes: Vec<u8> = self.labels.iter().flat_map(|l| l.to_le_bytes()).collect();
            b64.encode(bytes)
        });
        let classes = self.labels.iter().copied().max().map_or(0, |m| m as usize + 1);
        let colors: Vec<String> =
            (0..classes).map(|k| json_string(&palette::hex(palette::category(k)))).collect();
        let names: Vec<String> = (0..classes)
            .map(|k| json_string(self.class_names.get(k).map_or(&format!("class {k}"), |s| s)))
            .collect();
        let meta_json = format!(
            "{{\"x_label\":{},\"y_label\":{},\"colors\":[{}],\"names\":[{}]}}",
            json_string(&self.x_label),
            json_string(&self.y_label),
            colors.join(","),
            names.join(",")
        );
        Ok(Encoded { xy: b64.encode(xy), labels, meta_json })
    }
}

/// A JSON string literal that is also safe inside `<script>`: `<` is written as `\u003c`, so the text
/// can never close the script element.
pub(crate) fn json_string(s: &str) -> String {
    let mut out = String::with_capacity(s.len() + 2);
    out.push('"');
    for ch in s.chars() {
        match ch {
            '"' => out.push_str("\\\""),
            '\\' => out.push_str("\\\\"),
            '<' => out.push_str("\\u003c"),
            c if (c as u32) < 0x20 => out.push_str(&format!("\\u{:04x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push('"');
    out
}
