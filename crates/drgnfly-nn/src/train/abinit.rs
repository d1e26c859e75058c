//! Homogeneous ab initio reconstruction (cryoDRGN2, `abinit_homo_old`, reference §4.3): a decoder trained
//! on poses it finds itself.
//!
//! Before epoch 1 the decoder is pretrained on `pretrain_images` images at uniformly random rotations with
//! no shift. In every `ps_freq`-th epoch (epochs 1, 1 + ps_freq, …) each batch's poses are first searched
//! ([`drgnfly_em::search::PoseSearch`]) against the current decoder and the decoder then trains on them, as
//! cryoDRGN does: the map improves between batches, which is what lets a random start bootstrap within
//! one epoch. The decoder is not evaluated per image and rotation: its Hartley volume inside the search's
//! band limit is decoded once every `refresh_images` searched images and sliced by interpolation. The band
//! limit ramps from `l_start` to `l_end` over `l_ramp_epochs`. Other epochs train on the last poses (MSE, as
//! `train_nn`). The poses live in a [`PoseTable`] (trainer state: checkpointed, written as pose.E.pkl). A
//! checkpoint of `train_nn` (same decoder, no poses) can start a run: its next search uses that decoder.

use std::path::Path;
use std::time::Instant;

use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::{angle_between_deg, random::random_rotation};
use drgnfly_em::search::{BaseSlices, HartleyVolumeSlicer, PoseSearch, SearchConfig};
use drgnfly_io::source::StreamOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batch::BatchPrep;
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::homo::mse_step;
use super::pose_table::{PoseAdamConfig, PoseTable, RotationParam};
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::data::Dataset;
use crate::decoder::{DataNorm, Decoder, DecoderConfig};
use crate::error::Error;
use crate::params::ParamStore;

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

/// One search epoch: the planned search, the volume it slices, and what it has found so far.
struct EpochSearch {
    search: PoseSearch,
    /// The sliced volume and its base slices; `None` when stale.
    model: Option<(HartleyVolumeSlicer, BaseSlices)>,
    /// Images searched since the volume was decoded.
    since_refresh: usize,
    refreshes: usize,
    moved_deg: Vec<f64>,
    moved_px: Vec<f64>,
    seconds: f64,
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
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(u64::MAX);
        let start: Vec<Pose> =
            (0..n).map(|_| Pose { rot: random_rotation(&mut rng), shift_px: [0.0, 0.0] }).collect();
        let poses = PoseTable::new(&start, RotationParam::SixD, PoseAdamConfig::default());
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

