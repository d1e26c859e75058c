//! Training (cryoDRGN `train_vae` and `train_nn`, reference §2.2–2.8): the one training driver, batch
//! preparation, per-particle pose tables, and the trainers that plug into the driver.
//!
//! - [`fit`] / [`resume`] / [`ordered_pass`]: the epoch loop, resume and inference passes ([`driver`]);
//!   a trainer implements [`Trainer`] (its step and its state), the caller implements [`Hooks`].
//! - [`BatchPrep`]: raw `(B, D, D)` images + poses + CTF → [`PreparedBatch`] (window, invert, Hartley,
//!   normalize, translate by the pose shift, CTF, rotated slice coordinates, the encoder's phase-flipped
//!   input). Shifts are in **pixels** ([`drgnfly_em::pose::Pose`]).
//! - [`VaeTrainer`] ([`VaeModel`] + Adam + [`KlSchedule`]) and [`HomoTrainer`] (the decoder alone, MSE).
//! - [`AbinitHomoTrainer`]: homogeneous ab initio (pretraining, per-batch pose search against the current
//!   map with frequency marching, decoder training on the found poses).
//! - [`AbinitHetTrainer`]: heterogeneous ab initio (the same with a VAE; each image is searched against
//!   the map at the conformation nearest its latent).
//! - [`AbinitAiTrainer`]: ab initio as cryoDRGN-AI (a few search epochs, then SGD of the pose table,
//!   the conformation table [`LatentTable`] and the decoder).
//! - [`PoseTable`]: per-particle rotations and shifts with sparse Adam, for trainers that refine poses;
//!   [`PoseRefinement`]: local refinement of given poses by gradient descent (`--do-pose-sgd`).
//!
//! Everything here is deterministic for a seed and a thread count; nothing prints.

mod abinit;
mod abinit_ai;
mod abinit_het;
mod amortized;
mod batch;
mod collective;
mod driver;
mod error;
mod homo;
mod latent_table;
mod pose_sgd;
mod pose_table;
mod row_adam;
mod search_epoch;
mod vae;

pub use crate::rotation::{rotation_matrices, RotationParam};
pub use abinit::{AbinitHomoTrainer, AbinitSchedule};
pub use abinit_ai::{AbinitAiTrainer, AiSchedule, OutputMask};
pub use abinit_het::AbinitHetTrainer;
pub use amortized::{AmortizedConfig, AmortizedModel, AmortizedTrainer, CppConfig, HetConfig, Inference};
pub use batch::{BatchPrep, EncoderInput, PreparedBatch};
#[cfg(feature = "mpi")]
pub use collective::MpiWorld;
#[cfg(feature = "nccl")]
pub use collective::NcclWorld;
pub use collective::{check_agreement, gather_rows, reduce_gradients, Collective, SingleProcess, Traffic};
pub use driver::{
    checkpoint_path, fit, ordered_pass, ordered_rows, resume, EpochSummary, Hooks, Schedule, Step, Trainer,
};
pub use error::{TrainError, TrainResult};
pub use homo::HomoTrainer;
pub use latent_table::{LatentTable, LatentVars};
pub use pose_sgd::{PoseRefinement, RefinableBatch};
pub use pose_table::{PoseAdamConfig, PoseTable};
pub use row_adam::Stepping;
pub use vae::{KlSchedule, VaeModel, VaeTrainer};
