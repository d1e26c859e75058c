//! Errors of the trainers: the model layer's [`crate::Error`] or the physics layer's
//! [`drgnfly_em::Error`] (bad images, CTF parameters, shapes), kept apart so callers can tell a bad input
//! image from a diverging model.

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
}

impl From<candle_core::Error> for TrainError {
    fn from(e: candle_core::Error) -> Self {
        TrainError::Model(crate::Error::Candle(e))
    }
}