    /// Pretraining: `pretrain_images` images in shuffled order at uniformly random rotations, no shift.
    fn pretrain(&mut self, data: &Dataset, progress: &mut dyn FnMut(&str, usize, usize)) -> TrainResult<()> {
        let total = self.schedule.pretrain_images.min(data.len());
        // Stream 0 of the seed: the epochs use streams 1, 2, …, the initial poses the last one.
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed);
        let batch = 16;
        let opts = StreamOptions::shuffled(batch, data.image_size(), self.seed);
        let mut done = 0;
        for b in data.source().stream(&opts) {
            if done >= total {
                break;
            }
            let b = b?;
            let poses: Vec<Pose> = b
                .positions
                .iter()
                .map(|_| Pose { rot: random_rotation(&mut rng), shift_px: [0.0; 2] })
                .collect();
            let prepared = self.prep.prepare(&b.images, &poses, data.batch_ctf(&b.positions).as_deref())?;
            mse_step(&self.decoder, &mut self.adam, &prepared)?;
            done += b.positions.len();
            progress("pretraining", done.min(total), total);
        }
        Ok(())
    }

    /// The search of a search epoch, planned at its band limits.
    fn plan_search(&self, epoch: usize, d: usize) -> TrainResult<EpochSearch> {
        let l_max = self.schedule.l_max(epoch);
        let config =
            SearchConfig { l_min: self.schedule.l_start.min(l_max), l_max, ..self.schedule.search.clone() };
        Ok(EpochSearch {
            search: PoseSearch::new(d, config)?,
            model: None,
            since_refresh: 0,
            refreshes: 0,
            moved_deg: Vec::new(),
            moved_px: Vec::new(),
            seconds: 0.0,
        })
    }

    /// Searches the poses of one batch (`images`, `ctf` from [`BatchPrep::hartley_images`] and
    /// [`BatchPrep::ctf_on_lattice`]) against the current decoder (decoding its volume when stale) and puts
    /// them in the pose table.
    fn search_batch(
        &mut self,
        positions: &[usize],
        images: &[f32],
        ctf: Option<&[f32]>,
        d: usize,
    ) -> TrainResult<()> {
        let t0 = Instant::now();
        let Some(es) = self.searching.as_mut() else { return Ok(()) };
        if es.since_refresh >= self.schedule.refresh_images.max(1) {
            es.model = None;
        }
        let (slicer, base) = match &mut es.model {
            Some(m) => m,
            slot => {
                // Trilinear interpolation at radius L reads grid points up to L + 1 away from the centre.
                let radius = (es.search.band_limit(es.search.config().niter) + 2) as f64 / d as f64;
                let unit = DataNorm { mean: 0.0, std: 1.0 };
                let volume = self.decoder.eval_volume_within(&[], d + 1, 0.5, unit, radius)?;
                let slicer = HartleyVolumeSlicer::new(volume.values, d + 1)?;
                let base = es.search.base_slices(&slicer)?;
                es.since_refresh = 0;
                es.refreshes += 1;
                slot.insert((slicer, base))
            }
        };
        let found = es.search.search_with(&*slicer, base, images, ctf)?;
        for (&p, r) in positions.iter().zip(&found) {
            let old = self.poses.pose(p);
            es.moved_deg.push(angle_between_deg(&old.rot, &r.pose.rot));
            let dt = [r.pose.shift_px[0] - old.shift_px[0], r.pose.shift_px[1] - old.shift_px[1]];
            es.moved_px.push(f64::from(dt[0].hypot(dt[1])));
            self.poses.set_pose(p, r.pose);
        }
        es.since_refresh += positions.len();
        es.seconds += t0.elapsed().as_secs_f64();
        Ok(())
    }
}

fn median(v: &mut [f64]) -> f64 {
    if v.is_empty() {
        return 0.0;
    }
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

impl Trainer for AbinitHomoTrainer {
    fn loss_terms(&self) -> &'static [&'static str] {
        &["loss"]
    }

    fn begin_epoch(
        &mut self,
        epoch: usize,
        data: &Dataset,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> TrainResult<Option<String>> {
        let mut lines = Vec::new();
        if !self.pretrained {
            let t0 = Instant::now();
            self.pretrain(data, progress)?;
            self.pretrained = true;
            lines.push(format!(
                "# pretrained on {} images at random poses in {:.1} s",
                self.schedule.pretrain_images.min(data.len()),
                t0.elapsed().as_secs_f64()
            ));
        }
        self.searching = if self.schedule.searches(epoch) {
            Some(self.plan_search(epoch, data.image_size())?)
        } else {
            None
        };
        Ok((!lines.is_empty()).then(|| lines.join("\n")))
    }

    fn end_epoch(&mut self, epoch: usize) -> TrainResult<Option<String>> {
        let Some(mut es) = self.searching.take() else { return Ok(None) };
        let n = es.moved_deg.len();
        let c = es.search.config();
        Ok(Some(format!(
            "# pose search in epoch {epoch}: band limit {}–{}, {n} images in {:.1} s ({:.1} images/s, volume \
             decoded {} times); median change {:.2}° and {:.2} px",
            c.l_min,
            es.search.band_limit(c.niter),
            es.seconds,
            n as f64 / es.seconds.max(1e-9),
            es.refreshes,
            median(&mut es.moved_deg),
            median(&mut es.moved_px)
        )))
    }

    fn step(&mut self, step: Step<'_>) -> TrainResult<Vec<f32>> {
        // One Hartley transform and CTF per image serve both the search and the training step.
        let (images, ctf) =
            self.prep.hartley_and_ctf(step.images, step.data.batch_ctf(step.positions).as_deref())?;
        self.search_batch(step.positions, &images, ctf.as_deref(), step.data.image_size())?;
        let poses = self.poses.batch_poses(step.positions);
        let batch = self.prep.prepare_hartley(images, ctf, &poses)?;
        Ok(vec![mse_step(&self.decoder, &mut self.adam, &batch)?])
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
