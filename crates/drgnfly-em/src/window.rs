//! Real-space 2D windows applied to particle images before the Hartley transform.
//!
//! Radii here are fractions of the half box on cryoDRGN's grid `xᵢ = −1 + 2i/D` (`linspace(−1, 1, D+1)[:-1]`),
//! so pixel `D/2` is the centre and `r = 1` touches the middle of the box edge. Images are `[y][x]`.

use crate::{Error, Result};

/// cryoDRGN's default inner radius of the image window (`--window-r`).
pub const DEFAULT_WINDOW_R: f32 = 0.85;
/// cryoDRGN's outer radius of the image window (fixed in `ImageDataset`).
pub const WINDOW_OUT_R: f32 = 0.99;

/// The soft circular window `W(r) = clip(1 − (r − in_rad)/(out_rad − in_rad), 0, 1)` on a `D × D` grid
/// (cryoDRGN `spherical_window_mask` / `window_mask`); `in_rad == out_rad` gives the hard disc `r ≤ out_rad`.
/// Training multiplies every raw image by `spherical_window_mask(D, 0.85, 0.99)`.
///
/// ```
/// use drgnfly_em::window::spherical_window_mask;
/// let w = spherical_window_mask(8, 0.85, 0.99).unwrap();
/// assert_eq!(w[4 * 8 + 4], 1.0); // centre
/// assert_eq!(w[0], 0.0); // corner, r = √2
/// ```
pub fn spherical_window_mask(d: usize, in_rad: f32, out_rad: f32) -> Result<Vec<f32>> {
    if d == 0 || !d.is_multiple_of(2) {
        return Err(Error::Param {
            name: "box size",
            value: d.to_string(),
            why: "must be even and > 0".into(),
        });
    }
    if !(in_rad.is_finite() && out_rad.is_finite() && 0.0 <= in_rad && in_rad <= out_rad) {
        return Err(Error::Param {
            name: "window radius",
            value: format!("{in_rad}..{out_rad}"),
            why: "need 0 ≤ inner ≤ outer (fractions of the half box, e.g. --window-r 0.85)".into(),
        });
    }
    let grid: Vec<f32> = (0..d).map(|i| (-1.0 + 2.0 * i as f64 / d as f64) as f32).collect();
    // cryoDRGN evaluates in f32 with the width (out − in) rounded from a Python float.
    let width = (out_rad as f64 - in_rad as f64) as f32;
    let mut w = Vec::with_capacity(d * d);
    for &y in &grid {
        for &x in &grid {
            let r = (x * x + y * y).sqrt();
            w.push(if width == 0.0 {
                f32::from(r <= out_rad)
            } else {
                (1.0 - (r - in_rad) / width).clamp(0.0, 1.0)
            });
        }
    }
    Ok(w)
}

/// A circular mask of radius `radius_px` pixels around the centre `(D/2, D/2)` with a raised-cosine edge
/// `½(1 + cos(π (r − radius_px)/edge_px))` for `radius_px < r < radius_px + edge_px`; `edge_px = 0` gives a
/// hard disc. Used for real-space image masks (noise estimation, soft particle masks).
pub fn soft_circular_mask(d: usize, radius_px: f32, edge_px: f32) -> Result<Vec<f32>> {
    check_radius(d, radius_px, edge_px)?;
    let c = (d / 2) as f32;
    let mut m = Vec::with_capacity(d * d);
    for y in 0..d {
        for x in 0..d {
            let r = ((x as f32 - c).powi(2) + (y as f32 - c).powi(2)).sqrt();
            m.push(cosine_edge(r, radius_px, edge_px));
        }
    }
    Ok(m)
}

/// Multiplies every `D × D` image of a `(B, D, D)` buffer by `window` (length `D²`).
pub fn apply_window(imgs: &mut [f32], window: &[f32]) -> Result<()> {
    if window.is_empty() || !imgs.len().is_multiple_of(window.len()) {
        return Err(Error::Shape {
            op: "apply_window",
            expected: format!("(B, D, D) images with D² = {}", window.len()),
            got: format!("{} values", imgs.len()),
        });
    }
    for img in imgs.chunks_exact_mut(window.len()) {
        img.iter_mut().zip(window).for_each(|(v, w)| *v *= w);
    }
    Ok(())
}

/// `1` inside `radius`, a half cosine down to 0 over `edge`, then 0.
pub(crate) fn cosine_edge(r: f32, radius: f32, edge: f32) -> f32 {
    if r <= radius {
        1.0
    } else if edge > 0.0 && r < radius + edge {
        0.5 * (1.0 + (std::f32::consts::PI * (r - radius) / edge).cos())
    } else {
        0.0
    }
}

pub(crate) fn check_radius(d: usize, radius_px: f32, edge_px: f32) -> Result<()> {
    if d == 0 {
        return Err(Error::Param { name: "box size", value: "0".into(), why: "must be > 0".into() });
    }
    if !(radius_px.is_finite() && radius_px >= 0.0 && edge_px.is_finite() && edge_px >= 0.0) {
        return Err(Error::Param {
            name: "mask radius",
            value: format!("radius {radius_px}, edge {edge_px}"),
            why: "radius and edge width must be finite and ≥ 0 (pixels)".into(),
        });
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn window_profile_matches_the_formula() {
        let d = 64;
        let w = spherical_window_mask(d, 0.85, 0.99).unwrap();
        // Along the centre row y = 0: x = −1 + 2i/D, r = |x|.
        for i in 0..d {
            let r = (-1.0 + 2.0 * i as f64 / d as f64).abs();
            let want = (1.0 - (r - 0.85) / 0.14).clamp(0.0, 1.0);
            assert!((w[(d / 2) * d + i] as f64 - want).abs() < 1e-6, "pixel {i}");
        }
        // Hard edge.
        let h = spherical_window_mask(d, 0.5, 0.5).unwrap();
        assert_eq!(h[(d / 2) * d + d / 2 + 16], 1.0); // r = 0.5
        assert_eq!(h[(d / 2) * d + d / 2 + 17], 0.0);
        assert!(matches!(spherical_window_mask(63, 0.85, 0.99), Err(Error::Param { .. })));
        assert!(matches!(spherical_window_mask(64, 0.99, 0.85), Err(Error::Param { .. })));
    }

    #[test]
    fn soft_circular_mask_edges() {
        let m = soft_circular_mask(32, 8.0, 4.0).unwrap();
        let at = |x: usize| m[16 * 32 + x];
        assert_eq!(at(16 + 8), 1.0);
        assert!((at(16 + 10) - 0.5).abs() < 1e-6); // halfway down the cosine
        assert_eq!(at(16 + 12), 0.0);
        let mut imgs = vec![2.0; 2 * 32 * 32];
        apply_window(&mut imgs, &m).unwrap();
        assert_eq!(imgs[32 * 32 + 16 * 32 + 16], 2.0);
        assert_eq!(imgs[0], 0.0);
        assert!(matches!(apply_window(&mut imgs[1..], &m), Err(Error::Shape { .. })));
    }
}
