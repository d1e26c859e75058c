//! The homogeneous trainer (cryoDRGN `train_nn`): a coordinate decoder without latent, fitted by the MSE
//! between the CTF-weighted slice and the translated image on the loss mask; optionally refining the poses
//! ([`PoseRefinement`], cryoDRGN's `--do-pose-sgd`).
//!
//! Parameter names have no prefix (`rand_freqs`, `decoder.main.*`), as cryoDRGN's `train_nn` model.

use std::path::Path;

use candle_core::backprop::GradStore;

use super::batch::{BatchPrep, PreparedBatch};
use super::collective::Share;
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::pose_sgd::{prepare_step, PoseRefinement, RefinableBatch};
use super::pose_table::PoseTable;
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::decoder::{Decoder, DecoderConfig};
use crate::error::Error;
use crate::params::ParamStore;
use crate::phases::{self, Phase};

/// Decoder, parameters, optimizer and batch preparation of a `train_nn` run.
pub struct HomoTrainer {
    store: ParamStore,
    decoder: Decoder,
    adam: Adam,
    prep: BatchPrep,
    refine: Option<PoseRefinement>,
}

impl HomoTrainer {
    /// A fresh decoder (`decoder.zdim` must be 0) initialised from `seed`, trained on batches from `prep`.
    pub fn new(decoder: &DecoderConfig, seed: u64, adam: AdamConfig, prep: BatchPrep) -> TrainResult<Self> {
        if decoder.zdim != 0 {
            return Err(Error::Config {
                field: "zdim",
                problem: format!("a homogeneous decoder has no latent, got zdim {}", decoder.zdim),
            }
            .into());
        }
        let store = ParamStore::new(seed, prep.device());
        let decoder = Decoder::new(decoder, store.var_builder())?;
        let adam = Adam::new(store.named_vars(), adam)?;
        Ok(Self { store, decoder, adam, prep, refine: None })
    }

    /// The parameters.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The batch preparation.
    pub fn prep(&self) -> &BatchPrep {
        &self.prep
    }

    /// Refine the poses by gradient descent (`--do-pose-sgd`): the table is written as pose.E.pkl.
    pub fn with_pose_refinement(mut self, refine: PoseRefinement) -> Self {
        self.refine = Some(refine);
        self
    }

    /// One step; returns the batch's MSE before the step, or [`Error::NonFinite`] (no step taken).
    pub fn train_step(&mut self, batch: &PreparedBatch) -> TrainResult<f32> {
        mse_step(&self.decoder, &mut self.adam, batch)
    }
}

/// One Adam step of a latent-free decoder on the MSE between the CTF-weighted slice and the target; returns
/// the MSE before the step, or [`Error::NonFinite`] (no step taken). Shared by the homogeneous trainers.
pub(super) fn mse_step(decoder: &Decoder, adam: &mut Adam, batch: &PreparedBatch) -> TrainResult<f32> {
    let (loss, value) = mse_loss(decoder, batch, None)?;
    adam.backward_step(&loss)?;
    Ok(value)
}

/// [`mse_step`] on this process's share of a batch (`None`: an empty share), with the gradients summed over
/// the processes of `share`; returns the share's MSE (0 when empty) and the gradients it stepped with.
pub(super) fn shared_mse_step(
    (decoder, store): (&Decoder, &ParamStore),
    adam: &mut Adam,
    batch: Option<&PreparedBatch>,
    share: Share<'_>,
) -> TrainResult<(f32, GradStore)> {
    let (value, grads) = match batch {
        Some(b) => {
            let (loss, value) = phases::time(Phase::Forward, || mse_loss(decoder, b, None))?;
            (value, Some(phases::time(Phase::Backward, || loss.backward())?))
        }
        None => (0.0, None),
    };
    Ok((value, share.adam_step(adam, &store.named_vars(), grads)?))
}

/// The MSE between the CTF-weighted slice (decoded at latents `z`, `(B, zdim)`, for a heterogeneous
/// decoder) and the target, as a tensor and a finite value.
pub(super) fn mse_loss(
    decoder: &Decoder,
    batch: &PreparedBatch,
    z: Option<&candle_core::Tensor>,
) -> TrainResult<(candle_core::Tensor, f32)> {
    let loss = residual(decoder, batch, z)?.sqr()?.mean_all()?;
    let value = finite_loss(&loss)?;
    Ok((loss, value))
}

