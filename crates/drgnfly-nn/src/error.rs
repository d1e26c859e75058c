//! The crate's error type: candle, physics-layer and file-layer errors wrapped via `#[from]`, plus the
//! model-level failures callers may want to match on (bad configuration, coordinates outside the decoder's
//! domain, checkpoint mismatches, unusable run files, volume requests that cannot work).

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
    /// An error of the physics layer (FFT plans, lattices, filters) while making volumes.
    #[error(transparent)]
    Physics(#[from] drgnfly_em::Error),
    /// An error of the file layer (MRC, pickles) while reading a run's files or writing volumes.
    #[error(transparent)]
    File(#[from] drgnfly_io::Error),

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

    // === Run files ([`crate::config`], [`crate::volume`]) ===
    /// A run's config.yaml, or a file it names (its ctf.pkl), holds something unusable.
    #[error("{}: {problem}", path.display())]
    RunFile {
        /// The file.
        path: PathBuf,
        /// What is wrong (the key, e.g. `dataset_args.norm: …`) and what to do.
        problem: String,
    },
    /// A value of a [`crate::config::RunConfig`] that cannot work: `model_args.enc_mask`, or
    /// `dataset_args.norm` of a config built in code ([`crate::config::RunConfig::read`] checks the norm
    /// and `lattice_args.D` and reports them as [`Error::RunFile`], naming the file).
    #[error("{message}")]
    RunSetting {
        /// The key, its value and what would work (`model_args.enc_mask = 40: must be …`).
        message: String,
    },
    /// A [`crate::volume::VolumeRequest`] that cannot work, named by its `eval-vol` option.
    #[error("{option} {value}: {problem}")]
    VolumeRequest {
        /// The option, e.g. `--crop`.
        option: &'static str,
        /// The value given.
        value: String,
        /// What would work.
        problem: String,
    },
    /// A failure with what was being done when it happened (which file, against which config).
    #[error("{context}")]
    Context {
        /// What was being done, naming the files.
        context: String,
        /// What failed.
        #[source]
        source: Box<Error>,
    },
}

impl Error {
    /// A configuration error for setting `field`.
    pub(crate) fn config(field: &'static str, problem: impl Into<String>) -> Self {
        Self::Config { field, problem: problem.into() }
    }

    /// A problem with the run file `path`.
    pub(crate) fn run_file(path: &std::path::Path, problem: impl Into<String>) -> Self {
        Self::RunFile { path: path.to_path_buf(), problem: problem.into() }
    }

    /// This error, with what was being done when it happened.
    pub(crate) fn context(self, context: impl Into<String>) -> Self {
        Self::Context { context: context.into(), source: Box::new(self) }
    }

    /// A shape error for argument `what`.
    pub(crate) fn shape(what: &'static str, expected: impl Into<String>, got: &[usize]) -> Self {
        Self::Shape { what, expected: expected.into(), got: got.to_vec() }
    }
}
