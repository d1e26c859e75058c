//! Ab initio reconstruction as cryoDRGN-AI does it (`cryodrgn abinit`, reference §3.7 and §4.3): a short
//! pose search, then gradient descent on per-particle tables.
//!
//! 1. **Pretraining**: the decoder trains on `pretrain_images` images at uniformly random rotations, no
//!    shift, latent 0.
//! 2. **Search epochs** (`1..=search_epochs`): every batch's poses are searched against the current map
//!    (for a heterogeneous model, the map at the conformation nearest each particle's latent, as in
//!    `abinit-het`), then the decoder (and, after `pose_only_images` images, the conformation table) takes
//!    a step at the poses found.
//! 3. **SGD epochs**: the pose table, started from the search's poses, the conformation table and the
//!    decoder all take Adam steps on the same loss: no search any more, so an epoch costs what a
//!    `train-vae` epoch costs.
//!
//! The loss is the MSE on the output mask: a disc of fixed radius, or frequency marching (the radius grows
//! with the images seen during the searches and by a few lattice steps after each SGD epoch; the search's
//! band limit follows it). A variational conformation table adds `β_conf·KL/D²`; `trans_l1` penalises the
//! shifts in the SGD epochs. Steps run in pieces of [`STEP_PIECE`] images whose gradients are summed, so
//! memory does not grow with cryoDRGN-AI's large SGD batches.
//!
//! A homogeneous run (no conformation table) is cryoDRGN-AI with `--zdim 0`. With a conformation encoder
//! (cryoDRGN-AI's `--use-conf-encoder`) a CNN predicts each image's latent from its real-space image
//! instead of a table row: it trains with the decoder, and the table only records each particle's latest
//! latent (for the search's maps and z.E.pkl).

use std::path::Path;
use std::time::Instant;

use candle_core::backprop::GradStore;
use candle_core::Tensor;
use rand::Rng;

use super::abinit::{pretrain_at_random_poses, random_start, AbinitSchedule};
use super::amortized::predict;
use super::batch::{BatchPrep, PreparedBatch};
use super::collective::{Collective, Share};
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::homo::mse_loss;
use super::latent_table::{LatentTable, LatentVars};
use super::pose_table::{grad_values, PoseAdamConfig, PoseTable};
use super::search_epoch::{conformation_centres, EpochSearch};
use super::vae::add_grads;
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::cnn::{CnnConfig, CnnEncoder};
use crate::data::Dataset;
use crate::decoder::{Decoder, DecoderConfig};
use crate::error::Error;
use crate::loss::kl_divergence;
use crate::params::ParamStore;
use crate::rotation::rotation_matrices;
use crate::vae::HetOnlyVae;

/// Images per piece of a step.
const STEP_PIECE: usize = 16;

/// Latents of the table (an even sample) the search's conformations are chosen from.
const CENTRE_SAMPLE: usize = 4096;

/// The output mask: the lattice points the loss compares.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum OutputMask {
    /// A disc of this radius (lattice steps).
    Circle(f64),
    /// Frequency marching: radius `start`, one more lattice step per `every_images` images during the
    /// search epochs, `per_epoch` more after each SGD epoch, at most `max`.
    Marching { start: f64, every_images: u64, per_epoch: f64, max: f64 },
}

