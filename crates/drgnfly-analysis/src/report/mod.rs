//! Self-contained HTML reports: one file with no network access needed (CSS and JS inline, pictures
//! as base64 data URIs), replacing cryoDRGN's notebooks and widgets, which broke with every
//! ipywidgets release (reference §8).
//!
//! A [`Report`] is a list of [`Section`]s of [`Item`]s: text, tables, pictures, lists of files and
//! interactive latent scatters ([`InteractiveScatter`]): a `<canvas>` with pan (drag), zoom (wheel),
//! reset (double-click), hover showing the particle index and class, and a legend whose entries
//! toggle classes. The scatter's data are embedded as base64 little-endian float32 (x, y) pairs and
//! u16 labels; its script draws through one `ImageData` per frame and finds hovered points through a
//! uniform grid, so it stays responsive at 10⁶ points.
//!
//! ```no_run
//! use drgnfly_analysis::report::{Item, Report, Section};
//! # fn main() -> Result<(), drgnfly_analysis::VizError> {
//! let report = Report {
//!     title: "analyze.50".into(),
//!     sections: vec![Section::new("Parameters", vec![Item::Table {
//!         header: vec!["parameter".into(), "value".into()],
//!         rows: vec![vec!["zdim".into(), "8".into()]],
//!     }])],
//! };
//! report.write("analyze.50/report.html")?;
//! # Ok(()) }
//! ```

mod html;
mod scatter;

pub use scatter::InteractiveScatter;

use std::path::{Path, PathBuf};

use crate::viz_error::VizResult;

/// A report: a title and its sections, in order.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Report {
    /// Page title and top heading.
    pub title: String,
    /// The sections.
    pub sections: Vec<Section>,
}

/// A titled part of a report (listed in the table of contents).
#[derive(Clone, Debug, Default, PartialEq)]
pub struct Section {
    /// Heading.
    pub heading: String,
    /// Content, in order.
    pub items: Vec<Item>,
}

impl Section {
    /// A section with a heading and items.
    pub fn new(heading: impl Into<String>, items: Vec<Item>) -> Self {
        Self { heading: heading.into(), items }
    }
}

/// Where a picture comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum ImageSource {
    /// A file read when the report is built (PNG, JPEG, GIF or SVG by extension).
    Path(PathBuf),
    /// PNG bytes, e.g. from [`crate::plot::RgbImage::encode_png`].
    Png(Vec<u8>),
}

/// One piece of a section.
#[derive(Clone, Debug, PartialEq)]
pub enum Item {
    /// A paragraph of plain text (blank lines start new paragraphs).
    Text(String),
    /// A table of plain-text cells.
    Table {
        /// Column headings.
        header: Vec<String>,
        /// Rows of cells.
        rows: Vec<Vec<String>>,
    },
    /// A picture with a caption.
    Image {
        /// Caption under the picture.
        caption: String,
        /// The picture.
        source: ImageSource,
    },
    /// An interactive latent scatter.
    Scatter(InteractiveScatter),
    /// A list of files (e.g. "files written"), shown as links relative to the report.
    Files(Vec<String>),
}

impl Report {
    /// The complete HTML document.
    ///
    /// Errors: an [`ImageSource::Path`] that cannot be read (the error names the file); a scatter whose
    /// arrays disagree in length.
    pub fn to_html(&self) -> VizResult<String> {
        html::document(self)
    }

    /// Write the HTML document atomically to `path`.
    pub fn write(&self, path: impl AsRef<Path>) -> VizResult<()> {
        let html = self.to_html()?;
        drgnfly_io::atomic::write_atomic(path, html.as_bytes())?;
        Ok(())
    }
}

#[cfg(test)]
mod browser_tests;
#[cfg(test)]
mod tests;
