//! The symmetrized Fourier lattice of `D_lat = D + 1` points per side (cryoDRGN `lattice.py`).
//!
//! Coordinates are `linspace(−extent, extent, D_lat)` on x (fast axis, columns) and y (rows), z = 0, in
//! raster order: point `i` is row `i / D_lat`, column `i % D_lat`. The centre `i = D_lat²/2` is the origin.
//! Because the grid is symmetric about the centre, the point at −k is `N − 1 − i` (`N = D_lat²`); the same
//! holds inside any centrosymmetric mask, in mask order: masked point `j` pairs with `len − 1 − j`.
//! `freqs2d = coords / extent / 2` are frequencies in cycles per pixel of the D-pixel image (−0.5…0.5, step
//! 1/D), whatever the extent. See [the crate conventions](crate#conventions).

use crate::{Error, Result};

/// A `D_lat × D_lat` lattice, `D_lat` odd, with its flattened coordinates and frequencies.
///
/// ```
/// use drgnfly_em::lattice::Lattice;
/// let lat = Lattice::new(65, 0.5).unwrap();
/// assert_eq!(lat.circular_mask(32.0, true).len(), 3208); // cryoDRGN's count at D = 64
/// let c = lat.center_index();
/// assert_eq!(&lat.coords()[3 * c..3 * c + 3], &[0.0, 0.0, 0.0]);
/// ```
#[derive(Debug, Clone)]
pub struct Lattice {
    d_lat: usize,
    extent: f32,
    coords: Vec<f32>,
    freqs: Vec<f32>,
}

impl Lattice {
    /// Builds the lattice; `d_lat` must be odd (`D + 1` for D-pixel images) and `extent > 0` (0.5 for the
    /// decoder lattice, `D_lat/2` for pixel coordinates as in `backproject_voxel`).
    pub fn new(d_lat: usize, extent: f32) -> Result<Self> {
        if d_lat.is_multiple_of(2) || d_lat < 3 {
            return Err(Error::Param {
                name: "lattice size",
                value: d_lat.to_string(),
                why: "must be odd and ≥ 3 (D + 1 for an even image size D)".into(),
            });
        }
        if !(extent.is_finite() && extent > 0.0) {
            return Err(Error::Param {
                name: "lattice extent",
                value: extent.to_string(),
                why: "must be > 0".into(),
            });
        }
        let axis = linspace(extent as f64, d_lat);
        let mut coords = Vec::with_capacity(3 * d_lat * d_lat);
        let mut freqs = Vec::with_capacity(2 * d_lat * d_lat);
        for &y in &axis {
            for &x in &axis {
                coords.extend_from_slice(&[x, y, 0.0]);
                // cryoDRGN divides the f32 coordinates by extent and 2 in f32.
                freqs.extend_from_slice(&[x / extent / 2.0, y / extent / 2.0]);
            }
        }
        Ok(Self { d_lat, extent, coords, freqs })
    }

    /// The side `D_lat` (odd).
    pub fn size(&self) -> usize {
        self.d_lat
    }

    /// Number of points, `D_lat²`.
    pub fn len(&self) -> usize {
        self.d_lat * self.d_lat
    }

    /// Always false: a lattice has at least 9 points. (Present for API symmetry with `len`.)
    pub fn is_empty(&self) -> bool {
        false
    }

    /// The extent: coordinates span `[−extent, extent]`.
    pub fn extent(&self) -> f32 {
        self.extent
    }

    /// Flat index of the origin, `D_lat² / 2`.
    pub fn center_index(&self) -> usize {
        self.len() / 2
    }

    /// Flattened `(N, 3)` coordinates `(x, y, 0)`, x fastest.
    pub fn coords(&self) -> &[f32] {
        &self.coords
    }

    /// Flattened `(N, 2)` frequencies `(kx, ky)` in cycles per pixel of the D-pixel image.
    pub fn freqs2d(&self) -> &[f32] {
        &self.freqs
    }

    /// Index of the centrosymmetric partner (−k) of point `i`: `N − 1 − i`.
    pub fn mirror_index(&self, i: usize) -> usize {
        self.len() - 1 - i
    }

    /// Sorted indices of the points with `x² + y² ≤ (radius / (D_lat/2) · extent)²`, i.e. inside a disc of
    /// `radius` lattice steps; the DC point is dropped when `ignore_dc` (cryoDRGN's default). Training uses
    /// `radius = D/2` (a disc reaching Nyquist): 3208, 12852 and 51432 points at D = 64, 128, 256. The
    /// result is centrosymmetric, so [`first_half`] applies.
    pub fn circular_mask(&self, radius: f32, ignore_dc: bool) -> Vec<usize> {
        // cryoDRGN compares f32 squared norms with an f32-rounded bound; do the same so boundary points agree.
        let r = radius as f64 / (self.d_lat / 2) as f64 * self.extent as f64;
        let bound = (r * r) as f32;
        let center = self.center_index();
        self.coords
            .chunks_exact(3)
            .enumerate()
            .filter(|&(i, c)| c[0] * c[0] + c[1] * c[1] <= bound && !(ignore_dc && i == center))
            .map(|(i, _)| i)
            .collect()
    }