/// cryoDRGN-AI's schedule and settings (its `abinit` flags and defaults).
#[derive(Clone, Debug)]
pub struct AiSchedule {
    /// Images of pretraining at random poses (`--n-imgs-pretrain`, 10000).
    pub pretrain_images: usize,
    /// Epochs that search every batch's poses (cryoDRGN-AI: `max(2, n_imgs_pose_search / N + 1)`).
    pub search_epochs: usize,
    /// Images seen before the conformations train (`--pose-only-phase`, 0).
    pub pose_only_images: u64,
    /// The search: band limits `l_start`/`l_end`, grids, refresh (its `ps_freq` and ramp are not used:
    /// every search epoch searches, at `l_end` or the marching mask's radius if smaller).
    pub search: AbinitSchedule,
    /// The output mask.
    pub mask: OutputMask,
    /// Batch size of the search epochs (`--batch-size-hps`, 16) and of the SGD epochs
    /// (`--batch-size-sgd`, 128).
    pub batch_search: usize,
    pub batch_sgd: usize,
    /// The pose table's Adam (`--lr-pose-table`, 1e-3, for rotations and shifts).
    pub pose_adam: PoseAdamConfig,
    /// Weight of the conformation table's KL term, divided by D² (`--beta-conf`, 0).
    pub beta_conf: f64,
    /// Weight of the mean |shift| in pixels in the SGD epochs (`--trans-l1-regularizer`, 0).
    pub trans_l1: f64,
    /// Maps a heterogeneous search compares images to (k-means centres of the table).
    pub conformations: usize,
}

impl AiSchedule {
    /// The output mask's radius (lattice steps) for a batch of `epoch` after `seen` images of training,
    /// on a dataset of `n` images.
    pub fn mask_radius(&self, epoch: usize, seen: u64, n: usize) -> f64 {
        match self.mask {
            OutputMask::Circle(r) => r,
            OutputMask::Marching { start, every_images, per_epoch, max } => {
                let grown = |images: u64| (start + (images / every_images.max(1)) as f64).min(max);
                if epoch <= self.search_epochs {
                    grown(seen)
                } else {
                    let after_search = grown(self.search_epochs as u64 * n as u64);
                    (after_search + per_epoch * (epoch - self.search_epochs - 1) as f64).min(max)
                }
            }
        }
    }

    /// Whether `epoch` searches poses.
    pub fn searches(&self, epoch: usize) -> bool {
        epoch <= self.search_epochs
    }
}

/// Decoder, pose table, conformation table and search of a cryoDRGN-AI run.
pub struct AbinitAiTrainer {
    store: ParamStore,
    decoder: Decoder,
    adam: Adam,
    prep: BatchPrep,
    poses: PoseTable,
    latents: Option<LatentTable>,
    plan: AiSchedule,
    seed: u64,
    pretrained: bool,
    searching: Option<EpochSearch>,
    /// The output mask's radius and its points (indices into the loss mask), recomputed when it grows.
    points: Option<(f64, Tensor)>,
    /// A CNN that predicts the latents (the table then records them).
    conf_encoder: Option<CnnEncoder>,
}

