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
//!
//! Data-parallel runs ([`Schedule::comm`] with more than one process, see [`super::collective`]): every
//! rank streams the same batches and steps on its share of each; the trainer exchanges gradients through
//! [`Step::share`]; the driver sums the losses over ranks, stops all ranks together, and only rank 0 writes
//! checkpoints (the hooks run on every rank, and decide what each writes).

use std::path::{Path, PathBuf};
use std::rc::Rc;
use std::time::{Duration, Instant};

use candle_core::Device;
use drgnfly_io::source::StreamOptions;
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::collective::{self, Collective, Share, SingleProcess};
use super::error::{TrainError, TrainResult};
use super::pose_table::PoseTable;
use crate::checkpoint::{read_checkpoint, write_checkpoint, Checkpoint};
use crate::data::Dataset;
use crate::phases::{self, Phase};

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
    /// The processes training together ([`SingleProcess`] for an ordinary run).
    pub comm: Rc<dyn Collective>,
}

impl Schedule {
    /// A schedule on one process.
    pub fn new(
        num_epochs: usize,
        batch_size: usize,
        seed: u64,
        checkpoint_every: usize,
        outdir: PathBuf,
    ) -> Self {
        Self { num_epochs, batch_size, seed, checkpoint_every, outdir, comm: Rc::new(SingleProcess) }
    }
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

/// One training batch as a trainer sees it: on more than one process, this process's share of it.
pub struct Step<'a> {
    /// The epoch (1-based).
    pub epoch: usize,
    /// Dataset positions of the images (this process's share of the batch; may be empty).
    pub positions: &'a [usize],
    /// Raw images `(B, D, D)`.
    pub images: &'a [f32],
    /// The whole batch's positions, every process's share, in order.
    pub batch: &'a [usize],
    /// Where `positions` starts in `batch`.
    pub offset: usize,
    /// The processes training together.
    pub comm: &'a dyn Collective,
    /// The dataset (poses, CTF of the positions).
    pub data: &'a Dataset,
    /// Images seen since the start of training, this batch included (cryoDRGN's count for β schedules).
    pub images_seen: u64,
    /// This epoch's random stream.
    pub rng: &'a mut ChaCha8Rng,
}

