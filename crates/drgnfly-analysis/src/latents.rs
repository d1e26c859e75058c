//! [`Latents`]: a checked, borrowed view of an N×zdim latent matrix.
//!
//! Latents arrive as a row-major `&[f32]` (particle-major: row `i` is `z[i*zdim..(i+1)*zdim]`), as
//! `drgnfly_io::pickle::load_latents` returns them from a `z.N.pkl`. Checking the shape and finiteness
//! once here means every analysis can index rows without further checks and report a NaN by row.

use crate::error::{Error, Result};

/// A validated N×zdim row-major latent matrix (all values finite, `zdim ≥ 1`).
#[derive(Clone, Copy, Debug)]
pub struct Latents<'a> {
    data: &'a [f32],
    zdim: usize,
}

impl<'a> Latents<'a> {
    /// Check `data` (N×zdim, row-major) and wrap it.
    ///
    /// Errors: [`Error::Param`] for `zdim == 0`, [`Error::Shape`] when the length is not a multiple of
    /// zdim, [`Error::NonFinite`] naming the first row and dimension holding a NaN or ±Inf.
    pub fn new(data: &'a [f32], zdim: usize) -> Result<Self> {
        if zdim == 0 {
            return Err(Error::Param { name: "zdim", value: "0".into(), why: "must be at least 1".into() });
        }
        if !data.len().is_multiple_of(zdim) {
            return Err(Error::Shape {
                what: "latents",
                expected: format!("a multiple of zdim = {zdim} values (N×zdim)"),
                got: format!("{} values", data.len()),
            });
        }
        if let Some(pos) = data.iter().position(|v| !v.is_finite()) {
            return Err(Error::NonFinite {
                what: "latents",
                row: pos / zdim,
                col: pos % zdim,
                value: data[pos],
            });
        }
        Ok(Self { data, zdim })
    }

    /// Number of particles N.
    pub fn len(&self) -> usize {
        self.data.len() / self.zdim
    }

    /// Whether there are no particles.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Latent dimension.
    pub fn zdim(&self) -> usize {
        self.zdim
    }

    /// The whole row-major buffer.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }

    /// Row `i` (particle `i`).
    ///
    /// # Panics
    /// If `i >= len()` (a programmer error: callers iterate over `0..len()`).
    pub fn row(&self, i: usize) -> &'a [f32] {
        &self.data[i * self.zdim..(i + 1) * self.zdim]
    }

    /// Check that a particle index given by the user (an anchor, `--ind` entry) is in range.
    pub fn check_index(&self, name: &'static str, i: usize) -> Result<()> {
        if i < self.len() {
            Ok(())
        } else {
            Err(Error::Param {
                name,
                value: i.to_string(),
                why: format!(
                    "particle index out of range: the latents hold {} particles (0-based)",
                    self.len()
                ),
            })
        }
    }
}

/// Squared Euclidean distance between two equal-length rows.
#[inline]
pub(crate) fn sq_dist(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nan_is_reported_by_row_and_dimension() {
        let z = [0.0, 1.0, 2.0, 3.0, f32::NAN, 5.0];
        let err = Latents::new(&z, 3).unwrap_err();
        assert!(matches!(err, Error::NonFinite { row: 1, col: 1, .. }), "{err}");
        assert!(matches!(Latents::new(&z, 4), Err(Error::Shape { .. })));
        assert!(matches!(Latents::new(&z, 0), Err(Error::Param { .. })));
    }

    #[test]
    fn rows_and_index_checks() {
        let z = [0.0, 1.0, 2.0, 3.0];
        let l = Latents::new(&z, 2).unwrap();
        assert_eq!(l.len(), 2);
        assert_eq!(l.row(1), &[2.0, 3.0]);
        assert!(l.check_index("--anchors", 1).is_ok());
        assert!(matches!(l.check_index("--anchors", 2), Err(Error::Param { .. })));
    }
}
