//! Plots as PNG pictures: scatter (optionally by class, with k-means centres or traversal paths drawn
//! over it), hexbin density, scatter with marginal histograms, line plots (learning curves, FSC) and bar
//! plots, named after cryoDRGN's `analyze` outputs (reference §5).
//!
//! Every function returns an [`RgbImage`]; write it with [`RgbImage::write_png`] (atomic) or embed
//! its [`RgbImage::encode_png`] bytes in a report:
//!
//! ```no_run
//! use drgnfly_analysis::plot::{hexbin, Axes, Overlay};
//! # fn main() -> Result<(), drgnfly_analysis::VizError> {
//! let (pc1, pc2) = (vec![0.0f32; 10], vec![0.0f32; 10]);
//! hexbin(&pc1, &pc2, &Overlay::default(), &Axes::new("", "PC1", "PC2"))?.write_png("z_pca_hexbin.png")?;
//! # Ok(()) }
//! ```
//!
//! Conventions: data y grows upwards; text is DejaVu Sans embedded in the binary (no system fonts);
//! non-finite data points are skipped, never an error; inputs of mismatched length are
//! [`crate::VizError::Shape`].

mod bar;
mod canvas;
mod font;
mod frame;
mod hexbin;
mod image;
mod line;
mod marginals;
mod overlay;
pub mod palette;
mod scatter;

pub use bar::bar_plot;
pub use frame::{Axes, DEFAULT_SIZE};
pub use hexbin::{bin_hexagons, hexbin, HexCounts};
pub use image::{Align, RgbImage};
pub use line::{fsc_plot, learning_curve, line_plot, RefLine, Series};
pub use marginals::{histogram, scatter_with_marginals};
pub use overlay::{Marker, Overlay};
pub use scatter::scatter;