impl<'a> Step<'a> {
    /// This process's share of the batch.
    pub fn share(&self) -> Share<'a> {
        Share { comm: self.comm, batch: self.batch, offset: self.offset, len: self.positions.len() }
    }

    /// Draw, and drop, the standard normals of `images` images of `per_image` each: a trainer whose step
    /// draws noise per image calls it for the images before its share and after it, so that its share's
    /// noise is what one process draws for those images.
    pub fn skip_normals(&mut self, images: usize, per_image: usize) {
        use rand_distr::{Distribution, StandardNormal};
        for _ in 0..images * per_image {
            let _: f32 = StandardNormal.sample(self.rng);
        }
    }

    /// The images of the batch after this process's share.
    pub fn images_after(&self) -> usize {
        self.batch.len() - self.offset - self.positions.len()
    }
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

    /// Images per batch in `epoch`, when the trainer's phases differ (cryoDRGN-AI: small batches while
    /// searching poses, large ones for SGD); `None` takes the schedule's.
    fn batch_size(&self, _epoch: usize) -> Option<usize> {
        None
    }

    /// Whether [`Trainer::step`] works on a share of a batch and exchanges its gradients through the
    /// [`Step`] (data-parallel training on more than one process).
    fn data_parallel(&self) -> bool {
        false
    }

    /// The trainer's pose table, when it refines or searches poses (written as pose.E.pkl by the caller).
    fn pose_table(&self) -> Option<&PoseTable> {
        None
    }

    /// Work before the batches of `epoch` (a pose-search pass, pretraining), reporting `progress(stage,
    /// images done, images in all)`; returns a line for the run log, if any. A data-parallel trainer shares
    /// its work out over `comm`.
    fn begin_epoch(
        &mut self,
        _epoch: usize,
        _data: &Dataset,
        _comm: &dyn Collective,
        _progress: &mut dyn FnMut(&str, usize, usize),
    ) -> TrainResult<Option<String>> {
        Ok(None)
    }

    /// Work after the last batch of `epoch`, before its summary and checkpoint; returns a line for the run
    /// log, if any (for example what a search during the epoch found).
    fn end_epoch(&mut self, _epoch: usize) -> TrainResult<Option<String>> {
        Ok(None)
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

    /// Progress of a trainer's pass before an epoch ([`Trainer::begin_epoch`]): `done` of `total` images.
    fn pass_progress(&mut self, _stage: &str, _done: usize, _total: usize) {}

    /// A line from the trainer for the run log (for example a pose-search summary).
    fn note(&mut self, _line: &str) -> Result<(), Self::Error> {
        Ok(())
    }

    /// Before the first batch of `epoch`.
    fn epoch_start(&mut self, _epoch: usize) -> Result<(), Self::Error> {
        Ok(())
    }

    /// After a batch of `images` images.
    fn batch_done(&mut self, _epoch: usize, _images: usize) {}

    /// Whether to stop after the batch just done (an interrupt): training ends with
    /// [`TrainError::Interrupted`], and the last checkpoint written is the one to resume from.
    fn stop_requested(&self) -> bool {
        false
    }

    /// After the last batch of an epoch, before its checkpoint.
    fn epoch_done(&mut self, _summary: &EpochSummary) -> Result<(), Self::Error> {
        Ok(())
    }

    /// The caller's per-checkpoint outputs (z.E.pkl, maps, pose.E.pkl) for the checkpoint of `epoch`, which
    /// is committed to `path` right after: a checkpoint on disk always has its outputs beside it, so the
    /// newest checkpoint is always a complete one to resume from.
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
    let comm = schedule.comm.as_ref();
    if comm.size() > 1 {
        if !trainer.data_parallel() {
            return Err(TrainError::Parallel {
                message: "this run cannot be shared out over processes (the amortized trainer cannot, nor \
                          --beta-control, whose KL term is not a mean over images); start it without mpirun/srun"
                    .into(),
            }
            .into());
        }
        collective::check_agreement(
            comm,
            &[
                ("number of particles", n as f64),
                ("box size", d as f64),
                ("batch size", schedule.batch_size as f64),
                ("number of epochs", schedule.num_epochs as f64),
                ("epoch to resume from", start as f64),
                ("seed", (schedule.seed % (1 << 40)) as f64),
            ],
        )?;
    }
    for epoch in start + 1..=schedule.num_epochs {
        let t0 = Instant::now();
        let note = trainer.begin_epoch(epoch, data, comm, &mut |stage, done, total| {
            hooks.pass_progress(stage, done, total)
        })?;
        if let Some(line) = note {
            hooks.note(&line)?;
        }
        hooks.epoch_start(epoch)?;
        let batch_size = trainer.batch_size(epoch).unwrap_or(schedule.batch_size).max(1);
        let shuffle = StreamOptions::shuffled(batch_size, d, schedule.seed.wrapping_add(epoch as u64))
            .sharded(comm.rank(), comm.size());
        let mut rng = ChaCha8Rng::seed_from_u64(schedule.seed);
        rng.set_stream(epoch as u64);
        let mut sums = vec![0f64; terms.len()];
        let mut seen = (epoch - 1) as u64 * n as u64;
        let mut batches = data.source().stream(&shuffle).enumerate();
        while let Some((bi, batch)) = phases::time(Phase::Load, || batches.next()) {
            let batch = batch.map_err(TrainError::from)?;
            let (b, local) = (batch.batch.len(), batch.positions.len());
            seen += b as u64;
            let step = Step {
                epoch,
                positions: &batch.positions,
                images: &batch.images,
                batch: &batch.batch,
                offset: batch.offset,
                comm,
                data,
                images_seen: seen,
                rng: &mut rng,
            };
            let losses = phases::time(Phase::Step, || trainer.step(step))
                .map_err(|e| in_batch(data, &format!("epoch {epoch}"), bi + 1, &batch.positions, e))?;
            // The batch's loss sums, and whether any process was asked to stop (all stop together).
            let mut totals: Vec<f64> = losses.iter().map(|&l| f64::from(l) * local as f64).collect();
            totals.push(if hooks.stop_requested() { 1.0 } else { 0.0 });
            comm.all_reduce_sum_f64(&mut totals)?;
            for (s, t) in sums.iter_mut().zip(&totals) {
                *s += t;
            }
            hooks.batch_done(epoch, b);
            if totals.last().is_some_and(|&stop| stop > 0.0) {
                return Err(TrainError::Interrupted { epoch }.into());
            }
        }
        if let Some(line) = trainer.end_epoch(epoch)? {
            hooks.note(&line)?;
        }
        let losses = terms.iter().zip(&sums).map(|(&name, s)| (name, s / n as f64)).collect();
        hooks.epoch_done(&EpochSummary { epoch, losses, elapsed: t0.elapsed() })?;
        if schedule.is_checkpoint(epoch) {
            let mut ckpt = trainer.state()?;
            ckpt.epoch = epoch as u64;
            let path = schedule.checkpoint_path(epoch);
            // Outputs first, weights last: a kill in between leaves the previous checkpoint as the newest.
            hooks.checkpoint(epoch, &path, trainer)?;
            if comm.rank() == 0 {
                write_checkpoint(&path, &ckpt)
                    .map_err(|e| TrainError::Checkpoint { epoch, source: Box::new(e) })?;
            }
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
    progress: impl FnMut(usize),
) -> TrainResult<()> {
    ordered_rows(
        data,
        &SingleProcess,
        batch_size,
        (stage, 0),
        |positions, images| visit(positions, images).map(|()| Vec::new()),
        |_, _| Ok(()),
        progress,
    )
}

/// [`ordered_pass`] shared out over the processes of `comm`: each computes `width` numbers per image for
/// its share of every batch with `rows(positions, images)`, and every process is given the whole batch's
/// rows, in dataset order, by `collect(positions, rows)`. On one process, `rows` sees every batch.
#[allow(clippy::too_many_arguments)]
pub fn ordered_rows(
    data: &Dataset,
    comm: &dyn Collective,
    batch_size: usize,
    (stage, width): (&str, usize),
    mut rows: impl FnMut(&[usize], &[f32]) -> TrainResult<Vec<f32>>,
    mut collect: impl FnMut(&[usize], &[f32]) -> TrainResult<()>,
    mut progress: impl FnMut(usize),
) -> TrainResult<()> {
    let opts = StreamOptions::ordered(batch_size, data.image_size()).sharded(comm.rank(), comm.size());
    for (bi, batch) in data.source().stream(&opts).enumerate() {
        let batch = batch?;
        let local = if batch.positions.is_empty() {
            Vec::new()
        } else {
            rows(&batch.positions, &batch.images)
                .map_err(|e| in_batch(data, stage, bi + 1, &batch.positions, e))?
        };
        let all = Share::of(comm, &batch).gather_rows(&local, width)?;
        collect(&batch.batch, &all)?;
        progress(batch.batch.len());
    }
    Ok(())
}

fn in_batch(data: &Dataset, stage: &str, batch: usize, positions: &[usize], e: TrainError) -> TrainError {
    TrainError::InBatch { context: data.batch_context(stage, batch, positions), source: Box::new(e) }
}

#[cfg(test)]
mod tests {
    //! A toy trainer that refines a pose table and a small model: what a new trainer writes (a step and
    //! its state), and proof that the driver resumes it bit-exactly, pose table and random streams included.

    use std::collections::BTreeMap;

    use candle_core::{DType, Module, Tensor};
    use drgnfly_em::pose::Pose;
    use drgnfly_io::mrc::{MrcDtype, MrcStackWriter};
    use rand::Rng;

    use super::*;
    use crate::adam::{Adam, AdamConfig};
    use crate::data::DatasetFiles;
    use crate::params::ParamStore;
    use crate::train::{rotation_matrices, PoseAdamConfig, RotationParam};

    const D: usize = 4;

    /// Learns, per particle, a rotation about z by the image's mean and a shift (mean, −mean), and a linear
    /// map from per-epoch noise to the mean (so the random streams matter).
    struct Toy {
        store: ParamStore,
        linear: candle_nn::Linear,
        adam: Adam,
        poses: PoseTable,
    }

    impl Toy {
        fn new(n: usize) -> Self {
            let store = ParamStore::new(1, &Device::Cpu);
            let linear = crate::mlp::linear(1, 1, store.var_builder().pp("toy")).unwrap();
            let adam = Adam::new(store.named_vars(), AdamConfig { lr: 1e-2, ..Default::default() }).unwrap();
            let pose_adam = PoseAdamConfig { lr_rot: 2e-2, lr_shift: 5e-2, ..Default::default() };
            let poses = PoseTable::new(&vec![Pose::IDENTITY; n], RotationParam::SixD, pose_adam);
            Self { store, linear, adam, poses }
        }
    }

    impl Trainer for Toy {
        fn loss_terms(&self) -> &'static [&'static str] {
            &["loss"]
        }

        fn step(&mut self, step: Step<'_>) -> TrainResult<Vec<f32>> {
            let b = step.positions.len();
            let means: Vec<f32> =
                step.images.chunks_exact(D * D).map(|im| im.iter().sum::<f32>() / 16.0).collect();
            let noise: Vec<f32> = (0..b).map(|_| step.rng.random::<f32>() - 0.5).collect();
            let dev = Device::Cpu;
            let (rot, shift) = self.poses.batch_vars(step.positions, &dev)?;
            let r = rotation_matrices(rot.as_tensor(), RotationParam::SixD)?;
            let target_r: Vec<f32> = means
                .iter()
                .flat_map(|&m| [m.cos(), -m.sin(), 0.0, m.sin(), m.cos(), 0.0, 0.0, 0.0, 1.0])
                .collect();
            let target_r = Tensor::from_vec(target_r, (b, 3, 3), &dev)?;
            let target_s =
                Tensor::from_vec(means.iter().flat_map(|&m| [m, -m]).collect::<Vec<_>>(), (b, 2), &dev)?;
            let pred = self.linear.forward(&Tensor::from_vec(noise, (b, 1), &dev)?)?;
            let m = Tensor::from_vec(means, (b, 1), &dev)?;
            let loss = (((r - target_r)?.sqr()?.mean_all()?
                + (shift.as_tensor() - target_s)?.sqr()?.mean_all()?)?
                + (pred - m)?.sqr()?.mean_all()?)?;
            let value = loss.to_scalar::<f32>()?;
            if !value.is_finite() {
                return Err(crate::Error::NonFinite { term: "loss", value, hint: "toy" }.into());
            }
            let grads = loss.backward()?;
            self.adam.step(&grads)?;
            self.poses.step_with_grads(step.positions, (&rot, &shift), &grads)?;
            Ok(vec![value])
        }

        fn state(&self) -> TrainResult<Checkpoint> {
            let mut ckpt = Checkpoint::capture(&self.store, Some(&self.adam))?;
            ckpt.tables = self.poses.state_tensors()?;
            Ok(ckpt)
        }

        fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
            ckpt.restore(&self.store, Some(&mut self.adam), path)?;
            self.poses.load_state_tensors(&ckpt.tables, path)
        }

        fn pose_table(&self) -> Option<&PoseTable> {
            Some(&self.poses)
        }
    }

    #[derive(Default)]
    struct Recorder {
        losses: Vec<(usize, f64)>,
        images: usize,
        checkpoints: Vec<(usize, PathBuf)>,
    }

    impl Hooks<Toy> for Recorder {
        type Error = TrainError;

        fn batch_done(&mut self, _epoch: usize, images: usize) {
            self.images += images;
        }

        fn epoch_done(&mut self, s: &EpochSummary) -> TrainResult<()> {
            self.losses.push((s.epoch, s.losses[0].1));
            Ok(())
        }

        fn checkpoint(&mut self, epoch: usize, path: &Path, trainer: &Toy) -> TrainResult<()> {
            assert!(trainer.pose_table().is_some());
            assert!(!path.exists(), "the weights are committed after the caller's outputs");
            self.checkpoints.push((epoch, path.to_path_buf()));
            Ok(())
        }
    }

    /// 40 images of 4×4; particle `i` has mean `(i % 7) / 7`; `nan_at` gets a NaN pixel.
    fn dataset(dir: &Path, nan_at: Option<usize>) -> Dataset {
        let path = dir.join("particles.mrcs");
        let mut w = MrcStackWriter::create(&path, D, D, 1.0, MrcDtype::F32).unwrap();
        for i in 0..40 {
            let mut img: Vec<f32> =
                (0..D * D).map(|k| (i % 7) as f32 / 7.0 + 0.01 * ((k % 3) as f32 - 1.0)).collect();
            if nan_at == Some(i) {
                img[5] = f32::NAN;
            }
            w.push_many(&img).unwrap();
        }
        w.finish().unwrap();
        Dataset::open(&DatasetFiles { particles: path, ..Default::default() }).unwrap()
    }

    fn schedule(outdir: &Path, num_epochs: usize) -> Schedule {
        Schedule::new(num_epochs, 6, 11, 2, outdir.to_path_buf())
    }

    fn contents(path: &Path) -> BTreeMap<String, Vec<f64>> {
        let ckpt = read_checkpoint(path, &Device::Cpu).unwrap();
        let mut out = BTreeMap::new();
        for (group, map) in [("model", &ckpt.model), ("optimizer", &ckpt.optimizer), ("table", &ckpt.tables)]
        {
            for (k, v) in map {
                let v = v.to_dtype(DType::F64).unwrap().flatten_all().unwrap().to_vec1::<f64>().unwrap();
                out.insert(format!("{group}.{k}"), v);
            }
        }
        out.insert("epoch".into(), vec![ckpt.epoch as f64]);
        out
    }

    #[test]
    fn a_resumed_run_equals_a_straight_one_pose_table_included() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(dir.path(), None);
        let (a, b) = (dir.path().join("straight"), dir.path().join("resumed"));
        std::fs::create_dir_all(&a).unwrap();
        std::fs::create_dir_all(&b).unwrap();

        let mut straight = Toy::new(data.len());
        let mut rec = Recorder::default();
        fit(&data, &schedule(&a, 4), &mut straight, 0, &mut rec).unwrap();
        assert_eq!(rec.images, 4 * 40, "every image once per epoch");
        let epochs: Vec<usize> = rec.checkpoints.iter().map(|(e, _)| *e).collect();
        assert_eq!(epochs, [2, 4]);
        let (first, last) = (rec.losses[0].1, rec.losses[3].1);
        assert!(last < 0.7 * first, "the toy trainer learns: {first} → {last}");

        let mut part = Toy::new(data.len());
        fit(&data, &schedule(&b, 2), &mut part, 0, &mut Recorder::default()).unwrap();
        let mut resumed = Toy::new(data.len());
        let start = resume(&mut resumed, &checkpoint_path(&b, 2)).unwrap();
        assert_eq!(start, 2);
        let mut rec2 = Recorder::default();
        fit(&data, &schedule(&b, 4), &mut resumed, start, &mut rec2).unwrap();

        assert_eq!(rec2.losses, rec.losses[2..], "epochs 3 and 4 see the same batches and noise");
        assert_eq!(resumed.poses, straight.poses, "pose table and its optimizer state");
        assert_eq!(contents(&checkpoint_path(&a, 4)), contents(&checkpoint_path(&b, 4)));
        let p = straight.poses.pose(13);
        // Four Adam steps of 0.05 px from 0 toward (6/7, −6/7).
        assert!(
            p.shift_px[0] > 0.15 && p.shift_px[1] < -0.15,
            "particle 13 moved toward its shift: {:?}",
            p.shift_px
        );
    }

    #[test]
    fn a_nan_pixel_is_reported_with_its_particle() {
        let dir = tempfile::tempdir().unwrap();
        let data = dataset(dir.path(), Some(17));
        let err =
            fit(&data, &schedule(dir.path(), 1), &mut Toy::new(40), 0, &mut Recorder::default()).unwrap_err();
        let TrainError::InBatch { context, source } = &err else { panic!("{err}") };
        assert!(context.starts_with("epoch 1, batch "), "{context}");
        assert!(context.contains("particle 17 (row 17 of the file) has pixel (x 1, y 1) = NaN"), "{context}");
        assert!(matches!(**source, TrainError::Model(crate::Error::NonFinite { .. })), "{source}");
    }
}
