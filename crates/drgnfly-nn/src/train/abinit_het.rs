//! Heterogeneous ab initio reconstruction (cryoDRGN2, `abinit_het_old`, reference §4.3): a VAE trained on
//! poses it finds itself.
//!
//! Before epoch 1 the decoder is pretrained on `pretrain_images` images at uniformly random rotations, no
//! shift and latents drawn from the prior N(0, I). In every `ps_freq`-th epoch each batch is encoded at its
//! current poses, searched, and the VAE then trains on the poses found; other epochs train on the last
//! poses (the train_vae step: gen + β·KLD).
//!
//! **How the search uses z.** cryoDRGN evaluates the decoder at every image's own z for every candidate
//! pose (`B × 192` network slices per step, ~40 GB of GPU memory at D = 128). Here the search slices maps
//! instead: every `refresh_images` searched images the latents of the most recent `RECENT_LATENTS` images
//! (at the start of a search epoch, a random sample of the dataset encoded at its current poses) are
//! clustered into `conformations` centres by k-means, the decoder's map at each centre is decoded
//! within the band limit, and each image is searched against the map nearest its posterior mean. Memory is
//! `conformations` maps plus the search's chunk, whatever the batch size; the approximation is the
//! distance between an image's z and its centre, which the VAE step after the search does not share (it
//! decodes at the image's own z).

use std::collections::VecDeque;
use std::path::Path;
use std::time::Instant;

use candle_core::Tensor;
use drgnfly_io::source::StreamOptions;
use rand::Rng;
use rand_distr::StandardNormal;

use super::abinit::{pretrain_at_random_poses, random_start, AbinitSchedule};
use super::batch::BatchPrep;
use super::collective::{Collective, Share};
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::homo::mse_loss;
use super::pose_table::PoseTable;
use super::search_epoch::{conformation_centres, EpochSearch};
use super::vae::{vae_step_in_pieces, KlSchedule, VaeModel};
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::decoder::DecoderConfig;
use crate::encoder::EncoderConfig;
use crate::error::Error;

/// Images per piece of a training step: the step of a larger batch sums the pieces' gradients, so memory
/// does not grow with `--batch-size` (the search's does not either).
const STEP_PIECE: usize = 8;

/// Latents kept for choosing the search's conformations.
const RECENT_LATENTS: usize = 4096;

/// VAE, optimizer, pose table and search of a heterogeneous ab initio run.
pub struct AbinitHetTrainer {
    model: VaeModel,
    adam: Adam,
    kl: KlSchedule,
    prep: BatchPrep,
    poses: PoseTable,
    schedule: AbinitSchedule,
    /// Maps the search compares images to (z centres).
    conformations: usize,

    seed: u64,
    pretrained: bool,
    searching: Option<EpochSearch>,
    /// Posterior means of the most recently encoded images, newest last.
    recent: VecDeque<Vec<f32>>,
}

impl AbinitHetTrainer {
    /// A fresh VAE initialised from `seed`; the `n` particles start at random rotations and no shift;
    /// searches compare images to the maps at `conformations` latents.
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        encoder: &EncoderConfig,
        decoder: &DecoderConfig,
        seed: u64,
        (adam, kl): (AdamConfig, KlSchedule),
        prep: BatchPrep,
        n: usize,
        schedule: AbinitSchedule,
        conformations: usize,
    ) -> TrainResult<Self> {
        if decoder.zdim == 0 {
            return Err(Error::Config {
                field: "zdim",
                problem: "heterogeneous ab initio needs a latent (abinit-homo reconstructs one map)".into(),
            }
            .into());
        }
        if conformations == 0 {
            return Err(Error::Config {
                field: "search-conformations",
                problem: "the search needs at least one map".into(),
            }
            .into());
        }
        let model = VaeModel::new(encoder, decoder, seed, prep.device())?;
        let adam = Adam::new(model.store().named_vars(), adam)?;
        Ok(Self {
            model,
            adam,
            kl,
            prep,
            poses: random_start(n, seed, Default::default()),
            schedule,
            conformations,
            seed,
            pretrained: false,
            searching: None,
            recent: VecDeque::new(),
        })
    }

    /// The model being trained.
    pub fn model(&self) -> &VaeModel {
        &self.model
    }

    /// The batch preparation.
    pub fn prep(&self) -> &BatchPrep {
        &self.prep
    }

    /// The poses found so far.
    pub fn poses(&self) -> &PoseTable {
        &self.poses
    }

    /// Searches one batch: encodes it at its current poses, refreshes the maps when stale (at the k-means
    /// centres of the recent latents), and searches each image against the map nearest its latent.
    fn search_batch(&mut self, share: Share<'_>, images: &[f32], ctf: Option<&[f32]>) -> TrainResult<()> {
        let Some(es) = self.searching.as_mut() else { return Ok(()) };
        let zdim = self.model.model().encoder.zdim();
        let mu = match share.len {
            0 => Vec::new(),
            _ => {
                let current = self.poses.batch_poses(share.positions());
                let batch = self.prep.prepare_hartley(images.to_vec(), ctf.map(<[f32]>::to_vec), &current)?;
                self.model.encode(&batch)?.0
            }
        };
        // Every process keeps the same recent latents: the whole batch's.
        for z in share.gather_rows(&mu, zdim)?.chunks_exact(zdim) {
            if self.recent.len() == RECENT_LATENTS {
                self.recent.pop_front();
            }
            self.recent.push_back(z.to_vec());
        }
        let latents: Vec<Vec<f32>> = mu.chunks_exact(zdim).map(<[f32]>::to_vec).collect();
        if es.is_stale(self.schedule.refresh_images) {
            let recent: Vec<Vec<f32>> = self.recent.iter().cloned().collect();
            let centres = conformation_centres(&recent, self.conformations, zdim, self.seed);
            es.refresh(&self.model.model().decoder, &centres, share.comm)?;
        }
        let which: Vec<usize> = latents.iter().map(|z| es.map_for(z)).collect();
        es.search_batch(share, (images, ctf), &which, &mut self.poses)
    }

    /// The posterior means of up to [`RECENT_LATENTS`] images drawn from the dataset (at their current
    /// poses): what a search epoch's first conformations are chosen from, the same on resume.
    fn sample_latents(
        &mut self,
        epoch: usize,
        data: &Dataset,
        comm: &dyn Collective,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> TrainResult<()> {
        let total = RECENT_LATENTS.min(data.len());
        let zdim = self.model.model().encoder.zdim();
        let opts = StreamOptions::shuffled(64, data.image_size(), self.seed ^ (epoch as u64) << 32)
            .sharded(comm.rank(), comm.size());
        self.recent.clear();
        for b in data.source().stream(&opts) {
            if self.recent.len() >= total {
                break;
            }
            let b = b?;
            let mu = match b.positions.is_empty() {
                true => Vec::new(),
                false => {
                    let poses = self.poses.batch_poses(&b.positions);
                    let batch =
                        self.prep.prepare(&b.images, &poses, data.batch_ctf(&b.positions).as_deref())?;
                    self.model.encode(&batch)?.0
                }
            };
            let share = Share::of(comm, &b);
            self.recent.extend(share.gather_rows(&mu, zdim)?.chunks_exact(zdim).map(<[f32]>::to_vec));
            progress("encoding a sample", self.recent.len().min(total), total);
        }
        self.recent.truncate(total);
        Ok(())
    }
}