    /// Whether `mask` (sorted lattice indices) is centrosymmetric: `mask[j]` and `mask[len−1−j]` are
    /// mirror points for every `j`. Required by the masked translation and the half-evaluation decoder.
    pub fn is_centrosymmetric(&self, mask: &[usize]) -> bool {
        let n = self.len();
        mask.iter().zip(mask.iter().rev()).all(|(&a, &b)| a < n && a + b == n - 1)
    }

    /// Coordinates `(d², 3)` of the central `d × d` sub-lattice (`d` odd, ≤ `D_lat`) with the same spacing:
    /// `linspace(−e', e', d)` with `e' = extent·(d − 1)/(D_lat − 1)` (cryoDRGN `get_downsample_coords`,
    /// used by `eval_vol -d`).
    pub fn downsample_coords(&self, d: usize) -> Result<Vec<f32>> {
        if d.is_multiple_of(2) || d > self.d_lat {
            return Err(Error::Param {
                name: "downsampled lattice size",
                value: d.to_string(),
                why: format!("must be odd and ≤ the lattice size {}", self.d_lat),
            });
        }
        let e = self.extent as f64 * (d - 1) as f64 / (self.d_lat - 1) as f64;
        let axis = linspace(e, d);
        Ok(axis.iter().flat_map(|&y| axis.iter().flat_map(move |&x| [x, y, 0.0])).collect())
    }
}

/// The prefix of a centrosymmetric mask whose mirrors make up the rest: the first `(len + 1) / 2` points
/// (including the centre when the count is odd). The Fourier decoder evaluates only these and fills the
/// second half from `F(−k) = F(k)*` in reverse order (cryoDRGN `FTPositionalDecoder.forward`).
pub fn first_half(mask: &[usize]) -> &[usize] {
    &mask[..mask.len().div_ceil(2)]
}

/// `numpy.linspace(−e, e, n)` in f64, rounded to f32 as cryoDRGN does (`.astype(np.float32)`).
fn linspace(e: f64, n: usize) -> Vec<f32> {
    if n == 1 {
        return vec![-e as f32];
    }
    let step = 2.0 * e / (n - 1) as f64;
    // numpy computes start + i·step and pins the last point to `stop`.
    (0..n).map(|i| if i == n - 1 { e as f32 } else { (-e + i as f64 * step) as f32 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn circular_mask_counts_match_cryodrgn() {
        for (d, want) in [(64usize, 3208usize), (128, 12852), (256, 51432)] {
            let lat = Lattice::new(d + 1, 0.5).unwrap();
            let mask = lat.circular_mask((d / 2) as f32, true);
            assert_eq!(mask.len(), want, "D={d}");
            assert!(lat.is_centrosymmetric(&mask));
            assert!(!mask.contains(&lat.center_index()));
            assert_eq!(lat.circular_mask((d / 2) as f32, false).len(), want + 1);
        }
    }

    #[test]
    fn coordinates_and_frequencies() {
        let lat = Lattice::new(5, 0.5).unwrap();
        let c = lat.coords();
        assert_eq!(&c[..6], &[-0.5, -0.5, 0.0, -0.25, -0.5, 0.0]); // x fastest
        assert_eq!(&c[3 * 5..3 * 5 + 3], &[-0.5, -0.25, 0.0]); // next row: y steps
                                                               // freqs: step 1/D = 1/4 cycles per pixel, spanning ±0.5.
        let f = lat.freqs2d();
        assert_eq!(&f[..4], &[-0.5, -0.5, -0.25, -0.5]);
        assert_eq!(&f[2 * 12..2 * 12 + 2], &[0.0, 0.0]);
        // Pixel-extent lattice (backproject_voxel) has the same freqs.
        let px = Lattice::new(5, 2.5).unwrap();
        assert_eq!(px.freqs2d(), f);
        assert_eq!(px.coords()[0], -2.5);
        for i in 0..lat.len() {
            let m = lat.mirror_index(i);
            assert_eq!(f[2 * m], -f[2 * i]);
            assert_eq!(f[2 * m + 1], -f[2 * i + 1]);
        }
    }

    #[test]
    fn first_half_pairs_with_the_mirrored_rest() {
        let lat = Lattice::new(9, 0.5).unwrap();
        for dc in [true, false] {
            let mask = lat.circular_mask(4.0, dc);
            let half = first_half(&mask);
            assert_eq!(half.len(), mask.len().div_ceil(2));
            for (j, &i) in half.iter().enumerate() {
                assert_eq!(lat.mirror_index(i), mask[mask.len() - 1 - j]);
            }
        }
        assert!(!lat.is_centrosymmetric(&[0, 1]));
    }

    #[test]
    fn downsample_coords_keep_the_spacing() {
        let lat = Lattice::new(65, 0.5).unwrap();
        let c = lat.downsample_coords(33).unwrap();
        assert_eq!(c.len(), 33 * 33 * 3);
        assert!((c[0] + 0.25).abs() < 1e-7 && (c[3] - c[0] - 1.0 / 64.0).abs() < 1e-7);
        assert!(matches!(lat.downsample_coords(32), Err(Error::Param { .. })));
    }

    #[test]
    fn even_size_is_rejected() {
        assert!(matches!(Lattice::new(64, 0.5), Err(Error::Param { .. })));
        assert!(matches!(Lattice::new(65, 0.0), Err(Error::Param { .. })));
    }
}
