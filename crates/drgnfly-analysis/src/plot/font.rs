//! Text: DejaVu Sans (Bitstream Vera licence, `assets/DejaVuSans-LICENSE.txt`, from Debian's
//! `fonts-dejavu-core` 2.37) embedded in the binary, rasterised with ab_glyph. Embedding means plots
//! look the same everywhere and need no system font library (plotters' `ttf` feature needs freetype and
//! fontconfig).
//!
//! Glyphs are placed here rather than by plotters' ab_glyph path, which drops each glyph's side
//! bearing (narrow letters drift left: "vol_001" read as "vol _001"); [`super::canvas::Canvas`] routes
//! all chart text through [`rasterize`].

use std::sync::OnceLock;

use ab_glyph::{Font, FontRef, PxScale, ScaleFont};
use plotters::style::FontStyle;

use crate::viz_error::{VizError, VizResult};

/// The family name plots ask for; it is also registered with plotters (its layout code may ask).
pub(crate) const FAMILY: &str = "sans-serif";

static DEJAVU_SANS: &[u8] = include_bytes!("../../assets/DejaVuSans.ttf");

/// The parsed font.
fn font() -> VizResult<&'static FontRef<'static>> {
    static FONT: OnceLock<Option<FontRef<'static>>> = OnceLock::new();
    FONT.get_or_init(|| FontRef::try_from_slice(DEJAVU_SANS).ok())
        .as_ref()
        .ok_or_else(|| VizError::draw("font", "embedded DejaVu Sans is not a valid font"))
}

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

/// Size of `text` at `size_px` (the font's ascent − descent): (advance width, height, ascent) in pixels.
pub(crate) fn measure(text: &str, size_px: f64) -> VizResult<(f32, f32, f32)> {
    let scaled = font()?.as_scaled(PxScale::from(size_px as f32));
    let mut width = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            width += scaled.kern(p, id);
        }
        width += scaled.h_advance(id);
        prev = Some(id);
    }
    Ok((width, scaled.ascent() - scaled.descent(), scaled.ascent()))
}

/// Rasterise `text` at `size_px`; `put(x, y, coverage)` receives pixels relative to the top-left of the
/// text box (top = ascent line, left = pen start), coverage in [0, 1].
pub(crate) fn rasterize(text: &str, size_px: f64, mut put: impl FnMut(i32, i32, f32)) -> VizResult<()> {
    let font = font()?;
    let scale = PxScale::from(size_px as f32);
    let scaled = font.as_scaled(scale);
    let ascent = scaled.ascent();
    let mut x = 0.0;
    let mut prev = None;
    for c in text.chars() {
        let id = scaled.glyph_id(c);
        if let Some(p) = prev {
            x += scaled.kern(p, id);
        }
        if let Some(outline) =
            font.outline_glyph(id.with_scale_and_position(scale, ab_glyph::point(x, ascent)))
        {
            let b = outline.px_bounds();
            outline.draw(|gx, gy, cov| put(b.min.x as i32 + gx as i32, b.min.y as i32 + gy as i32, cov));
        }
        x += scaled.h_advance(id);
        prev = Some(id);
    }
    Ok(())
}
