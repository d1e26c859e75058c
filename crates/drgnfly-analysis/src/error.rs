//! The one error type of `drgnfly-analysis`.
//!
//! Analysis routines take in-memory arrays, not files: the binary adds the file name (`z.N.pkl`,
//! `run.log`, …) as context at its layer. Variants carry the record (row, dimension, line, particle
//! index) and say what to do.

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from latent-space analysis.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// Arrays whose shapes do not fit together.
    #[error("{what}: shape mismatch: expected {expected}, got {got}")]
    Shape {
        /// The array or operation that checked, e.g. "latents".
        what: &'static str,
        /// What was expected, e.g. "a multiple of zdim = 8 values".
        expected: String,
        /// What was passed.
        got: String,
    },
    /// A NaN or infinite value where a finite one is needed.
    #[error(
        "{what}: row {row}, dimension {col} is {value}; analysis needs finite values. The training run \
         probably diverged at this particle: retrain from an earlier checkpoint, or exclude the row with --ind"
    )]
    NonFinite {
        /// The array, e.g. "latents".
        what: &'static str,
        /// Row (particle) index, 0-based.
        row: usize,
        /// Column (latent dimension), 0-based.
        col: usize,
        /// The offending value.
        value: f32,
    },
    /// A parameter outside its valid range.
    #[error("{name} = {value}: {why}")]
    Param {
        /// Parameter name as the user knows it (usually a flag, e.g. "--ksample").
        name: &'static str,
        /// The offending value.
        value: String,
        /// Why it is invalid and what is allowed.
        why: String,
    },
    /// Too few data points for the requested analysis.
    #[error("{what} needs at least {needed} particles, got {got}. {hint}")]
    TooFew {
        /// The analysis, e.g. "k-means with k = 20".
        what: String,
        /// Minimum number of particles.
        needed: usize,
        /// Number given.
        got: usize,
        /// What the user can do.
        hint: &'static str,
    },
    /// Dijkstra found no path between two anchors: the kNN graph is disconnected.
    #[error(
        "no path from particle {from} to particle {to} in the latent neighbour graph (it is disconnected). \
         Increase --avg-neighbors and/or --max-neighbors, or pick anchors in the same region"
    )]
    NoPath {
        /// Start anchor (particle index).
        from: usize,
        /// End anchor (particle index).
        to: usize,
    },
    /// A statistic that is undefined for this input (e.g. a rank correlation of a constant).
    #[error("{what} is undefined: {why}")]
    Degenerate {
        /// The statistic.
        what: &'static str,
        /// Why.
        why: String,
    },
    /// A malformed line in a text input (z values text file).
    #[error("line {line}: {problem}")]
    Parse {
        /// 1-based line number.
        line: usize,
        /// What is wrong and what was expected.
        problem: String,
    },
    /// An error from `drgnfly-em` (masks, FSC) inside an analysis.
    #[error(transparent)]
    Em(#[from] drgnfly_em::Error),
}
