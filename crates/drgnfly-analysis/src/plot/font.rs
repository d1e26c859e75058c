//! The embedded font: DejaVu Sans (Bitstream Vera licence, `assets/DejaVuSans-LICENSE.txt`), from Debian's
//! `fonts-dejavu-core` 2.37. Embedding it means plots render the same everywhere and need no system
//! font library (plotters' `ttf` feature would need freetype and fontconfig).

use std::sync::OnceLock;

use plotters::style::FontStyle;

use crate::viz_error::{VizError, VizResult};

/// The family name plots ask for; it is registered with plotters on first use.
pub(crate) const FAMILY: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// Register the font with plotters once per process.
pub(crate) fn ensure_registered() -> VizResult<()> {
    static DONE: OnceLock<Result<(), String>> = OnceLock::new();
    DONE.get_or_init(|| {
        for style in [FontStyle::Normal, FontStyle::Bold] {
            plotters::style::register_font(FAMILY, style, DEJAVU_SANS)
                .map_err(|_| "embedded DejaVu Sans is not a valid font".to_string())?;
        }
        Ok(())
    })
    .clone()
    .map_err(|e| VizError::draw("font", e))
}
