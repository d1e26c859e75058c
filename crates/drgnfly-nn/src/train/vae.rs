//! The heterogeneous VAE trainer (cryoDRGN `train_vae.train_batch` / `eval_batch`).
//!
//! One step: encode the phase-flipped image, draw z = μ + ε·σ, decode the rotated slice, multiply by the
//! CTF, loss = gen + β·KLD/M, or gen + γ·(β − KLD)²/M under `--beta-control` ([`crate::vae_loss`]), with β
//! from its schedule ([`crate::BetaSchedule`]) at the number of images seen, Adam step. The loss is read back **before** the step, so
//! a NaN/Inf term stops training with the weights of the last good step.

use std::path::Path;

use candle_core::Device;
use rand::Rng;

use super::batch::{BatchPrep, PreparedBatch};
use super::collective::Share;
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::pose_sgd::{prepare_step, PoseRefinement, RefinableBatch};
use super::pose_table::PoseTable;
use crate::adam::{Adam, AdamConfig};
use crate::beta::BetaSchedule;
use crate::checkpoint::Checkpoint;
use crate::decoder::DecoderConfig;
use crate::encoder::EncoderConfig;
use crate::error::Error;
use crate::loss::{vae_loss, KlWeight, LossValues, VaeLoss};
use crate::params::ParamStore;
use crate::phases::{self, Phase};
use crate::vae::HetOnlyVae;

/// A VAE and its parameters, without an optimizer: what evaluation needs.
pub struct VaeModel {
    store: ParamStore,
    model: HetOnlyVae,
}

impl VaeModel {
    /// A fresh model initialised from `seed` (PyTorch's default initialisation).
    pub fn new(
        encoder: &EncoderConfig,
        decoder: &DecoderConfig,
        seed: u64,
        device: &Device,
    ) -> TrainResult<Self> {
        let store = ParamStore::new(seed, device);
        let model = HetOnlyVae::new(encoder, decoder, store.var_builder())?;
        Ok(Self { store, model })
    }

    /// The parameters (state dict).
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The model.
    pub fn model(&self) -> &HetOnlyVae {
        &self.model
    }

    /// Evaluation mode (z = μ), no step: the loss terms under `kl` and the posterior (μ, log σ²), each
    /// `B × zdim` row-major (`eval_images`). Keeps nothing for a backward pass.
    pub fn evaluate(
        &self,
        batch: &PreparedBatch,
        kl: KlWeight,
    ) -> TrainResult<(LossValues, Vec<f32>, Vec<f32>)> {
        let input = encoder_input(batch)?;
        // The RNG is not used in evaluation mode.
        let mut rng = <rand_chacha::ChaCha8Rng as rand::SeedableRng>::seed_from_u64(0);
        let out = crate::no_grad(|| self.model.forward(input, &batch.coords, false, &mut rng))?;
        let loss = vae_loss(&out.slice, &batch.target, batch.ctf.as_ref(), &out.mu, &out.logvar, kl)?;
        let (mu, logvar) =
            (out.mu.flatten_all()?.to_vec1::<f32>()?, out.logvar.flatten_all()?.to_vec1::<f32>()?);
        Ok((loss.values()?, mu, logvar))
    }

    /// Posterior (μ, log σ²) of every image of the batch, each `B × zdim` row-major.
    pub fn encode(&self, batch: &PreparedBatch) -> TrainResult<(Vec<f32>, Vec<f32>)> {
        let (mu, logvar) = self.model.encoder.forward(encoder_input(batch)?)?;
        Ok((mu.flatten_all()?.to_vec1::<f32>()?, logvar.flatten_all()?.to_vec1::<f32>()?))
    }
}

/// The KLD weighting of a VAE run: β (constant or scheduled) and, under `--beta-control`, its γ.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct KlSchedule {
    /// β, or a schedule in images seen.
    pub beta: BetaSchedule,
    /// γ of `--beta-control` (required by a β schedule, as in cryoDRGN).
    pub control: Option<f64>,
}

