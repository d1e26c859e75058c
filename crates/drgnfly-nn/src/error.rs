//! The crate's error type: candle errors wrapped via `#[from]`, plus the model-level failures callers may
//! want to match on (bad configuration, coordinates outside the decoder's domain, checkpoint mismatches).

use std::path::PathBuf;

/// Result alias for `drgnfly-nn`.
pub type Result<T> = std::result::Result<T, Error>;

/// Errors of the neural-network layer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    // === Tensor backend ===
    /// An error from candle (shape mismatch in a tensor op, device error, ...).
    #[error(transparent)]
    Candle(#[from] candle_core::Error),

    // === Configuration ===
    /// A model or optimizer setting that cannot work.
    #[error("invalid model setting `{field}`: {problem}")]
    Config {
        /// The setting, spelled as in cryoDRGN's config.yaml (`pe_dim`, `zdim`, ...).
        field: &'static str,
        /// What is wrong and what would work.
        problem: String,
    },

    // === Inputs ===
    /// A tensor argument has the wrong shape.
    #[error("{what}: expected shape {expected}, got {got:?}")]
    Shape {
        /// Which argument.
        what: &'static str,
        /// The expected shape, in words such as `(B, N, 3)`.
        expected: String,
        /// The shape that was passed.
        got: Vec<usize>,
    },
    /// A spatial coordinate lies outside the lattice cube [−0.5, 0.5]³ the decoder was trained on.
    #[error(
        "decoder coordinate {value} at flat index {index} lies outside [-{extent}, {extent}]; \
         coordinates must be lattice frequencies (rotate only points inside the circular mask)"
    )]
    CoordinateOutOfRange {
        /// Flat index into the coordinate tensor (point · 3 + axis).
        index: usize,
        /// The offending value.
        value: f32,
        /// The allowed half-range.
        extent: f32,
    },
    /// A slice passed to the Fourier decoder's half-evaluation path is not centrosymmetric in point order.
    #[error(
        "Fourier decoder slice: point {index} is not the mirror image of point {mirror} \
         (|c_i + c_mirror| = {deviation}); pass masked lattice points in raster order so that point i \
         and point N−1−i are opposite, or call `decode` instead"
    )]
    NotCentrosymmetric {
        /// First point of the mismatched pair.
        index: usize,
        /// Its expected mirror.
        mirror: usize,
        /// Largest |c_i + c_mirror| component.
        deviation: f32,
    },
    /// A loss term became NaN or infinite.
    #[error("{term} is {value} ({hint})")]
    NonFinite {
        /// Which term (`gen loss`, `KLD`, ...).
        term: &'static str,
        /// The value.
        value: f32,
        /// What to try.
        hint: &'static str,
    },

    // === Checkpoints ===
    /// A checkpoint or weights file does not match the model being loaded.
    #[error("{}: {problem}; {hint}", path.display())]
    Checkpoint {
        /// The file.
        path: PathBuf,
        /// What does not match (tensor names and shapes).
        problem: String,
        /// How to fix it.
        hint: &'static str,
    },
    /// Reading or writing a file failed.
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: std::io::Error,
    },
}

impl Error {
    /// A configuration error for setting `field`.
    pub(crate) fn config(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Config { field, problem: problem.into() }
    }

    /// A shape error for argument `what`.
    pub(crate) fn shape(what: &'static str, expected: impl Into<String>, got: &[usize]) -> Self {
        Self::Shape { what, expected: expected.into(), got: got.to_vec() }
    }
}
