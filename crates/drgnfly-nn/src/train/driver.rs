//! The training driver: the one epoch loop every trainer runs in.
//!
//! [`fit`] streams the dataset in chunk-shuffled batches (shuffle seed = run seed + epoch), counts the
//! images seen (β schedules), gives each epoch its own random stream (ChaCha8, seeded with the run's seed,
//! stream = epoch number), so that a run resumed at an epoch boundary draws exactly what a straight run
//! draws, wraps every failure of a batch with the batch's particles (and the one with a NaN/Inf pixel, if
//! any), and writes a checkpoint (`weights.E.safetensors`: model, optimizers, per-particle tables, epoch)
//! every `checkpoint_every` epochs and after the last. [`resume`] restores one.
//!
//! A trainer supplies only its step and its state ([`Trainer`]); the caller observes batches, epochs and
//! checkpoints through [`Hooks`] (progress bars, run.log, z.E.pkl, pose.E.pkl, maps) and decides what its
//! errors are. [`ordered_pass`] is the same streaming for inference (latents of every particle, evaluation).

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use candle_core::Device;
use drgnfly_io::source::StreamOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::error::{TrainError, TrainResult};
use super::pose_table::PoseTable;
use crate::checkpoint::{read_checkpoint, write_checkpoint, Checkpoint};
use crate::data::Dataset;

/// How long and how to train.
#[derive(Clone, Debug)]
pub struct Schedule {
    /// Train until this many epochs are complete.
    pub num_epochs: usize,
    /// Images per batch.
    pub batch_size: usize,
    /// The run's seed (shuffling and the per-epoch random streams).
    pub seed: u64,
    /// Write a checkpoint every N epochs (and after the last).
    pub checkpoint_every: usize,
    /// Where checkpoints go (`weights.E.safetensors`).
    pub outdir: PathBuf,
}

impl Schedule {
    /// Whether epoch `epoch` (1-based) ends with a checkpoint.
    pub fn is_checkpoint(&self, epoch: usize) -> bool {
        epoch.is_multiple_of(self.checkpoint_every.max(1)) || epoch == self.num_epochs
    }

    /// The checkpoint file of epoch `epoch`.
    pub fn checkpoint_path(&self, epoch: usize) -> PathBuf {
        checkpoint_path(&self.outdir, epoch)
    }
}

/// `outdir/weights.E.safetensors`.
pub fn checkpoint_path(outdir: &Path, epoch: usize) -> PathBuf {
    outdir.join(format!("weights.{epoch}.safetensors"))
}

/// One training batch as a trainer sees it.
pub struct Step<'a> {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Dataset positions of the images.
    pub positions: &'a [usize],
    /// Raw images `(B, D, D)`.
    pub images: &'a [f32],
    /// The dataset (poses, CTF of the positions).
    pub data: &'a Dataset,
    /// Images seen since the start of training, this batch included (cryoDRGN's count for β schedules).
    pub images_seen: u64,
    /// This epoch's random stream.
    pub rng: &'a mut ChaCha8Rng,
}

/// What a trainer supplies: one optimisation step, and its complete state for checkpoints.
pub trait Trainer {
    /// Names of the loss terms [`Trainer::step`] returns, in order (`["gen loss", "KLD", "total loss"]`).
    fn loss_terms(&self) -> &'static [&'static str];

    /// One step on a batch; returns the batch's mean of each loss term, measured before the step. A
    /// NaN/Inf loss is an error and no step is taken.
    fn step(&mut self, step: Step<'_>) -> TrainResult<Vec<f32>>;

    /// Everything needed to resume exactly: model, optimizer(s), tables (the driver sets the epoch).
    fn state(&self) -> TrainResult<Checkpoint>;

    /// Restore a state written by [`Trainer::state`] (read from `path`).
    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()>;

    /// The trainer's pose table, when it refines or searches poses (written as pose.E.pkl by the caller).
    fn pose_table(&self) -> Option<&PoseTable> {
        None
    }
}

/// Averages of one epoch.
#[derive(Clone, Debug)]
pub struct EpochSummary {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Each loss term's name and its average over the epoch's images.
    pub losses: Vec<(&'static str, f64)>,
    /// Wall time of the epoch.
    pub elapsed: Duration,
}

/// What the caller does around training. Every method has a default that does nothing.
pub trait Hooks<T: Trainer + ?Sized> {
    /// The caller's error type (the driver's own failures convert into it).
    type Error: From<TrainError>;