impl KlSchedule {
    /// Check the numbers.
    pub fn new(beta: BetaSchedule, control: Option<f64>) -> TrainResult<Self> {
        if let BetaSchedule::Constant(b) = beta {
            if !(b.is_finite() && b >= 0.0) {
                return Err(Error::Config { field: "beta", problem: format!("must be ≥ 0, got {b}") }.into());
            }
        }
        match control {
            None if beta.is_scheduled() => Err(Error::Config {
                field: "beta",
                problem: "a β schedule is a KLD target: give its weight with --beta-control (e.g. 1)".into(),
            }
            .into()),
            Some(g) if !(g.is_finite() && g > 0.0) => {
                Err(Error::Config { field: "beta-control", problem: format!("must be > 0, got {g}") }.into())
            }
            _ => Ok(Self { beta, control }),
        }
    }

    /// The KL term after `images` images of training (`u64::MAX`: the end of the schedule).
    pub fn at(&self, images: u64) -> KlWeight {
        let beta = self.beta.value(images);
        match self.control {
            Some(gamma) => KlWeight::Control { beta, gamma },
            None => KlWeight::Beta(beta),
        }
    }
}

/// Model, optimizer and batch preparation of a `train_vae` run.
pub struct VaeTrainer {
    model: VaeModel,
    adam: Adam,
    kl: KlSchedule,
    prep: BatchPrep,
    refine: Option<PoseRefinement>,
}

impl VaeTrainer {
    /// A fresh model initialised from `seed`, Adam with `adam`, the KLD weighting `kl`, and batches
    /// prepared by `prep` (which must have an encoder input).
    pub fn new(
        encoder: &EncoderConfig,
        decoder: &DecoderConfig,
        seed: u64,
        adam: AdamConfig,
        kl: KlSchedule,
        prep: BatchPrep,
    ) -> TrainResult<Self> {
        let model = VaeModel::new(encoder, decoder, seed, prep.device())?;
        let adam = Adam::new(model.store.named_vars(), adam)?;
        Ok(Self { model, adam, kl, prep, refine: None })
    }

    /// The model being trained.
    pub fn model(&self) -> &VaeModel {
        &self.model
    }

    /// The batch preparation.
    pub fn prep(&self) -> &BatchPrep {
        &self.prep
    }

    /// One optimisation step on `batch` (which must have an encoder input), the `images`-th image of training
    /// counting this batch (for the β schedule); `rng` draws the reparameterisation noise. Returns the loss
    /// terms before the step.
    pub fn train_step(
        &mut self,
        batch: &PreparedBatch,
        images: u64,
        rng: &mut impl Rng,
    ) -> TrainResult<LossValues> {
        let loss = self.loss(batch, images, rng)?;
        let values = loss.values()?;
        self.adam.backward_step(&loss.total)?;
        Ok(values)
    }

    /// The loss of `batch` in training mode (z sampled), β at `images` seen.
    fn loss(&self, batch: &PreparedBatch, images: u64, rng: &mut impl Rng) -> TrainResult<VaeLoss> {
        let out = self.model.model.forward(encoder_input(batch)?, &batch.coords, true, rng)?;
        let kl = self.kl.at(images);
        Ok(vae_loss(&out.slice, &batch.target, batch.ctf.as_ref(), &out.mu, &out.logvar, kl)?)
    }

    /// Refine the poses by gradient descent (`--do-pose-sgd`): the table is written as pose.E.pkl.
    pub fn with_pose_refinement(mut self, refine: PoseRefinement) -> Self {
        self.refine = Some(refine);
        self
    }
}

impl Trainer for VaeTrainer {
    fn loss_terms(&self) -> &'static [&'static str] {
        &["gen loss", "KLD", "total loss"]
    }

    fn step(&mut self, mut step: Step<'_>) -> TrainResult<Vec<f32>> {
        // On more than one process, this share's latent noise is what one process draws for it.
        let zdim = self.model.model.encoder.zdim();
        step.skip_normals(step.offset, zdim);
        let (values, grads, vars) = if step.positions.is_empty() {
            ([0.0; 3], None, None)
        } else {
            let RefinableBatch { batch, vars } = prepare_step(self.refine.as_ref(), &self.prep, &step)?;
            let loss = phases::time(Phase::Forward, || self.loss(&batch, step.images_seen, &mut *step.rng))?;
            let v = loss.values()?;
            ([v.gen, v.kld, v.total], Some(phases::time(Phase::Backward, || loss.total.backward())?), vars)
        };
        step.skip_normals(step.images_after(), zdim);
        let grads = step.share().adam_step(&mut self.adam, &self.model.store.named_vars(), grads)?;
        if let Some(refine) = self.refine.as_mut() {
            refine.update(&step, vars.as_ref(), &grads)?;
        }
        Ok(values.to_vec())
    }

    /// Every loss term is a mean over images, except the KL term under `--beta-control`.
    fn data_parallel(&self) -> bool {
        self.kl.control.is_none()
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(&self.model.store, Some(&self.adam))?;
        if let Some(r) = &self.refine {
            r.save(&mut ckpt)?;
        }
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(&self.model.store, Some(&mut self.adam), path)?;
        if let Some(r) = &mut self.refine {
            r.restore(ckpt, path)?;
        }
        Ok(())
    }

    fn pose_table(&self) -> Option<&PoseTable> {
        self.refine.as_ref().map(PoseRefinement::table)
    }
}