/// CTF-weighted slice (decoded at latents `z`) minus the target: (B, points).
pub(super) fn residual(
    decoder: &Decoder,
    batch: &PreparedBatch,
    z: Option<&candle_core::Tensor>,
) -> TrainResult<candle_core::Tensor> {
    let slice = decoder.forward(&batch.coords, z)?;
    let pred = match &batch.ctf {
        Some(c) => (slice * c)?,
        None => slice,
    };
    Ok((pred - &batch.target)?)
}

/// The value of a scalar loss, or [`Error::NonFinite`] when it is NaN or infinite.
pub(super) fn finite_loss(loss: &candle_core::Tensor) -> TrainResult<f32> {
    let value = loss.to_scalar::<f32>()?;
    if !value.is_finite() {
        return Err(Error::NonFinite {
            term: "loss",
            value,
            hint: "check the images and the normalisation for NaN/Inf, or lower the learning rate",
        }
        .into());
    }
    Ok(value)
}

impl Trainer for HomoTrainer {
    fn loss_terms(&self) -> &'static [&'static str] {
        &["loss"]
    }

    fn step(&mut self, step: Step<'_>) -> TrainResult<Vec<f32>> {
        let (batch, vars) = if step.positions.is_empty() {
            (None, None)
        } else {
            let RefinableBatch { batch, vars } = prepare_step(self.refine.as_ref(), &self.prep, &step)?;
            (Some(batch), vars)
        };
        let (value, grads) =
            shared_mse_step((&self.decoder, &self.store), &mut self.adam, batch.as_ref(), step.share())?;
        if let Some(refine) = self.refine.as_mut() {
            refine.update(&step, vars.as_ref(), &grads)?;
        }
        Ok(vec![value])
    }

    fn data_parallel(&self) -> bool {
        true
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(&self.store, Some(&self.adam))?;
        if let Some(r) = &self.refine {
            r.save(&mut ckpt)?;
        }
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(&self.store, Some(&mut self.adam), path)?;
        if let Some(r) = &mut self.refine {
            r.restore(ckpt, path)?;
        }
        Ok(())
    }

    fn pose_table(&self) -> Option<&PoseTable> {
        self.refine.as_ref().map(PoseRefinement::table)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::Domain;
    use crate::train::{BatchPrep, EncoderInput};
    use candle_core::Device;
    use drgnfly_em::pose::Pose;
    use drgnfly_em::preprocess::{Normalization, PreprocessConfig};

    #[test]
    fn fits_a_fixed_batch_and_rejects_a_latent() {
        let d = 8;
        let prep = || {
            let norm = Normalization { mean: 0.0, std: 5.0 };
            BatchPrep::new(d, &PreprocessConfig::default(), norm, EncoderInput::None, &Device::Cpu).unwrap()
        };
        let mut cfg = DecoderConfig::new(d + 1, 0);
        (cfg.layers, cfg.dim, cfg.domain) = (1, 32, Domain::Hartley);
        let adam = AdamConfig { lr: 1e-2, ..Default::default() };
        let mut t = HomoTrainer::new(&cfg, 0, adam, prep()).unwrap();
        // The same image twice with the same pose: a decoder can fit it exactly.
        let raw: Vec<f32> = (0..2 * 64).map(|i| ((i % 64 * 5) % 11) as f32 - 5.0).collect();
        let id = Pose::IDENTITY;
        let b = t.prep().prepare(&raw, &[id; 2], None).unwrap();
        assert!(b.encoder_input.is_none());
        let first = t.train_step(&b).unwrap();
        let last = (0..200).map(|_| t.train_step(&b).unwrap()).last().unwrap();
        assert!(last < 0.3 * first, "{first} → {last}");
        assert!(t.store().named_vars().iter().any(|(n, _)| n == "decoder.main.0.weight"));
        cfg.zdim = 1;
        assert!(HomoTrainer::new(&cfg, 0, adam, prep()).is_err());
    }
}
