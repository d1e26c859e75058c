//! Homogeneous ab initio reconstruction (cryoDRGN2, `abinit_homo_old`, reference §4.3): a decoder trained
//! on poses it finds itself.
//!
//! Before epoch 1 the decoder is pretrained on `pretrain_images` images at uniformly random rotations with
//! no shift. In every `ps_freq`-th epoch (epochs 1, 1 + ps_freq, …) each batch's poses are first searched
//! ([`drgnfly_em::search::PoseSearch`]) against the current decoder and the decoder then trains on them, as
//! cryoDRGN does: the map improves between batches, which is what lets a random start bootstrap within
//! one epoch. The search slices the decoder's map, decoded again every `refresh_images` searched images
//! ([`super::search_epoch`]). The band
//! limit ramps from `l_start` to `l_end` over `l_ramp_epochs`. Other epochs train on the last poses (MSE, as
//! `train_nn`). The poses live in a [`PoseTable`] (trainer state: checkpointed, written as pose.E.pkl). A
//! checkpoint of `train_nn` (same decoder, no poses) can start a run: its next search uses that decoder.

use std::path::Path;
use std::time::Instant;

use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::random::random_rotation;
use drgnfly_em::search::SearchConfig;
use drgnfly_io::source::StreamOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batch::{BatchPrep, PreparedBatch};
use super::collective::{Collective, Share};
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::homo::shared_mse_step;
use super::pose_table::{PoseAdamConfig, PoseTable};
use super::search_epoch::EpochSearch;
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::decoder::{Decoder, DecoderConfig};
use crate::error::Error;
use crate::params::ParamStore;
use crate::rotation::RotationParam;

/// The ab initio schedule (cryoDRGN `abinit_homo_old`'s flags and defaults).
#[derive(Clone, Debug)]
pub struct AbinitSchedule {
    /// Images of pretraining at random poses (`--pretrain`, 10000).
    pub pretrain_images: usize,
    /// A search every this many epochs (`--ps-freq`, 5).
    pub ps_freq: usize,
    /// Band limit of the first search, lattice steps (`--l-start`, 12).
    pub l_start: usize,
    /// Band limit at the end of the ramp (`--l-end`, 32).
    pub l_end: usize,
    /// Epochs of the band-limit ramp (`--l-ramp-epochs`, 25).
    pub l_ramp_epochs: usize,
    /// Everything else of the search (grids, iterations, kept poses, loss); its band limits are set per
    /// epoch from the fields above.
    pub search: SearchConfig,
    /// Images searched between two decodings of the volume the search slices (the search's view of the
    /// decoder lags by at most this many images).
    pub refresh_images: usize,
    /// With several conformations, the first epoch (1-based) whose searches compare each image with every
    /// conformation's map and keep the best match, not only with the map nearest its latent
    /// (`--search-all-conformations`; costs a base search per map, one refinement). Lets an image whose
    /// latent sits in the wrong state find its pose, and so its state. `None`: never.
    pub every_map_from: Option<usize>,
}

impl Default for AbinitSchedule {
    fn default() -> Self {
        Self {
            pretrain_images: 10_000,
            ps_freq: 5,
            l_start: 12,
            l_end: 32,
            l_ramp_epochs: 25,
            search: SearchConfig::default(),
            refresh_images: 256,
            every_map_from: None,
        }
    }
}

impl AbinitSchedule {
    /// Whether `epoch` (1-based) starts with a pose search.
    pub fn searches(&self, epoch: usize) -> bool {
        (epoch - 1).is_multiple_of(self.ps_freq.max(1))
    }

    /// The search's upper band limit at `epoch`: `l_start + ⌊(epoch − 1)/ramp · (l_end − l_start)⌋`, at most
    /// `l_end`.
    pub fn l_max(&self, epoch: usize) -> usize {
        if self.l_ramp_epochs == 0 {
            return self.l_end;
        }
        let grown = (epoch - 1) * self.l_end.saturating_sub(self.l_start) / self.l_ramp_epochs;
        (self.l_start + grown).min(self.l_end)
    }
}

/// Decoder, optimizer, pose table and search of a homogeneous ab initio run.
pub struct AbinitHomoTrainer {
    store: ParamStore,
    decoder: Decoder,
    adam: Adam,
    prep: BatchPrep,
    poses: PoseTable,
    schedule: AbinitSchedule,
    seed: u64,
    pretrained: bool,
    /// The search of the current epoch, when it searches.
    searching: Option<EpochSearch>,
}

