//! Training with known poses (cryoDRGN `train_vae` and `train_nn`, reference §2.2–2.8): turning raw
//! particle images into training tensors, and one optimisation step of the heterogeneous VAE or the
//! homogeneous decoder.
//!
//! - [`BatchPrep`]: raw `(B, D, D)` images + poses + CTF → [`PreparedBatch`] (window, invert, Hartley,
//!   normalize, translate by the pose shift, CTF, rotated slice coordinates, the encoder's phase-flipped
//!   input). Shifts are in **pixels** (the caller converts pose.pkl fractions, see `drgnfly_em`'s
//!   conventions).
//! - [`VaeTrainer`]: [`crate::HetOnlyVae`] + [`crate::Adam`]; [`VaeTrainer::train_step`] returns the loss
//!   terms and refuses to step on a NaN/Inf loss.
//! - [`HomoTrainer`]: the decoder alone with the MSE loss (`train_nn`).
//!
//! Epoch loops, data streaming and output files belong to the caller (the `drgnfly` binary), which owns the
//! file formats; everything here is deterministic for a seed and a thread count.

mod batch;
mod error;
mod homo;
mod vae;

pub use batch::{BatchPrep, EncoderInput, ImagePose, PreparedBatch};
pub use error::{TrainError, TrainResult};
pub use homo::HomoTrainer;
pub use vae::VaeTrainer;
