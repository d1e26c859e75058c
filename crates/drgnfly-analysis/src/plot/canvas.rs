//! [`Canvas`]: plotters' bitmap backend over an [`RgbImage`], with text drawn by [`super::font`].

use plotters::coord::Shift;
use plotters::prelude::*;
use plotters_backend::text_anchor::{HPos, VPos};
use plotters_backend::{BackendColor, BackendCoord, BackendStyle, BackendTextStyle, DrawingErrorKind};

use super::font;
use super::image::RgbImage;

/// A drawing backend that forwards shapes to plotters' `BitMapBackend` and renders text itself.
pub(crate) struct Canvas<'a> {
    inner: BitMapBackend<'a>,
}

/// A plotters drawing area covering all of `img`.
pub(crate) fn area(img: &mut RgbImage) -> DrawingArea<Canvas<'_>, Shift> {
    let (w, h) = (img.width(), img.height());
    Canvas { inner: BitMapBackend::with_buffer(img.bytes_mut(), (w, h)) }.into_drawing_area()
}

type Err<'a> = DrawingErrorKind<<BitMapBackend<'a> as DrawingBackend>::ErrorType>;

impl<'a> DrawingBackend for Canvas<'a> {
    type ErrorType = <BitMapBackend<'a> as DrawingBackend>::ErrorType;

    fn get_size(&self) -> (u32, u32) {
        self.inner.get_size()
    }
    fn ensure_prepared(&mut self) -> Result<(), Err<'a>> {
        self.inner.ensure_prepared()
    }
    fn present(&mut self) -> Result<(), Err<'a>> {
        self.inner.present()
    }
    fn draw_pixel(&mut self, point: BackendCoord, color: BackendColor) -> Result<(), Err<'a>> {
        self.inner.draw_pixel(point, color)
    }
    fn draw_line<S: BackendStyle>(
        &mut self,
        from: BackendCoord,
        to: BackendCoord,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_line(from, to, style)
    }
    fn draw_rect<S: BackendStyle>(
        &mut self,
        upper_left: BackendCoord,
        bottom_right: BackendCoord,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_rect(upper_left, bottom_right, style, fill)
    }
    fn draw_path<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        path: I,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_path(path, style)
    }
    fn draw_circle<S: BackendStyle>(
        &mut self,
        center: BackendCoord,
        radius: u32,
        style: &S,
        fill: bool,
    ) -> Result<(), Err<'a>> {
        self.inner.draw_circle(center, radius, style, fill)
    }
    fn fill_polygon<S: BackendStyle, I: IntoIterator<Item = BackendCoord>>(
        &mut self,
        vert: I,
        style: &S,
    ) -> Result<(), Err<'a>> {
        self.inner.fill_polygon(vert, style)
    }
    fn blit_bitmap(&mut self, pos: BackendCoord, size: (u32, u32), src: &[u8]) -> Result<(), Err<'a>> {
        self.inner.blit_bitmap(pos, size, src)
    }

    fn draw_text<T: BackendTextStyle>(
        &mut self,
        text: &str,
        style: &T,
        pos: BackendCoord,
    ) -> Result<(), Err<'a>> {
        let color = style.color();
        if color.alpha == 0.0 {
            return Ok(());
        }
        let size = style.size();
        let font_err = |e: crate::VizError| DrawingErrorKind::FontError(Box::new(e));
        let (width, height, _) = font::measure(text, size).map_err(font_err)?;
        let anchor = style.anchor();
        let dx = match anchor.h_pos {
            HPos::Left => 0.0,
            HPos::Center => -width / 2.0,
            HPos::Right => -width,
        } as i32;
        let dy = match anchor.v_pos {
            VPos::Top => 0.0,
            VPos::Center => -height / 2.0,
            VPos::Bottom => -height,
        } as i32;
        let trans = style.transform();
        let (w, h) = self.get_size();
        let mut result = Ok(());
        font::rasterize(text, size, |x, y, cov| {
            let (tx, ty) = trans.transform(x + dx, y + dy);
            let (px, py) = (pos.0 + tx, pos.1 + ty);
            if result.is_ok() && cov > 0.0 && px >= 0 && py >= 0 && (px as u32) < w && (py as u32) < h {
                let c = BackendColor { alpha: color.alpha * cov.min(1.0) as f64, rgb: color.rgb };
                result = self.inner.draw_pixel((px, py), c);
            }
        })
        .map_err(font_err)?;
        result
    }

    fn estimate_text_size<T: BackendTextStyle>(&self, text: &str, style: &T) -> Result<(u32, u32), Err<'a>> {
        let (width, height, _) =
            font::measure(text, style.size()).map_err(|e| DrawingErrorKind::FontError(Box::new(e)))?;
        Ok((width.ceil() as u32, height.ceil() as u32))
    }
}