    /// Before the first batch of `epoch`.
    fn epoch_start(&mut self, _epoch: usize) -> Result<(), Self::Error> {
        Ok(())
    }

    /// After a batch of `images` images.
    fn batch_done(&mut self, _epoch: usize, _images: usize) {}

    /// After the last batch of an epoch, before its checkpoint.
    fn epoch_done(&mut self, _summary: &EpochSummary) -> Result<(), Self::Error> {
        Ok(())
    }

    /// After the checkpoint of `epoch` was written to `path`: the caller's per-checkpoint outputs.
    fn checkpoint(&mut self, _epoch: usize, _path: &Path, _trainer: &T) -> Result<(), Self::Error> {
        Ok(())
    }
}

/// Resume `trainer` from the checkpoint at `path`; returns its epoch (completed epochs).
pub fn resume<T: Trainer + ?Sized>(trainer: &mut T, path: &Path) -> TrainResult<usize> {
    let ckpt = read_checkpoint(path, &Device::Cpu)?;
    trainer.restore(&ckpt, path)?;
    Ok(ckpt.epoch as usize)
}

/// Train epochs `start + 1 ..= schedule.num_epochs` (`start` = completed epochs, from [`resume`] or 0).
pub fn fit<T, H>(
    data: &Dataset,
    schedule: &Schedule,
    trainer: &mut T,
    start: usize,
    hooks: &mut H,
) -> Result<(), H::Error>
where
    T: Trainer + ?Sized,
    H: Hooks<T> + ?Sized,
{
    let (n, d) = (data.len(), data.image_size());
    let terms = trainer.loss_terms();
    for epoch in start + 1..=schedule.num_epochs {
        let t0 = Instant::now();
        hooks.epoch_start(epoch)?;
        let shuffle =
            StreamOptions::shuffled(schedule.batch_size, d, schedule.seed.wrapping_add(epoch as u64));
        let mut rng = ChaCha8Rng::seed_from_u64(schedule.seed);
        rng.set_stream(epoch as u64);
        let mut sums = vec![0f64; terms.len()];
        let mut seen = (epoch - 1) as u64 * n as u64;
        for (bi, batch) in data.source().stream(&shuffle).enumerate() {
            let batch = batch.map_err(TrainError::from)?;
            let b = batch.positions.len();
            seen += b as u64;
            let step = Step {
                epoch,
                positions: &batch.positions,
                images: &batch.images,
                data,
                images_seen: seen,
                rng: &mut rng,
            };
            let losses = trainer
                .step(step)
                .map_err(|e| in_batch(data, &format!("epoch {epoch}"), bi + 1, &batch.positions, e))?;
            for (s, l) in sums.iter_mut().zip(&losses) {
                *s += f64::from(*l) * b as f64;
            }
            hooks.batch_done(epoch, b);
        }
        let losses = terms.iter().zip(&sums).map(|(&name, s)| (name, s / n as f64)).collect();
        hooks.epoch_done(&EpochSummary { epoch, losses, elapsed: t0.elapsed() })?;
        if schedule.is_checkpoint(epoch) {
            let mut ckpt = trainer.state()?;
            ckpt.epoch = epoch as u64;
            let path = schedule.checkpoint_path(epoch);
            write_checkpoint(&path, &ckpt).map_err(TrainError::from)?;
            hooks.checkpoint(epoch, &path, trainer)?;
        }
    }
    Ok(())
}

/// One pass over the dataset in order (inference: latents, evaluation): `visit` gets each batch's positions
/// and raw images `(B, D, D)`; its errors carry the batch's context (`stage`, batch number, particles).
/// `progress` is told the images of each finished batch.
pub fn ordered_pass(
    data: &Dataset,
    batch_size: usize,
    stage: &str,
    mut visit: impl FnMut(&[usize], &[f32]) -> TrainResult<()>,
    mut progress: impl FnMut(usize),
) -> TrainResult<()> {
    let opts = StreamOptions::ordered(batch_size, data.image_size());
    for (bi, batch) in data.source().stream(&opts).enumerate() {
        let batch = batch?;
        visit(&batch.positions, &batch.images)
            .map_err(|e| in_batch(data, stage, bi + 1, &batch.positions, e))?;
        progress(batch.positions.len());
    }
    Ok(())
}

fn in_batch(data: &Dataset, stage: &str, batch: usize, positions: &[usize], e: TrainError) -> TrainError {
    TrainError::InBatch { context: data.batch_context(stage, batch, positions), source: Box::new(e) }
}