impl AbinitAiTrainer {
    /// A fresh decoder from `seed` for `n` particles at random rotations; `latents` (of the decoder's
    /// zdim) for a heterogeneous run, `None` for a homogeneous one (zdim 0), and `conf_encoder` to predict
    /// the latents with a CNN (the table then records them). Parameters are named as `train_nn`'s
    /// (homogeneous) or as a VAE's decoder (`decoder.*`), the encoder's `conf_encoder.*`.
    pub fn new(
        decoder: &DecoderConfig,
        seed: u64,
        adam: AdamConfig,
        prep: BatchPrep,
        n: usize,
        plan: AiSchedule,
        (latents, conf_encoder): (Option<LatentTable>, Option<&CnnConfig>),
    ) -> TrainResult<Self> {
        let table_zdim = latents.as_ref().map_or(0, LatentTable::zdim);
        let bad_encoder = conf_encoder.is_some_and(|c| c.zdim != table_zdim || table_zdim == 0);
        if decoder.zdim != table_zdim || latents.as_ref().is_some_and(|t| t.len() != n) || bad_encoder {
            return Err(Error::Config {
                field: "zdim",
                problem: format!(
                    "the decoder's latent has {} dimensions, the conformation table {table_zdim} (for {n} \
                     particles), the conformation encoder {:?}",
                    decoder.zdim,
                    conf_encoder.map(|c| c.zdim)
                ),
            }
            .into());
        }
        let store = ParamStore::new(seed, prep.device());
        let vb = store.var_builder();
        let dec = Decoder::new(decoder, if latents.is_some() { vb.pp("decoder") } else { vb.clone() })?;
        let conf_encoder = conf_encoder.map(|c| CnnEncoder::new(c, vb.pp("conf_encoder"))).transpose()?;
        let adam = Adam::new(store.named_vars(), adam)?;
        let poses = random_start(n, seed, plan.pose_adam);
        Ok(Self {
            store,
            decoder: dec,
            adam,
            prep,
            poses,
            latents,
            plan,
            seed,
            pretrained: false,
            searching: None,
            points: None,
            conf_encoder,
        })
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The parameters.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// The conformation table, for a heterogeneous run.
    pub fn latents(&self) -> Option<&LatentTable> {
        self.latents.as_ref()
    }

    /// The maps' latents for the search: k-means centres of an even sample of the table (the origin for
    /// a table-less run's empty latent).
    fn search_centres(&self) -> Vec<Vec<f32>> {
        let Some(t) = &self.latents else { return vec![Vec::new()] };
        let stride = t.len().div_ceil(CENTRE_SAMPLE).max(1);
        let sample: Vec<Vec<f32>> = (0..t.len()).step_by(stride).map(|i| t.mean(i).to_vec()).collect();
        conformation_centres(&sample, self.plan.conformations.max(1), t.zdim(), self.seed)
    }

    /// Searches one batch's poses (each image against the map nearest its latent) into the pose table.
    fn search_batch(&mut self, share: Share<'_>, images: &[f32], ctf: Option<&[f32]>) -> TrainResult<()> {
        let positions = share.positions();
        if self.searching.as_ref().is_some_and(|es| es.is_stale(self.plan.search.refresh_images)) {
            let centres = self.search_centres();
            if let Some(es) = self.searching.as_mut() {
                es.refresh(&self.decoder, &centres, share.comm)?;
            }
        }
        let Some(es) = self.searching.as_mut() else { return Ok(()) };
        let which: Vec<usize> = match &self.latents {
            Some(t) => positions.iter().map(|&p| es.map_for(t.mean(p))).collect(),
            None => vec![0; positions.len()],
        };
        es.search_batch(share, (images, ctf), &which, &mut self.poses)
    }

    /// The output mask's points at `radius`, cached while the radius stays.
    fn points(&mut self, radius: f64) -> TrainResult<Tensor> {
        if let Some((r, t)) = &self.points {
            if *r == radius {
                return Ok(t.clone());
            }
        }
        let idx = self.prep.mask_within(radius);
        if idx.is_empty() {
            return Err(Error::Config {
                field: "output mask",
                problem: format!("a radius of {radius} lattice steps holds no Fourier component"),
            }
            .into());
        }
        let n = idx.len();
        let t = Tensor::from_vec(idx, n, self.prep.device())?;
        self.points = Some((radius, t.clone()));
        Ok(t)
    }

    /// One step on a batch whose Hartley images and CTF are `sym`, `ctf` (whole lattice): in pieces, at
    /// the table's poses (as variables in SGD epochs), with the conformation table's latents (as variables
    /// unless `pose_only`). Returns (gen loss, total loss) of the batch before the step.
    fn train(
        &mut self,
        step: &mut Step<'_>,
        (sym, ctf): (Vec<f32>, Option<Vec<f32>>),
        pose_only: bool,
    ) -> TrainResult<[f32; 2]> {
        let positions = step.positions;
        let share = step.share();
        // The latents' noise of the images before this process's share (one process draws it in order).
        let noise =
            self.latents.as_ref().filter(|t| t.is_variational() && !pose_only).map_or(0, LatentTable::zdim);
        step.skip_normals(step.offset, noise);
        let (b, l2) = (positions.len(), self.prep.lattice_size().pow(2));
        let refine_poses = !self.plan.searches(step.epoch);
        let points = self.points(self.plan.mask_radius(step.epoch, step.images_seen, self.poses.len()))?;
        let d2 = (self.prep.image_size() as f64).powi(2);
        let mut sums = [0f32; 2];
        let mut grads: Option<GradStore> = None;
        // The tables' gradients, row by row in batch order; each table takes one step per batch.
        let (mut g_rot, mut g_shift, mut g_mu, mut g_logvar) =
            (Vec::new(), Vec::new(), Vec::new(), Vec::new());
        // The latents the conformation encoder predicted, row by row, for the table's record.
        let (mut record_mu, mut record_logvar) = (Vec::new(), Vec::new());
        for start in (0..b).step_by(STEP_PIECE) {
            let end = (start + STEP_PIECE).min(b);
            let pos = &positions[start..end];
            let piece_sym = sym[start * l2..end * l2].to_vec();
            let piece_ctf = ctf.as_ref().map(|c| c[start * l2..end * l2].to_vec());
            let current = self.poses.batch_poses(pos);
            let (batch, pose_vars) = if refine_poses {
                let (rot, shift) = self.poses.batch_vars(pos, self.prep.device())?;
                let matrices = rotation_matrices(rot.as_tensor(), self.poses.param())?;
                let batch = self.prep.prepare_refinable(
                    piece_sym,
                    piece_ctf,
                    &current,
                    (&matrices, shift.as_tensor()),
                )?;
                (batch, Some((rot, shift)))
            } else {
                (self.prep.prepare_hartley(piece_sym, piece_ctf, &current)?, None)
            };
            let batch = batch.select_points(&points)?;
            let z_vars = match &self.latents {
                Some(t) if !pose_only && self.conf_encoder.is_none() => {
                    Some(t.batch_vars(pos, self.prep.device())?)
                }
                _ => None,
            };
            let encoded = match (&self.conf_encoder, pose_only) {
                (Some(enc), false) => {
                    let px = self.prep.image_size().pow(2);
                    let raw = &step.images[start * px..end * px];
                    predict(enc, raw, self.prep.device())?.z
                }
                _ => None,
            };
            let variational = self.latents.as_ref().is_some_and(LatentTable::is_variational);
            let (z, posterior) = match &encoded {
                Some((mu, logvar)) => {
                    let logvar = variational.then_some(logvar);
                    record_mu.extend(mu.flatten_all()?.to_vec1::<f32>()?);
                    if let Some(l) = logvar {
                        record_logvar.extend(l.flatten_all()?.to_vec1::<f32>()?);
                    }
                    let z = match logvar {
                        Some(l) => HetOnlyVae::latent(mu, l, true, step.rng)?,
                        None => mu.clone(),
                    };
                    (Some(z), logvar.map(|l| (mu.clone(), l.clone())))
                }
                None => {
                    let z = self.piece_latents(&batch, z_vars.as_ref(), step.rng)?;
                    let posterior = match &z_vars {
                        Some(LatentVars { mu, logvar: Some(logvar) }) => {
                            Some((mu.as_tensor().clone(), logvar.as_tensor().clone()))
                        }
                        _ => None,
                    };
                    (z, posterior)
                }
            };
            let (gen, gen_value) = mse_loss(&self.decoder, &batch, z.as_ref())?;
            let mut total = gen;
            if let (Some((mu, logvar)), true) = (&posterior, self.plan.beta_conf > 0.0) {
                total = (total + (kl_divergence(mu, logvar)? * (self.plan.beta_conf / d2))?)?;
            }
            if let (Some((_, shift)), true) = (&pose_vars, self.plan.trans_l1 > 0.0) {
                total = (total + (shift.as_tensor().abs()?.mean_all()? * self.plan.trans_l1)?)?;
            }
            let total_value = total.to_scalar::<f32>()?;
            let w = (end - start) as f32 / b as f32;
            sums[0] += w * gen_value;
            sums[1] += w * total_value;
            let g = (total * f64::from(w))?.backward()?;
            // A particle's loss depends only on its own rows: their gradients are complete in its piece.
            if let Some((rot, shift)) = &pose_vars {
                g_rot.extend(grad_values(rot, &g)?);
                g_shift.extend(grad_values(shift, &g)?);
            }
            if let Some(vars) = &z_vars {
                let (mu, logvar) = LatentTable::grads(vars, &g)?;
                g_mu.extend(mu);
                g_logvar.extend(logvar.unwrap_or_default());
            }
            add_grads(&mut grads, g, &self.store.named_vars())?;
        }
        step.skip_normals(step.images_after(), noise);
        // On more than one process: the decoder's gradients summed, the tables' rows of the whole batch
        // exchanged, each weighted by its share, so every process takes the same steps.
        share.adam_step(&mut self.adam, &self.store.named_vars(), grads)?;
        if refine_poses {
            let rot = share.gather_gradient_rows(g_rot, self.poses.param().width())?;
            self.poses.step(share.batch, &rot, &share.gather_gradient_rows(g_shift, 2)?)?;
        }
        if let (Some(t), false, true) = (self.latents.as_mut(), pose_only, self.conf_encoder.is_some()) {
            let zdim = t.zdim();
            let mu = share.gather_rows(&record_mu, zdim)?;
            let logvar = match t.is_variational() {
                true => Some(share.gather_rows(&record_logvar, zdim)?),
                false => None,
            };
            t.set_rows(share.batch, &mu, logvar.as_deref())?;
        } else if let (Some(t), false) = (self.latents.as_mut(), pose_only) {
            let zdim = t.zdim();
            let mu = share.gather_gradient_rows(g_mu, zdim)?;
            let logvar = match t.is_variational() {
                true => Some(share.gather_gradient_rows(g_logvar, zdim)?),
                false => None,
            };
            t.step(share.batch, &mu, logvar.as_deref())?;
        }
        Ok(sums)
    }

    /// The latents the decoder sees for one piece: the table's (sampled when variational) as variables,
    /// zero while the conformations do not train, none for a homogeneous run.
    fn piece_latents(
        &self,
        batch: &PreparedBatch,
        vars: Option<&LatentVars>,
        rng: &mut impl Rng,
    ) -> TrainResult<Option<Tensor>> {
        let Some(table) = &self.latents else { return Ok(None) };
        Ok(Some(match vars {
            Some(v) => LatentTable::sample(v, rng)?,
            None => {
                Tensor::zeros((batch.len(), table.zdim()), candle_core::DType::F32, batch.coords.device())?
            }
        }))
    }
}

impl Trainer for AbinitAiTrainer {
    fn loss_terms(&self) -> &'static [&'static str] {
        &["gen loss", "total loss"]
    }

