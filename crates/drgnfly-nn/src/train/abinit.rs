//! Homogeneous ab initio reconstruction (cryoDRGN2, `abinit_homo_old`, reference §4.3): a decoder trained
//! on poses it finds itself.
//!
//! Before epoch 1 the decoder is pretrained on `pretrain_images` images at uniformly random rotations with
//! no shift. Every `ps_freq` epochs (epochs 1, 1 + ps_freq, …) a pose-search pass finds the best pose of
//! every particle ([`drgnfly_em::search::PoseSearch`]) against the current decoder, which is evaluated
//! **once per pass** on its Hartley volume and sliced by interpolation; the band limit ramps from `l_start`
//! to `l_end` over `l_ramp_epochs`. In between, the decoder trains on the found poses (MSE, as `train_nn`).
//! The poses live in a [`PoseTable`] (trainer state: checkpointed, written as pose.E.pkl).

use std::path::Path;
use std::time::Instant;

use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::{angle_between_deg, random::random_rotation};
use drgnfly_em::search::{HartleyVolumeSlicer, PoseSearch, SearchConfig};
use drgnfly_io::source::StreamOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::batch::BatchPrep;
use super::driver::{ordered_pass, Step, Trainer};
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
    /// Images per search chunk (memory bound).
    pub search_batch: usize,
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
            search_batch: 64,
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
        Ok(Self { store, decoder: dec, adam, prep, poses, schedule, seed, pretrained: false })
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

    /// A search pass over every particle at `epoch`'s band limit; returns the run-log line.
    fn search(
        &mut self,
        epoch: usize,
        data: &Dataset,
        progress: &mut dyn FnMut(&str, usize, usize),
    ) -> TrainResult<String> {
        let t0 = Instant::now();
        let (n, d) = (data.len(), data.image_size());
        let l_max = self.schedule.l_max(epoch);
        let config =
            SearchConfig { l_min: self.schedule.l_start.min(l_max), l_max, ..self.schedule.search.clone() };
        let search = PoseSearch::new(d, config)?;
        let unit = DataNorm { mean: 0.0, std: 1.0 };
        let volume = self.decoder.eval_volume(&[], d + 1, 0.5, unit)?;
        let slicer = HartleyVolumeSlicer::new(volume.values, d + 1)?;
        let mut moved_deg = Vec::with_capacity(n);
        let mut moved_px = Vec::with_capacity(n);
        let (prep, poses) = (&self.prep, &mut self.poses);
        let stage = format!("pose search (epoch {epoch})");
        let mut done = 0;
        ordered_pass(
            data,
            self.schedule.search_batch.max(1),
            &stage,
            |positions, raw| {
                let images = prep.hartley_images(raw)?;
                let ctf = match data.batch_ctf(positions) {
                    Some(params) => Some(prep.ctf_on_lattice(&params)?),
                    None => None,
                };
                for (&p, r) in positions.iter().zip(&search.search(&slicer, &images, ctf.as_deref())?) {
                    let old = poses.pose(p);
                    moved_deg.push(angle_between_deg(&old.rot, &r.pose.rot));
                    let dt = [r.pose.shift_px[0] - old.shift_px[0], r.pose.shift_px[1] - old.shift_px[1]];
                    moved_px.push(f64::from(dt[0].hypot(dt[1])));
                    poses.set_pose(p, r.pose);
                }
                Ok(())
            },
            |b| {
                done += b;
                progress(&stage, done, n);
            },
        )?;
        let secs = t0.elapsed().as_secs_f64();
        Ok(format!(
            "# pose search before epoch {epoch}: band limit {}–{l_max}, {n} images in {secs:.1} s ({:.1} images/s); \
             median change {:.2}° and {:.2} px",
            self.schedule.l_start.min(l_max),
            n as f64 / secs.max(1e-9),
            median(&mut moved_deg),
            median(&mut moved_px)
        ))
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
        if self.schedule.searches(epoch) {
            lines.push(self.search(epoch, data, progress)?);
        }
        Ok((!lines.is_empty()).then(|| lines.join("\n")))
    }

    fn step(&mut self, step: Step<'_>) -> TrainResult<Vec<f32>> {
        let poses = self.poses.batch_poses(step.positions);
        let ctf = step.data.batch_ctf(step.positions);
        let batch = self.prep.prepare(step.images, &poses, ctf.as_deref())?;
        Ok(vec![mse_step(&self.decoder, &mut self.adam, &batch)?])
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(&self.store, Some(&self.adam))?;
        ckpt.tables = self.poses.state_tensors()?;
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(&self.store, Some(&mut self.adam), path)?;
        self.poses.load_state_tensors(&ckpt.tables, path)?;
        // A checkpoint is written after an epoch, so pretraining is behind it.
        self.pretrained = true;
        Ok(())
    }

    fn pose_table(&self) -> Option<&PoseTable> {
        Some(&self.poses)
    }
}
