//! [`RgbImage`]: the 8-bit RGB raster every plot and render is drawn into, and its PNG encoding.
//!
//! Layout: row-major, row 0 at the top, 3 bytes (R, G, B) per pixel; this is the buffer layout of
//! plotters' `BitMapBackend`, so plots draw into it directly.

use std::path::Path;

use super::font;
use crate::viz_error::{VizError, VizResult};

/// An 8-bit RGB picture, row 0 at the top.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RgbImage {
    width: u32,
    height: u32,
    data: Vec<u8>,
}

/// Horizontal placement of text relative to its anchor point.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Align {
    /// The text starts at the anchor.
    Left,
    /// The text is centred on the anchor.
    Center,
    /// The text ends at the anchor.
    Right,
}

impl RgbImage {
    /// A `width × height` picture filled with `background`.
    pub fn new(width: u32, height: u32, background: [u8; 3]) -> Self {
        let n = width as usize * height as usize;
        let mut data = Vec::with_capacity(n * 3);
        for _ in 0..n {
            data.extend_from_slice(&background);
        }
        Self { width, height, data }
    }

    /// Width in pixels.
    pub fn width(&self) -> u32 {
        self.width
    }

    /// Height in pixels.
    pub fn height(&self) -> u32 {
        self.height
    }

    /// The raw RGB bytes, row-major from the top row.
    pub fn as_bytes(&self) -> &[u8] {
        &self.data
    }

    /// Mutable raw bytes (for drawing backends).
    pub(crate) fn bytes_mut(&mut self) -> &mut [u8] {
        &mut self.data
    }