    fn batch_size(&self, epoch: usize) -> Option<usize> {
        Some(if self.plan.searches(epoch) { self.plan.batch_search } else { self.plan.batch_sgd })
    }

    fn begin_epoch(
        &mut self,
        epoch: usize,
        data: &Dataset,
        comm: &dyn Collective,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> TrainResult<Option<String>> {
        let mut lines = Vec::new();
        if !self.pretrained {
            let t0 = Instant::now();
            let total = self.plan.pretrain_images;
            let zdim = self.latents.as_ref().map_or(0, LatentTable::zdim);
            let (decoder, adam) = (&self.decoder, &mut self.adam);
            let vars = self.store.named_vars();
            pretrain_at_random_poses(data, &self.prep, (self.seed, total), comm, progress, |b, share, _| {
                let grads = match b {
                    Some(b) => {
                        let z = match zdim {
                            0 => None,
                            _ => Some(Tensor::zeros(
                                (b.len(), zdim),
                                candle_core::DType::F32,
                                b.coords.device(),
                            )?),
                        };
                        Some(mse_loss(decoder, b, z.as_ref())?.0.backward()?)
                    }
                    None => None,
                };
                share.adam_step(adam, &vars, grads).map(|_| ())
            })?;
            self.pretrained = true;
            lines.push(format!(
                "# pretrained on {} images at random poses in {:.1} s",
                total.min(data.len()),
                t0.elapsed().as_secs_f64()
            ));
        }
        let radius = self.plan.mask_radius(epoch, (epoch as u64 - 1) * data.len() as u64, data.len());
        self.searching = if self.plan.searches(epoch) {
            let l_end = self.plan.search.l_end.min(radius.floor() as usize).max(1);
            let schedule = AbinitSchedule { l_end, l_ramp_epochs: 0, ps_freq: 1, ..self.plan.search.clone() };
            Some(EpochSearch::plan(&schedule, epoch, data.image_size())?)
        } else {
            if epoch == self.plan.search_epochs + 1 {
                lines.push(format!(
                    "# epoch {epoch}: no more searches; poses{} refined by SGD from here",
                    if self.latents.is_some() { " and conformations" } else { "" }
                ));
            }
            None
        };
        if matches!(self.plan.mask, OutputMask::Marching { .. }) {
            lines.push(format!("# epoch {epoch}: output mask radius {radius:.0}"));
        }
        Ok((!lines.is_empty()).then(|| lines.join("\n")))
    }

    fn end_epoch(&mut self, epoch: usize) -> TrainResult<Option<String>> {
        Ok(self.searching.take().map(|es| es.summary(epoch)))
    }

    fn step(&mut self, mut step: Step<'_>) -> TrainResult<Vec<f32>> {
        let (sym, ctf) = self.prep.step_hartley_and_ctf(&step)?;
        if self.plan.searches(step.epoch) {
            self.search_batch(step.share(), &sym, ctf.as_deref())?;
        }
        let pose_only = step.images_seen <= self.plan.pose_only_images;
        let pose_only = pose_only && self.plan.pose_only_images > 0;
        let [gen, total] = self.train(&mut step, (sym, ctf), pose_only)?;
        Ok(vec![gen, total])
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(&self.store, Some(&self.adam))?;
        ckpt.tables = self.poses.state_tensors()?;
        if let Some(t) = &self.latents {
            ckpt.tables.extend(t.state_tensors()?);
        }
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(&self.store, Some(&mut self.adam), path)?;
        self.poses.load_state_tensors(&ckpt.tables, path)?;
        if let Some(t) = &mut self.latents {
            t.load_state_tensors(&ckpt.tables, path)?;
        }
        self.pretrained = true;
        Ok(())
    }

    fn pose_table(&self) -> Option<&PoseTable> {
        Some(&self.poses)
    }

    fn data_parallel(&self) -> bool {
        true
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn plan(mask: OutputMask) -> AiSchedule {
        AiSchedule {
            pretrain_images: 0,
            search_epochs: 2,
            pose_only_images: 0,
            search: AbinitSchedule::default(),
            mask,
            batch_search: 16,
            batch_sgd: 128,
            pose_adam: PoseAdamConfig::default(),
            beta_conf: 0.0,
            trans_l1: 0.0,
            conformations: 2,
        }
    }

    #[test]
    fn the_marching_mask_grows_with_images_then_per_epoch() {
        let p = plan(OutputMask::Marching { start: 12.0, every_images: 100, per_epoch: 10.0, max: 32.0 });
        assert_eq!(p.mask_radius(1, 0, 1000), 12.0);
        assert_eq!(p.mask_radius(1, 450, 1000), 16.0);
        assert_eq!(p.mask_radius(2, 1999, 1000), 31.0);
        // After two search epochs of 1000 images: 12 + 20 = 32, the cap.
        assert_eq!(p.mask_radius(3, 2100, 1000), 32.0);
        let slow = plan(OutputMask::Marching { start: 4.0, every_images: 1000, per_epoch: 10.0, max: 32.0 });
        assert_eq!(slow.mask_radius(3, 0, 1000), 6.0);
        assert_eq!(slow.mask_radius(4, 0, 1000), 16.0);
        assert_eq!(slow.mask_radius(9, 0, 1000), 32.0);
        assert_eq!(plan(OutputMask::Circle(20.0)).mask_radius(7, 5, 10), 20.0);
        assert!(p.searches(2) && !p.searches(3));
    }
}