/// One decoder step at random poses (prepared in `batch`, this process's share of it; `None` when empty)
/// with latents from the prior (drawn for the whole batch, so each share gets what one process draws for
/// it): pretraining.
fn pretrain_step(
    model: &VaeModel,
    adam: &mut Adam,
    (batch, share): (Option<&super::PreparedBatch>, Share<'_>),
    rng: &mut impl Rng,
) -> TrainResult<()> {
    let zdim = model.model().encoder.zdim();
    let z: Vec<f32> = (0..share.batch.len() * zdim).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
    let grads = match batch {
        Some(batch) => {
            let z = z[share.offset * zdim..(share.offset + share.len) * zdim].to_vec();
            let z = Tensor::from_vec(z, (share.len, zdim), batch.coords.device())?;
            Some(mse_loss(&model.model().decoder, batch, Some(&z))?.0.backward()?)
        }
        None => None,
    };
    share.adam_step(adam, &model.store().named_vars(), grads)?;
    Ok(())
}

impl Trainer for AbinitHetTrainer {
    fn loss_terms(&self) -> &'static [&'static str] {
        &["gen loss", "KLD", "total loss"]
    }

    fn begin_epoch(
        &mut self,
        epoch: usize,
        data: &Dataset,
        comm: &dyn Collective,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> TrainResult<Option<String>> {
        let mut note = None;
        if !self.pretrained {
            let t0 = Instant::now();
            let total = self.schedule.pretrain_images;
            let (model, adam) = (&self.model, &mut self.adam);
            pretrain_at_random_poses(
                data,
                &self.prep,
                (self.seed, total),
                comm,
                progress,
                |b, share, rng| pretrain_step(model, adam, (b, share), rng),
            )?;
            self.pretrained = true;
            note = Some(format!(
                "# pretrained the decoder on {} images at random poses and latents from the prior in {:.1} s",
                total.min(data.len()),
                t0.elapsed().as_secs_f64()
            ));
        }
        self.searching = if self.schedule.searches(epoch) {
            self.sample_latents(epoch, data, comm, progress)?;
            Some(EpochSearch::plan(&self.schedule, epoch, data.image_size())?)
        } else {
            None
        };
        Ok(note)
    }

    fn end_epoch(&mut self, epoch: usize) -> TrainResult<Option<String>> {
        Ok(self.searching.take().map(|es| es.summary(epoch)))
    }

    fn step(&mut self, mut step: Step<'_>) -> TrainResult<Vec<f32>> {
        // One Hartley transform and CTF per image serve the encoding, the search and the training step. On
        // more than one process each works on its share of the batch; latents, poses found and gradients
        // are exchanged, and each draws the latent noise one process would draw for its share.
        let (images, ctf) = self.prep.step_hartley_and_ctf(&step)?;
        self.search_batch(step.share(), &images, ctf.as_deref())?;
        let batch = self.prep.prepare_share((images, ctf), &self.poses.batch_poses(step.positions))?;
        let kl = self.kl.at(step.images_seen);
        let zdim = self.model.model().encoder.zdim();
        step.skip_normals(step.offset, zdim);
        let values = vae_step_in_pieces(
            &self.model,
            &mut self.adam,
            (batch.as_ref(), kl, step.share()),
            STEP_PIECE,
            &mut *step.rng,
        )?;
        step.skip_normals(step.images_after(), zdim);
        Ok(vec![values.gen, values.kld, values.total])
    }

    /// Every loss term is a mean over images, except the KL term under `--beta-control`.
    fn data_parallel(&self) -> bool {
        self.kl.control.is_none()
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(self.model.store(), Some(&self.adam))?;
        ckpt.tables = self.poses.state_tensors()?;
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(self.model.store(), Some(&mut self.adam), path)?;
        // A train-vae checkpoint of the same model has no poses: the next search starts from it.
        if !ckpt.tables.is_empty() {
            self.poses.load_state_tensors(&ckpt.tables, path)?;
        }
        self.pretrained = true;
        Ok(())
    }

    fn pose_table(&self) -> Option<&PoseTable> {
        Some(&self.poses)
    }
}