impl AbinitHomoTrainer {
    /// A fresh decoder (`zdim` 0) initialised from `seed`; the `n` particles start at random rotations
    /// (drawn from `seed`) and no shift.
    pub fn new(
        decoder: &DecoderConfig,
        seed: u64,
        adam: AdamConfig,
        prep: BatchPrep,
        n: usize,
        schedule: AbinitSchedule,
    ) -> TrainResult<Self> {
        if decoder.zdim != 0 {
            return Err(Error::Config {
                field: "zdim",
                problem: "homogeneous ab initio has no latent".into(),
            }
            .into());
        }
        let store = ParamStore::new(seed, prep.device());
        let dec = Decoder::new(decoder, store.var_builder())?;
        let adam = Adam::new(store.named_vars(), adam)?;
        let poses = random_start(n, seed, PoseAdamConfig::default());
        Ok(Self {
            store,
            decoder: dec,
            adam,
            prep,
            poses,
            schedule,
            seed,
            pretrained: false,
            searching: None,
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

    /// Searches the poses of one batch (`images`, `ctf` from [`BatchPrep::hartley_images`] and
    /// [`BatchPrep::ctf_on_lattice`]) against the current decoder (decoding its map when stale) and puts
    /// them in the pose table.
    fn search_batch(&mut self, share: Share<'_>, images: &[f32], ctf: Option<&[f32]>) -> TrainResult<()> {
        let Some(es) = self.searching.as_mut() else { return Ok(()) };
        if es.is_stale(self.schedule.refresh_images) {
            es.refresh(&self.decoder, &[Vec::new()], share.comm)?;
        }
        es.search_batch(share, (images, ctf), &vec![0; share.len], &mut self.poses)
    }
}

/// Pretraining of the ab initio trainers: `total` images (at most the dataset) in shuffled order at
/// uniformly random rotations and no shift, `train(batch, share, rng)` taking a step on each prepared batch
/// with the random stream of pretraining (stream 0 of `seed`: the epochs use streams 1, 2, …, the initial
/// poses the last one). On more than one process each gets its `share` of every batch (`None` when empty)
/// and the rotations one process would draw for it.
pub(super) fn pretrain_at_random_poses(
    data: &Dataset,
    prep: &BatchPrep,
    (seed, total): (u64, usize),
    comm: &dyn Collective,
    progress: &mut dyn FnMut(&str, usize, usize),
    mut train: impl FnMut(Option<&PreparedBatch>, Share<'_>, &mut ChaCha8Rng) -> TrainResult<()>,
) -> TrainResult<()> {
    let total = total.min(data.len());
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let batch = 16;
    let opts = StreamOptions::shuffled(batch, data.image_size(), seed).sharded(comm.rank(), comm.size());
    let mut done = 0;
    for b in data.source().stream(&opts) {
        if done >= total {
            break;
        }
        let b = b?;
        let poses: Vec<Pose> =
            b.batch.iter().map(|_| Pose { rot: random_rotation(&mut rng), shift_px: [0.0; 2] }).collect();
        let share = Share::of(comm, &b);
        let prepared = match share.len {
            0 => None,
            n => Some(prep.prepare(
                &b.images,
                &poses[b.offset..b.offset + n],
                data.batch_ctf(&b.positions).as_deref(),
            )?),
        };
        train(prepared.as_ref(), share, &mut rng)?;
        done += b.batch.len();
        progress("pretraining", done.min(total), total);
    }
    Ok(())
}

/// The `n` particles' starting poses: uniformly random rotations (the last stream of `seed`), no shift; a
/// table refined by SGD later steps with `adam`.
pub(super) fn random_start(n: usize, seed: u64, adam: PoseAdamConfig) -> PoseTable {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    rng.set_stream(u64::MAX);
    let start: Vec<Pose> =
        (0..n).map(|_| Pose { rot: random_rotation(&mut rng), shift_px: [0.0, 0.0] }).collect();
    PoseTable::new(&start, RotationParam::SixD, adam)
}

impl Trainer for AbinitHomoTrainer {
    fn loss_terms(&self) -> &'static [&'static str] {
        &["loss"]
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
            let (model, adam) = ((&self.decoder, &self.store), &mut self.adam);
            pretrain_at_random_poses(
                data,
                &self.prep,
                (self.seed, self.schedule.pretrain_images),
                comm,
                progress,
                |b, share, _| shared_mse_step(model, adam, b, share).map(|_| ()),
            )?;
            self.pretrained = true;
            lines.push(format!(
                "# pretrained on {} images at random poses in {:.1} s",
                self.schedule.pretrain_images.min(data.len()),
                t0.elapsed().as_secs_f64()
            ));
        }
        self.searching = if self.schedule.searches(epoch) {
            Some(EpochSearch::plan(&self.schedule, epoch, data.image_size())?)
        } else {
            None
        };
        Ok((!lines.is_empty()).then(|| lines.join("\n")))
    }

    fn end_epoch(&mut self, epoch: usize) -> TrainResult<Option<String>> {
        Ok(self.searching.take().map(|es| es.summary(epoch)))
    }

    fn step(&mut self, step: Step<'_>) -> TrainResult<Vec<f32>> {
        // One Hartley transform and CTF per image serve both the search and the training step. On more
        // than one process each searches and trains on its share of the batch; the poses found and the
        // gradients are exchanged.
        let (images, ctf) = self.prep.step_hartley_and_ctf(&step)?;
        self.search_batch(step.share(), &images, ctf.as_deref())?;
        let batch = self.prep.prepare_share((images, ctf), &self.poses.batch_poses(step.positions))?;
        let (value, _) =
            shared_mse_step((&self.decoder, &self.store), &mut self.adam, batch.as_ref(), step.share())?;
        Ok(vec![value])
    }

    fn data_parallel(&self) -> bool {
        true
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(&self.store, Some(&self.adam))?;
        ckpt.tables = self.poses.state_tensors()?;
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(&self.store, Some(&mut self.adam), path)?;
        // A decoder trained elsewhere (train-nn) has no poses: the next search starts from it.
        if !ckpt.tables.is_empty() {
            self.poses.load_state_tensors(&ckpt.tables, path)?;
        }
        // A checkpoint is written after an epoch, so pretraining is behind it.
        self.pretrained = true;
        Ok(())
    }

    fn pose_table(&self) -> Option<&PoseTable> {
        Some(&self.poses)
    }
}