/// One Adam step of `model` on `batch` computed `piece` images at a time: the gradients of the pieces'
/// losses, each weighted by its share of the batch, are summed before the step, so the step is that of the
/// whole batch (up to float rounding) while the memory of the forward and backward passes is that of
/// `piece` images. A KL term under `--beta-control` is not a sum over images, so that loss takes the batch
/// whole. `rng` draws the latents' noise in image order, as one pass would. Returns the batch's loss terms,
/// measured before the step.
pub(super) fn vae_step_in_pieces(
    model: &VaeModel,
    adam: &mut Adam,
    (batch, kl, share): (Option<&PreparedBatch>, KlWeight, Share<'_>),
    piece: usize,
    rng: &mut impl Rng,
) -> TrainResult<LossValues> {
    let mut sum = LossValues { gen: 0.0, kld: 0.0, total: 0.0 };
    let Some(batch) = batch else {
        // An empty share: no loss, but this process takes the batch's step with the others.
        share.adam_step(adam, &model.store.named_vars(), None)?;
        return Ok(sum);
    };
    let b = batch.len();
    let piece = if matches!(kl, KlWeight::Control { .. }) { b } else { piece.clamp(1, b.max(1)) };
    let mut grads: Option<candle_core::backprop::GradStore> = None;
    for start in (0..b).step_by(piece) {
        let len = piece.min(b - start);
        let part = batch.narrow(start, len)?;
        let out = model.model.forward(encoder_input(&part)?, &part.coords, true, rng)?;
        let loss = vae_loss(&out.slice, &part.target, part.ctf.as_ref(), &out.mu, &out.logvar, kl)?;
        let v = loss.values()?;
        let w = len as f32 / b as f32;
        (sum.gen, sum.kld, sum.total) = (sum.gen + w * v.gen, sum.kld + w * v.kld, sum.total + w * v.total);
        let g = (loss.total * f64::from(w))?.backward()?;
        add_grads(&mut grads, g, &model.store.named_vars())?;
    }
    share.adam_step(adam, &model.store.named_vars(), grads)?;
    Ok(sum)
}

/// Adds the gradients `g` of `vars` to `acc` (the sum over the pieces of a step).
pub(super) fn add_grads(
    acc: &mut Option<candle_core::backprop::GradStore>,
    g: candle_core::backprop::GradStore,
    vars: &[(String, candle_core::Var)],
) -> TrainResult<()> {
    let Some(sum) = acc.as_mut() else {
        *acc = Some(g);
        return Ok(());
    };
    for (_, var) in vars {
        let Some(gi) = g.get(var.as_tensor()) else { continue };
        let total = match sum.get(var.as_tensor()) {
            Some(a) => (a + gi)?,
            None => gi.clone(),
        };
        sum.insert(var.as_tensor(), total);
    }
    Ok(())
}

pub(super) fn encoder_input(batch: &PreparedBatch) -> TrainResult<&candle_core::Tensor> {
    batch.encoder_input.as_ref().ok_or_else(|| {
        Error::Config {
            field: "enc_mask",
            problem: "the batch was prepared without encoder input (EncoderInput::None)".into(),
        }
        .into()
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::decoder::Domain;
    use crate::train::{BatchPrep, EncoderInput};
    use drgnfly_em::pose::Pose;
    use drgnfly_em::preprocess::{Normalization, PreprocessConfig};
    use rand::SeedableRng;
    use rand_chacha::ChaCha8Rng;

    fn setup(seed: u64) -> VaeTrainer {
        let d = 8;
        let prep = BatchPrep::new(
            d,
            &PreprocessConfig::default(),
            Normalization { mean: 0.0, std: 5.0 },
            EncoderInput::Disc(d / 2),
            &Device::Cpu,
        )
        .unwrap();
        let mut enc = EncoderConfig::new(prep.encoder_dim(), 2);
        (enc.layers, enc.dim) = (1, 16);
        let mut dec = DecoderConfig::new(d + 1, 2);
        (dec.layers, dec.dim, dec.domain) = (1, 16, Domain::Fourier);
        let adam = AdamConfig { lr: 1e-2, ..Default::default() };
        let kl = KlSchedule::new(BetaSchedule::Constant(0.5), None).unwrap();
        VaeTrainer::new(&enc, &dec, seed, adam, kl, prep).unwrap()
    }

    fn batch(prep: &BatchPrep) -> PreparedBatch {
        // Two images, each twice.
        let raw: Vec<f32> = (0..4 * 64).map(|i| ((i % 128 * 13) % 7) as f32 - 3.0).collect();
        let pose = Pose { rot: [[1.0, 0.0, 0.0], [0.0, 0.0, 1.0], [0.0, -1.0, 0.0]], shift_px: [1.0, -0.5] };
        prep.prepare(&raw, &[pose; 4], None).unwrap()
    }

    #[test]
    fn steps_lower_the_loss_and_are_reproducible() {
        let run = || {
            let mut t = setup(3);
            let b = batch(t.prep());
            let mut rng = ChaCha8Rng::seed_from_u64(1);
            let losses: Vec<f32> =
                (0..100).map(|i| t.train_step(&b, 4 * (i + 1), &mut rng).unwrap().total).collect();
            (losses, t.model().encode(&b).unwrap())
        };
        let (a, za) = run();
        let (b, zb) = run();
        assert_eq!(a, b, "same seed, same losses");
        assert_eq!(za, zb);
        assert!(a[99] < 0.5 * a[0], "loss should fall on one repeated batch: {} → {}", a[0], a[99]);
        assert_eq!(za.0.len(), 4 * 2);
    }

    /// A step in pieces is the step of the whole batch: same loss, same weights after it (to rounding).
    #[test]
    fn a_step_in_pieces_is_the_step_of_the_batch() {
        let weights_after = |piece: usize| {
            let mut t = setup(5);
            let b = batch(t.prep());
            let kl = t.kl.at(4);
            let mut rng = ChaCha8Rng::seed_from_u64(2);
            let loss = vae_step_in_pieces(
                &t.model,
                &mut t.adam,
                (Some(&b), kl, Share::whole(&[0, 1, 2, 3])),
                piece,
                &mut rng,
            )
            .unwrap();
            let w: Vec<f32> = t
                .model()
                .store()
                .named_vars()
                .into_iter()
                .flat_map(|(_, v)| v.as_tensor().flatten_all().unwrap().to_vec1::<f32>().unwrap())
                .collect();
            (loss, w)
        };
        let (whole, w4) = weights_after(4);
        for piece in [1, 3] {
            let (loss, w) = weights_after(piece);
            assert!(
                (loss.total - whole.total).abs() < 1e-5 * whole.total.abs().max(1.0),
                "{loss:?} vs {whole:?}"
            );
            assert!((loss.kld - whole.kld).abs() < 1e-5 * whole.kld.abs().max(1.0));
            let diff = w.iter().zip(&w4).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
            assert!(diff < 1e-5, "piece {piece}: weights differ by {diff}");
        }
    }

    #[test]
    fn nan_loss_stops_before_the_step() {
        let mut t = setup(0);
        let mut b = batch(t.prep());
        let before = t.model().store().tensors();
        b.target = (b.target * f64::NAN).unwrap();
        let err = t.train_step(&b, 4, &mut ChaCha8Rng::seed_from_u64(0)).unwrap_err();
        assert!(
            matches!(err, super::super::TrainError::Model(Error::NonFinite { term: "gen loss", .. })),
            "{err}"
        );
        for (name, v) in t.model().store().tensors() {
            let (x, y) = (v.flatten_all().unwrap(), before[&name].flatten_all().unwrap());
            assert_eq!(x.to_vec1::<f32>().unwrap(), y.to_vec1::<f32>().unwrap(), "{name} moved");
        }
    }
}
