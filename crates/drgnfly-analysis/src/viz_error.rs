//! The error type of the picture-making modules ([`crate::plot`], [`crate::render`], [`crate::report`]).
//!
//! Kept separate from the numerical modules' error so the two halves of the crate could be written in
//! parallel; it converts from [`drgnfly_io::Error`] (file writes go through `drgnfly_io::atomic`).

use std::path::PathBuf;

/// Result alias for plots, renders and reports.
pub type VizResult<T> = std::result::Result<T, VizError>;

/// Errors from making plots, volume pictures and reports.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VizError {
    /// Writing or reading a file failed (the inner error names the path).
    #[error(transparent)]
    Io(#[from] drgnfly_io::Error),
    /// Inputs that must agree in size do not, e.g. `x` and `labels` of a scatter plot.
    #[error("{what}: expected {expected}, got {got}")]
    Shape {
        /// Which input, e.g. "scatter labels".
        what: String,
        /// The size required by the other inputs.
        expected: String,
        /// The size given.
        got: String,
    },
    /// An input value is unusable, e.g. an empty volume or a non-finite threshold.
    #[error("{what}: {problem}")]
    Invalid {
        /// Which input.
        what: String,
        /// What is wrong with it and what to do.
        problem: String,
    },
    /// The drawing library failed (for example the embedded font could not be loaded).
    #[error("drawing {what}: {problem}")]
    Draw {
        /// The picture being drawn.
        what: String,
        /// The library's message.
        problem: String,
    },
    /// PNG encoding failed.
    #[error("encoding PNG {}: {problem}", path.as_ref().map(|p| p.display().to_string()).unwrap_or_default())]
    Encode {
        /// Target file, when known.
        path: Option<PathBuf>,
        /// The encoder's message.
        problem: String,
    },
}

impl VizError {
    /// A size mismatch between inputs.
    pub fn shape(what: impl Into<String>, expected: impl ToString, got: impl ToString) -> Self {
        Self::Shape { what: what.into(), expected: expected.to_string(), got: got.to_string() }
    }

    /// An unusable input value.
    pub fn invalid(what: impl Into<String>, problem: impl Into<String>) -> Self {
        Self::Invalid { what: what.into(), problem: problem.into() }
    }

    /// A drawing-library failure while drawing `what`.
    pub fn draw(what: impl Into<String>, problem: impl ToString) -> Self {
        Self::Draw { what: what.into(), problem: problem.to_string() }
    }
}
