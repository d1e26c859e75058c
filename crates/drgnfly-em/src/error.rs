//! The one error type of `drgnfly-em`.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from physics and reconstruction routines: shape contracts and invalid parameters.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Arrays whose shapes do not fit together.
    #[error("{op}: shape mismatch: expected {expected}, got {got}")]
    Shape {
        /// The operation that checked.
        op: &'static str,
        /// What was expected, e.g. "(B, 65, 65)".
        expected: String,
        /// What was passed.
        got: String,
    },
    /// A parameter outside its valid range.
    #[error("{name} = {value}: {why}")]
    Param {
        /// Parameter name as the user knows it (a flag or a column).
        name: &'static str,
        /// The offending value.
        value: String,
        /// Why it is invalid and what is allowed.
        why: String,
    },
    /// Reading or writing a file a routine was handed (e.g. the scratch store of a simulation).
    #[error("{}: {source}", path.display())]
    Io {
        /// The file.
        path: std::path::PathBuf,
        /// What failed.
        source: std::io::Error,
    },
}
