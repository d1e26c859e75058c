//! Colours: categorical palettes for classes and the viridis map for densities.
//!
//! - [`chimerax`]: the ten default map colours of ChimeraX, in the order it assigns them to opened
//!   volumes, the same list cryoDRGN's `analyze` uses to annotate k-means centres. Marker `k` in a plot
//!   then matches `vol_{k+1:03}.mrc` opened in ChimeraX. They are pastel, so markers get a dark outline.
//! - [`category`]: saturated colours (matplotlib's `tab10`, then `tab20`'s light variants) for points
//!   coloured by class on a white background, where pastels would vanish.
//! - [`viridis`]: perceptually uniform map for densities (hexbin counts).

/// ChimeraX's default volume colours (lightgray, light yellow, light cyan, light blue, light magenta,
/// light red, light green, tan, light sky blue, khaki), repeating after ten.
pub const CHIMERAX: [[u8; 3]; 10] = [
    [0xb2, 0xb2, 0xb2],
    [0xff, 0xff, 0xb2],
    [0xb2, 0xff, 0xff],
    [0xb2, 0xb2, 0xff],
    [0xff, 0xb2, 0xff],
    [0xff, 0xb2, 0xb2],
    [0xb2, 0xff, 0xb2],
    [0xe5, 0xbf, 0x99],
    [0x99, 0xbf, 0xe5],
    [0xcc, 0xcc, 0x99],
];

/// Saturated categorical colours: matplotlib `tab10`, followed by the light half of `tab20`.
pub const CATEGORY: [[u8; 3]; 20] = [
    [0x1f, 0x77, 0xb4],
    [0xff, 0x7f, 0x0e],
    [0x2c, 0xa0, 0x2c],
    [0xd6, 0x27, 0x28],
    [0x94, 0x67, 0xbd],
    [0x8c, 0x56, 0x4b],
    [0xe3, 0x77, 0xc2],
    [0x7f, 0x7f, 0x7f],
    [0xbc, 0xbd, 0x22],
    [0x17, 0xbe, 0xcf],
    [0xae, 0xc7, 0xe8],
    [0xff, 0xbb, 0x78],
    [0x98, 0xdf, 0x8a],
    [0xff, 0x98, 0x96],
    [0xc5, 0xb0, 0xd5],
    [0xc4, 0x9c, 0x94],
    [0xf7, 0xb6, 0xd2],
    [0xc7, 0xc7, 0xc7],
    [0xdb, 0xdb, 0x8d],
    [0x9e, 0xda, 0xe5],
];

/// Colour of ChimeraX's `k`-th opened map (0-based), cycling through [`CHIMERAX`].
pub fn chimerax(k: usize) -> [u8; 3] {
    CHIMERAX[k % CHIMERAX.len()]
}

/// Colour for class `k` (0-based) in scatter plots, cycling through [`CATEGORY`].
pub fn category(k: usize) -> [u8; 3] {
    CATEGORY[k % CATEGORY.len()]
}

/// Viridis at eleven evenly spaced stops (matplotlib's `viridis` at 0, 0.1, …, 1).
const VIRIDIS: [[u8; 3]; 11] = [
    [0x44, 0x01, 0x54],
    [0x48, 0x24, 0x75],
    [0x41, 0x44, 0x87],
    [0x35, 0x5f, 0x8d],
    [0x2a, 0x78, 0x8e],
    [0x21, 0x91, 0x8c],
    [0x22, 0xa8, 0x84],
    [0x44, 0xbf, 0x70],
    [0x7a, 0xd1, 0x51],
    [0xbd, 0xdf, 0x26],
    [0xfd, 0xe7, 0x25],
];

/// Viridis at `t ∈ [0, 1]` (clamped; NaN maps to 0), linearly interpolated between the stops.
pub fn viridis(t: f64) -> [u8; 3] {
    let t = if t.is_nan() { 0.0 } else { t.clamp(0.0, 1.0) };
    let pos = t * (VIRIDIS.len() - 1) as f64;
    let i = (pos.floor() as usize).min(VIRIDIS.len() - 2);
    let f = pos - i as f64;
    let (a, b) = (VIRIDIS[i], VIRIDIS[i + 1]);
    std::array::from_fn(|c| (a[c] as f64 + f * (b[c] as f64 - a[c] as f64)).round() as u8)
}

/// `#rrggbb` form of a colour (for HTML and SVG).
pub fn hex(rgb: [u8; 3]) -> String {
    format!("#{:02x}{:02x}{:02x}", rgb[0], rgb[1], rgb[2])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn viridis_hits_its_stops_and_is_monotone_in_lightness() {
        assert_eq!(viridis(0.0), [0x44, 0x01, 0x54]);
        assert_eq!(viridis(1.0), [0xfd, 0xe7, 0x25]);
        assert_eq!(viridis(0.5), [0x21, 0x91, 0x8c]);
        assert_eq!(viridis(f64::NAN), viridis(0.0));
        let luma = |c: [u8; 3]| 0.3 * c[0] as f64 + 0.59 * c[1] as f64 + 0.11 * c[2] as f64;
        let mut last = -1.0;
        for i in 0..=100 {
            let l = luma(viridis(i as f64 / 100.0));
            assert!(l >= last - 0.5, "lightness drops at {i}");
            last = l;
        }
    }

    #[test]
    fn palettes_cycle() {
        assert_eq!(chimerax(10), chimerax(0));
        assert_eq!(category(21), category(1));
        assert_eq!(hex(chimerax(7)), "#e5bf99");
    }
}
