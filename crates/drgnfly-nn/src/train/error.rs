//! Errors of the trainers and the training driver: the model layer's [`crate::Error`], the physics layer's
//! [`drgnfly_em::Error`] (bad images, CTF parameters, shapes) and the file layer's [`drgnfly_io::Error`], kept
//! apart so callers can tell a bad input from a diverging model; plus where in training a failure happened.

/// Result alias for the trainers.
pub type TrainResult<T> = std::result::Result<T, TrainError>;

/// A training failure.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TrainError {
    /// The model, the optimizer or a loss term (NaN/Inf losses are [`crate::Error::NonFinite`]).
    #[error(transparent)]
    Model(#[from] crate::Error),
    /// Preprocessing the images: NaN/Inf pixels, shape contracts, CTF parameters.
    #[error(transparent)]
    Data(#[from] drgnfly_em::Error),
    /// Reading particles, poses, CTF or a selection.
    #[error(transparent)]
    Io(#[from] drgnfly_io::Error),
    /// Input files that disagree or hold unusable values; the message names the file and the fix.
    #[error("{message}")]
    Input {
        /// File, problem and what to do.
        message: String,
    },
    /// Writing a checkpoint's weights failed (a full disk, say); the previous checkpoint is intact.
    #[error(
        "writing the checkpoint of epoch {epoch} failed: {source}; the previous checkpoint is complete and \
         `--load latest` resumes from it once the problem is fixed"
    )]
    Checkpoint {
        /// The epoch whose checkpoint failed (1-based).
        epoch: usize,
        /// Why (boxed: this error travels through every training call).
        source: Box<crate::Error>,
    },
    /// The caller asked to stop (an interrupt) after the batch in progress; nothing of the epoch is saved.
    #[error("interrupted during epoch {epoch}")]
    Interrupted {
        /// The epoch that was stopped (1-based).
        epoch: usize,
    },
    /// The processes of a data-parallel run cannot work together (they disagree on the data or the
    /// schedule, or the trainer runs on one process only); the message says what to change.
    #[error("{message}")]
    Parallel {
        /// What disagrees and what to do.
        message: String,
    },
    /// A failure inside one batch, with the batch's particles (and the one with a NaN/Inf pixel, if any).
    #[error("{context}")]
    InBatch {
        /// Stage, batch number, particle positions (see [`crate::data::Dataset::batch_context`]).
        context: String,
        /// What failed.
        #[source]
        source: Box<TrainError>,
    },
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Model(crate::Error::Candle(e))
    }
}