    /// The colour at column `x`, row `y` (row 0 at the top), or `None` outside the picture.
    pub fn pixel(&self, x: u32, y: u32) -> Option<[u8; 3]> {
        if x >= self.width || y >= self.height {
            return None;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        Some([self.data[i], self.data[i + 1], self.data[i + 2]])
    }

    /// Set one pixel; coordinates outside the picture are ignored (drawing clips).
    pub fn put(&mut self, x: i64, y: i64, rgb: [u8; 3]) {
        self.blend(x, y, rgb, 1.0);
    }

    /// Alpha-blend `rgb` over one pixel: `out = α·rgb + (1 − α)·old`. Outside the picture: ignored.
    pub fn blend(&mut self, x: i64, y: i64, rgb: [u8; 3], alpha: f32) {
        if x < 0 || y < 0 || x >= self.width as i64 || y >= self.height as i64 {
            return;
        }
        let i = (y as usize * self.width as usize + x as usize) * 3;
        let a = alpha.clamp(0.0, 1.0);
        for (c, &v) in rgb.iter().enumerate() {
            let old = self.data[i + c] as f32;
            self.data[i + c] = (a * v as f32 + (1.0 - a) * old).round() as u8;
        }
    }

    /// Fill the rectangle `[x0, x1) × [y0, y1)` (clipped).
    pub fn fill_rect(&mut self, x0: i64, y0: i64, x1: i64, y1: i64, rgb: [u8; 3]) {
        let (x0, x1) = (x0.max(0), x1.min(self.width as i64));
        let (y0, y1) = (y0.max(0), y1.min(self.height as i64));
        for y in y0..y1 {
            for x in x0..x1 {
                let i = (y as usize * self.width as usize + x as usize) * 3;
                self.data[i..i + 3].copy_from_slice(&rgb);
            }
        }
    }

    /// Copy `src` with its top-left corner at (`x0`, `y0`) (clipped).
    pub fn blit(&mut self, src: &RgbImage, x0: i64, y0: i64) {
        for sy in 0..src.height as i64 {
            let y = y0 + sy;
            if y < 0 || y >= self.height as i64 {
                continue;
            }
            let xa = x0.max(0);
            let xb = (x0 + src.width as i64).min(self.width as i64);
            if xa >= xb {
                continue;
            }
            let s = ((sy * src.width as i64 + (xa - x0)) * 3) as usize;
            let d = ((y * self.width as i64 + xa) * 3) as usize;
            let len = ((xb - xa) * 3) as usize;
            self.data[d..d + len].copy_from_slice(&src.data[s..s + len]);
        }
    }

    /// Shrink by an integer `factor` with a box filter (used for anti-aliasing renders drawn at a
    /// multiple of the final size). The result is `⌊w/factor⌋ × ⌊h/factor⌋`.
    pub fn downsample(&self, factor: u32) -> RgbImage {
        let f = factor.max(1);
        let (w, h) = (self.width / f, self.height / f);
        let mut out = RgbImage::new(w, h, [0; 3]);
        let norm = f * f;
        for y in 0..h {
            for x in 0..w {
                let mut acc = [0u32; 3];
                for dy in 0..f {
                    for dx in 0..f {
                        let i = (((y * f + dy) * self.width + x * f + dx) * 3) as usize;
                        for (a, &v) in acc.iter_mut().zip(&self.data[i..i + 3]) {
                            *a += v as u32;
                        }
                    }
                }
                let o = ((y * w + x) * 3) as usize;
                for (px, a) in out.data[o..o + 3].iter_mut().zip(acc) {
                    *px = ((a + norm / 2) / norm) as u8;
                }
            }
        }
        out
    }

    /// Draw `text` with the embedded DejaVu Sans at `size_px`, its top edge at `y` and its horizontal
    /// position given by `align` relative to `x`.
    pub fn draw_text(
        &mut self,
        text: &str,
        x: i32,
        y: i32,
        size_px: f64,
        rgb: [u8; 3],
        align: Align,
    ) -> VizResult<()> {
        let (width, _, _) = font::measure(text, size_px)?;
        let left = match align {
            Align::Left => x,
            Align::Center => x - (width / 2.0).round() as i32,
            Align::Right => x - width.round() as i32,
        };
        font::rasterize(text, size_px, |dx, dy, cov| {
            self.blend((left + dx) as i64, (y + dy) as i64, rgb, cov);
        })
    }

    /// Encode as an 8-bit RGB PNG.
    pub fn encode_png(&self) -> VizResult<Vec<u8>> {
        let mut out = Vec::new();
        let enc_err = |e: png::EncodingError| VizError::Encode { path: None, problem: e.to_string() };
        {
            let mut enc = png::Encoder::new(&mut out, self.width, self.height);
            enc.set_color(png::ColorType::Rgb);
            enc.set_depth(png::BitDepth::Eight);
            // Adaptive row filters: plots are flat colour with thin lines, where filtering per row
            // shrinks files several-fold compared with no filter.
            enc.set_compression(png::Compression::Default);
            enc.set_adaptive_filter(png::AdaptiveFilterType::Adaptive);
            let mut writer = enc.write_header().map_err(enc_err)?;
            writer.write_image_data(&self.data).map_err(enc_err)?;
            writer.finish().map_err(enc_err)?;
        }
        Ok(out)
    }

    /// Encode as PNG and write it atomically to `path`.
    pub fn write_png(&self, path: impl AsRef<Path>) -> VizResult<()> {
        let path = path.as_ref();
        let bytes = self.encode_png().map_err(|e| match e {
            VizError::Encode { problem, .. } => VizError::Encode { path: Some(path.to_path_buf()), problem },
            other => other,
        })?;
        drgnfly_io::atomic::write_atomic(path, &bytes)?;
        Ok(())
    }

    /// Decode an 8-bit RGB or RGBA PNG (alpha is dropped); used to embed files in reports and by tests.
    pub fn decode_png(bytes: &[u8]) -> VizResult<RgbImage> {
        let dec_err = |e: png::DecodingError| VizError::invalid("PNG data", e.to_string());
        let mut decoder = png::Decoder::new(bytes);
        decoder.set_transformations(png::Transformations::EXPAND | png::Transformations::STRIP_16);
        let mut reader = decoder.read_info().map_err(dec_err)?;
        let mut buf = vec![0; reader.output_buffer_size()];
        let info = reader.next_frame(&mut buf).map_err(dec_err)?;
        let channels = match info.color_type {
            png::ColorType::Rgb => 3,
            png::ColorType::Rgba => 4,
            png::ColorType::Grayscale => 1,
            png::ColorType::GrayscaleAlpha => 2,
            png::ColorType::Indexed => {
                return Err(VizError::invalid("PNG data", "indexed colour was not expanded"))
            }
        };
        let mut img = RgbImage::new(info.width, info.height, [0; 3]);
        for (px, chunk) in img.data.chunks_exact_mut(3).zip(buf.chunks_exact(channels)) {
            if channels >= 3 {
                px.copy_from_slice(&chunk[..3]);
            } else {
                px.fill(chunk[0]);
            }
        }
        Ok(img)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn png_round_trip_keeps_pixels() {
        let mut img = RgbImage::new(7, 5, [255, 255, 255]);
        img.put(3, 2, [10, 20, 30]);
        img.fill_rect(0, 4, 2, 9, [1, 2, 3]);
        let back = RgbImage::decode_png(&img.encode_png().unwrap()).unwrap();
        assert_eq!(back, img);
        assert_eq!(back.pixel(3, 2), Some([10, 20, 30]));
        assert_eq!(back.pixel(1, 4), Some([1, 2, 3]));
        assert_eq!(back.pixel(7, 0), None);
    }

    #[test]
    fn text_draws_dark_pixels_in_expected_place() {
        let mut img = RgbImage::new(200, 40, [255, 255, 255]);
        img.draw_text("vol_001", 100, 10, 16.0, [0, 0, 0], Align::Center).unwrap();
        let (mut xmin, mut xmax, mut ymin, mut ymax) = (u32::MAX, 0, u32::MAX, 0);
        for y in 0..40 {
            for x in 0..200 {
                if img.pixel(x, y).unwrap()[0] < 128 {
                    (xmin, xmax, ymin, ymax) = (xmin.min(x), xmax.max(x), ymin.min(y), ymax.max(y));
                }
            }
        }
        // Centred on x = 100, about 60 px wide at 16 px, starting near y = 10.
        assert!(xmin < 80 && xmax > 120 && (xmin + xmax) / 2 >= 95 && (xmin + xmax) / 2 <= 105);
        assert!((6..=16).contains(&ymin) && ymax < 32, "text rows {ymin}..{ymax}");
    }

    #[test]
    fn downsample_averages_blocks() {
        let mut img = RgbImage::new(4, 2, [0, 0, 0]);
        img.fill_rect(0, 0, 1, 1, [255, 255, 255]);
        let small = img.downsample(2);
        assert_eq!((small.width(), small.height()), (2, 1));
        assert_eq!(small.pixel(0, 0), Some([64, 64, 64]));
        assert_eq!(small.pixel(1, 0), Some([0, 0, 0]));
    }
}
