//! Flag groups and outputs shared by the training commands (`train-vae`, `train-nn`, `eval-images`): the
//! data and training flags, the device, `run.log`, checkpoint discovery, and [`CliHooks`], the training
//! driver's hooks (progress bars, the per-epoch log line, per-checkpoint outputs, pose.E.pkl).
//!
//! The dataset itself (particles + poses + CTF + `--ind`) is [`drgnfly_nn::data::Dataset`].

use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_em::pose::Pose;
use drgnfly_em::preprocess::{Normalization, PreprocessConfig};
use drgnfly_io::pickle::{write_poses, Poses};
use drgnfly_nn::config::{DatasetArgs, LatticeArgs, ModelArgs, PosesArg, RunConfig};
use drgnfly_nn::data::{Dataset, DatasetFiles};
use drgnfly_nn::train::{
    resume, BatchPrep, EncoderInput, EpochSummary, Hooks, PoseAdamConfig, PoseRefinement, PoseTable,
    RotationParam, Schedule, Trainer,
};
use drgnfly_nn::volume::{VolumeDecoder, VolumeRequest};
use drgnfly_nn::{Activation, AdamConfig, DataNorm, Decoder, DecoderConfig, Domain, PeType};

use super::compat::{log_notes, TrainingCompat};
use crate::progress::Progress;

/// Particle data and preprocessing flags (cryoDRGN's names and defaults).
#[derive(ClapArgs, Debug, Clone)]
pub struct DataArgs {
    /// Particle images: .mrcs stack, .star, .cs, or .txt list of stacks.
    pub particles: PathBuf,
    /// CTF parameters (ctf.pkl); without it the images are taken as CTF-free.
    #[arg(long, value_name = "PKL")]
    pub ctf: Option<PathBuf>,
    /// Train on these particles only (0-based indices, .pkl or .txt).
    #[arg(long, value_name = "PKL")]
    pub ind: Option<PathBuf>,
    /// Directory of the stacks a .star/.cs/.txt refers to.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Do not invert the image contrast (by default images are multiplied by −1).
    #[arg(long)]
    pub uninvert_data: bool,
    /// Inner radius of the real-space window, as a fraction of the half box.
    #[arg(long, default_value_t = 0.85)]
    pub window_r: f32,
    /// Do not window the images.
    #[arg(long)]
    pub no_window: bool,
    /// Normalization of the Hartley-transformed images (default: mean 0 and the estimated std).
    #[arg(long, num_args = 2, value_names = ["MEAN", "STD"], allow_negative_numbers = true)]
    pub norm: Option<Vec<f32>>,
}

/// `--poses` of the commands that train with known poses.
#[derive(ClapArgs, Debug, Clone)]
pub struct PoseArgs {
    /// Poses: pose.pkl (rotations, translations as fractions of the box), or rot.pkl trans.pkl.
    #[arg(long, required = true, num_args = 1..=2, value_name = "PKL")]
    pub poses: Vec<PathBuf>,
}

/// Local refinement of the given poses (cryoDRGN's `--do-pose-sgd`), for train-vae and train-nn.
#[derive(ClapArgs, Debug, Clone)]
pub struct PoseSgdArgs {
    /// Refine the given poses by gradient descent, particle by particle, beside the model (local
    /// refinement: it corrects poses a few degrees and pixels off, not wrong ones; for those use
    /// `abinit-homo`). The refined poses are written as pose.E.pkl at each checkpoint.
    #[arg(long)]
    pub do_pose_sgd: bool,
    /// With --do-pose-sgd: epochs of training on the given poses before they are refined, so the map is
    /// good enough to refine against [default: train-vae 1, train-nn 5, as cryoDRGN].
    #[arg(long, value_name = "EPOCHS")]
    pub pretrain: Option<usize>,
    /// With --do-pose-sgd: learning rate of the rotations in the pose table's sparse Adam. Each particle
    /// takes one step per epoch of about this size (radians), so cryoDRGN's 1e-4 to 3e-4 barely move a
    /// pose in tens of epochs; with the default, poses 5° off come within 2° in about 14 epochs. Larger
    /// rates overshoot.
    #[arg(long, value_name = "LR", default_value_t = 3e-3)]
    pub pose_lr: f64,
    /// With --do-pose-sgd: learning rate of the shifts, in pixels per step (cryoDRGN uses --pose-lr for
    /// both, which leaves shifts where they are).
    #[arg(long, value_name = "PX", default_value_t = 0.1)]
    pub shift_lr: f64,
    /// With --do-pose-sgd: how the table stores rotations: `quat` (unit quaternion) or `s2s2` (the first two
    /// rows of the matrix, continuous on SO(3); a step of the same size turns it about half as far).
    #[arg(long, value_enum, default_value = "quat")]
    pub emb_type: EmbType,
}

/// Rotation parametrisation of a pose table (cryoDRGN's `--emb-type`).
#[derive(clap::ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EmbType {
    /// Unit quaternion.
    Quat,
    /// Two rows of the rotation matrix, Gram–Schmidt completed.
    S2s2,
}

impl PoseSgdArgs {
    /// The refinement of `data`'s poses, if asked for, after `pretrain` epochs unless --pretrain says
    /// otherwise.
    pub fn refinement(&self, data: &Dataset, pretrain: usize) -> Result<Option<PoseRefinement>> {
        if !self.do_pose_sgd {
            // cryoDRGN accepts them without --do-pose-sgd too, and ignores them.
            if self.pretrain.is_some() {
                tracing::info!("note: --pretrain has no effect without --do-pose-sgd");
            }
            return Ok(None);
        }
        for (flag, lr) in [("--pose-lr", self.pose_lr), ("--shift-lr", self.shift_lr)] {
            if !(lr.is_finite() && lr > 0.0) {
                bail!("{flag} {lr}: a learning rate must be a positive number");
            }
        }
        let Some(poses) = data.poses() else {
            bail!(
                "--do-pose-sgd refines given poses: pass them with --poses (or infer them with abinit-homo)"
            );
        };
        let param = match self.emb_type {
            EmbType::Quat => RotationParam::Quaternion,
            EmbType::S2s2 => RotationParam::SixD,
        };
        let adam =
            PoseAdamConfig { lr_rot: self.pose_lr, lr_shift: self.shift_lr, ..PoseAdamConfig::default() };
        Ok(Some(PoseRefinement::new(poses, param, adam, self.pretrain.unwrap_or(pretrain))))
    }
}

impl DataArgs {
    /// The dataset's files, with `poses` (none for ab initio).
    pub fn files(&self, poses: &[PathBuf]) -> DatasetFiles {
        DatasetFiles {
            particles: self.particles.clone(),
            poses: poses.to_vec(),
            ctf: self.ctf.clone(),
            ind: self.ind.clone(),
            datadir: self.datadir.clone(),
        }
    }

    /// Open the dataset (particles, `poses`, CTF, `--ind`), checked once.
    pub fn open(&self, poses: &[PathBuf]) -> Result<Dataset> {
        Ok(Dataset::open(&self.files(poses))?)
    }

    /// `--norm` if given, else cryoDRGN's estimate from the images.
    pub fn normalization(&self, data: &Dataset) -> Result<Normalization> {
        let given = match self.norm.as_deref() {
            None => None,
            Some(&[mean, std]) if mean.is_finite() && std.is_finite() && std > 0.0 => {
                Some(Normalization { mean, std })
            }
            Some(v) => bail!("--norm {v:?}: give MEAN STD with STD > 0"),
        };
        data.normalization(given).context("estimating the image normalization (pass --norm MEAN STD to skip)")
    }

    /// Window and inversion settings.
    pub fn preprocess(&self) -> Result<PreprocessConfig> {
        let window_ok = self.window_r.is_finite() && self.window_r > 0.0 && self.window_r < 0.99;
        if !self.no_window && !window_ok {
            bail!("--window-r {}: must be between 0 and 0.99 (fraction of the half box)", self.window_r);
        }
        Ok(PreprocessConfig {
            window_r: (!self.no_window).then_some(self.window_r),
            invert: !self.uninvert_data,
        })
    }

    /// `dataset_args` of config.yaml.
    pub fn dataset_args(&self, norm: Normalization, poses: &[PathBuf]) -> DatasetArgs {
        let s = |p: &Path| absolute(p).display().to_string();
        DatasetArgs {
            particles: s(&self.particles),
            norm: vec![norm.mean, norm.std],
            invert_data: !self.uninvert_data,
            ind: self.ind.as_deref().map(s),
            keepreal: false,
            window: !self.no_window,
            window_r: self.window_r,
            datadir: self.datadir.as_deref().map(s),
            ctf: self.ctf.as_deref().map(s),
            poses: match poses {
                [] => None,
                [one] => Some(PosesArg::One(s(one))),
                many => Some(PosesArg::Split(many.iter().map(|p| s(p)).collect())),
            },
            do_pose_sgd: false,
        }
    }
}

fn absolute(p: &Path) -> PathBuf {
    std::path::absolute(p).unwrap_or_else(|_| p.to_path_buf())
}

/// Training flags shared by `train-vae` and `train-nn`.
#[derive(ClapArgs, Debug, Clone)]
pub struct TrainArgs {
    /// Output directory (created).
    #[arg(short = 'o', long)]
    pub outdir: PathBuf,
    /// Number of epochs.
    #[arg(short = 'n', long = "num-epochs", default_value_t = 20)]
    pub num_epochs: usize,
    /// Images per batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 16)]
    pub batch_size: usize,
    /// Adam learning rate.
    #[arg(long, default_value_t = 1e-4)]
    pub lr: f64,
    /// Adam weight decay (L2).
    #[arg(long, default_value_t = 0.0)]
    pub wd: f64,
    /// Random seed (default: taken from the output's config.yaml when resuming, else random).
    #[arg(long)]
    pub seed: Option<u64>,
    /// Save a checkpoint every N epochs (and after the last).
    #[arg(long, default_value_t = 1, value_name = "N")]
    pub checkpoint: usize,
    /// Resume from a checkpoint: a weights.N.safetensors file, or `latest` for the newest in the outdir.
    #[arg(long, value_name = "WEIGHTS|latest")]
    pub load: Option<String>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
    /// Keep every matrix product in float32. By default, on CPUs with AVX-512 BF16 (AMD Zen 4, Intel
    /// Sapphire Rapids and later) the decoder's products (and the ab initio pose search's base step) take
    /// bfloat16 operands with float32 sums, on AMX tiles where the CPU has them: epochs 1.5–1.7× faster
    /// (Zen 4) and 3–5× (AMX) with the same reconstruction quality on our benchmarks, the CPU counterpart
    /// of cryoDRGN's default mixed precision (AMP). run.log states the precision used.
    #[arg(long)]
    pub no_amp: bool,
    /// After each epoch, write to run.log where its time went: loading, batch preparation, forward and
    /// backward passes (with the decoder network's share), optimizer. For finding what limits a run.
    #[arg(long)]
    pub timings: bool,
    #[command(flatten)]
    pub compat: TrainingCompat,
}

/// What every training command sets up from its flags before building its trainer.
pub struct RunSetup {
    /// The images' normalisation (`--norm` or the estimate).
    pub norm: Normalization,
    /// Batch preparation.
    pub prep: BatchPrep,
    /// The decoder, its precision set from `--no-amp`.
    pub dec: DecoderConfig,
    /// The precision and, on the CPU, the kernels and tiles, for the run log.
    pub precision: String,
    /// The run's seed.
    pub seed: u64,
}

impl RunSetup {
    /// Normalisation, batch preparation with `encoder_input`, a decoder of `zdim`, `layers` × `dim` and
    /// the seed for `data`.
    pub fn new(
        (data_args, t): (&DataArgs, &TrainArgs),
        data: &Dataset,
        encoder_input: EncoderInput,
        decoder: &DecoderArgs,
        (zdim, layers, dim): (usize, usize, usize),
    ) -> Result<Self> {
        let d = data.image_size();
        let norm = data_args.normalization(data)?;
        let device = t.device.device()?;
        let prep = BatchPrep::new(d, &data_args.preprocess()?, norm, encoder_input, &device)?;
        let mut dec = decoder.config(d + 1, zdim, layers, dim)?;
        let precision = t.precision(&mut dec);
        Ok(Self { norm, prep, dec, precision, seed: t.resolve_seed()? })
    }
}

impl TrainArgs {
    /// Adam with `--lr` and `--wd`.
    pub fn adam(&self) -> AdamConfig {
        AdamConfig { lr: self.lr, weight_decay: self.wd, ..Default::default() }
    }

    /// Set the decoder's precision from `--no-amp`; returns what will be used (and on the CPU, with which
    /// kernels and tiles), for the run log.
    pub fn precision(&self, dec: &mut DecoderConfig) -> String {
        dec.mixed_precision = !self.no_amp && self.device == DeviceKind::Cpu;
        let precision = match (self.no_amp, self.device) {
            (true, _) => "float32 (--no-amp)",
            (false, DeviceKind::Cpu) if DecoderConfig::mixed_precision_available() => {
                "mixed (bfloat16 products, float32 sums)"
            }
            (false, DeviceKind::Cpu) => "float32 (this CPU has no AVX-512 BF16)",
            (false, _) => "float32",
        };
        match self.device {
            DeviceKind::Cpu => format!("{precision}; CPU kernels {}", dec.cpu_kernels()),
            _ => precision.to_string(),
        }
    }

    /// Check the numbers, create the output directory and claim it for this run (the returned lock is held
    /// until it is dropped; keep it for the whole run); notes on accepted cryoDRGN flags.
    pub fn validate(&self) -> Result<OutdirLock> {
        log_notes(self.compat.notes());
        if self.timings {
            drgnfly_nn::phases::enable();
        }
        if self.num_epochs == 0 || self.batch_size == 0 || self.checkpoint == 0 {
            bail!("-n, -b and --checkpoint must be at least 1");
        }
        let (lr_ok, wd_ok) = (self.lr.is_finite() && self.lr > 0.0, self.wd.is_finite() && self.wd >= 0.0);
        if !lr_ok || !wd_ok {
            bail!("--lr must be > 0 and --wd ≥ 0 (got {} and {})", self.lr, self.wd);
        }
        crate::interrupt::install();
        if !crate::cluster::is_root() {
            // Rank 0 owns the output directory; the others only read a checkpoint to resume from.
            return Ok(OutdirLock::none());
        }
        std::fs::create_dir_all(&self.outdir)
            .with_context(|| format!("cannot create output directory {}", self.outdir.display()))?;
        let lock = OutdirLock::acquire(&self.outdir)?;
        // A --load that cannot resume fails here, before config.yaml and run.log are rewritten.
        if let Some(ckpt) = self.checkpoint_to_load()? {
            if !ckpt.is_file() {
                bail!("--load {}: no such checkpoint file", ckpt.display());
            }
        }
        if self.load.is_none() {
            if let Some(existing) = latest_checkpoint(&self.outdir)? {
                bail!(
                    "{} already holds a run's checkpoints ({}); resume it with --load latest, or write this run \
                     to a new -o directory (or remove the old weights.*.safetensors)",
                    self.outdir.display(),
                    existing.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default()
                );
            }
        }
        for stale in drgnfly_io::atomic::remove_stale_temps(&self.outdir)? {
            tracing::info!("removed {}, left by an interrupted run", stale.display());
        }
        Ok(lock)
    }

    /// The seed: `--seed`, else the one in the output's config.yaml when resuming (which must then be
    /// readable: a new seed would silently change the shuffling and noise of the resumed epochs), else a
    /// fresh one.
    pub fn resolve_seed(&self) -> Result<u64> {
        if let Some(s) = self.seed {
            return Ok(s);
        }
        if self.load.is_some() {
            // A missing checkpoint is the more useful error.
            self.checkpoint_to_load()?;
            let path = self.outdir.join("config.yaml");
            let cfg = RunConfig::read(&path).with_context(|| {
                format!(
                    "--load without --seed takes the seed from {}; pass --seed to resume anyway",
                    path.display()
                )
            })?;
            return cfg.seed.with_context(|| {
                format!(
                    "--load: {} records no seed; pass the run's --seed to resume it exactly",
                    path.display()
                )
            });
        }
        // cryoDRGN draws a random seed below 100000 and records it; do the same from the clock.
        let nanos = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.subsec_nanos() as u64 ^ d.as_secs());
        // Every process of a data-parallel run takes rank 0's.
        crate::cluster::from_root(nanos % 100_000)
    }

    /// The driver's schedule for this run.
    pub fn schedule(&self, seed: u64) -> Schedule {
        Schedule {
            comm: crate::cluster::comm(),
            ..Schedule::new(self.num_epochs, self.batch_size, seed, self.checkpoint, self.outdir.clone())
        }
    }

    /// Resume `trainer` from `--load` when given (logging it); returns the completed epochs (0 without `--load`).
    pub fn resume_if_asked<T: Trainer>(&self, trainer: &mut T, log: &mut RunLog) -> Result<usize> {
        let Some(ckpt) = self.checkpoint_to_load()? else { return Ok(0) };
        let start = resume(trainer, &ckpt).with_context(|| format!("--load {}", ckpt.display()))?;
        log.line(&format!("# resuming from {} after epoch {start}", ckpt.display()))?;
        Ok(start)
    }

    /// The checkpoint to resume from, if any.
    pub fn checkpoint_to_load(&self) -> Result<Option<PathBuf>> {
        match self.load.as_deref() {
            None => Ok(None),
            Some("latest") => latest_checkpoint(&self.outdir)?.map(Some).ok_or_else(|| {
                anyhow::anyhow!(
                    "--load latest: no weights.N.safetensors in {}; start without --load",
                    self.outdir.display()
                )
            }),
            Some(path) => Ok(Some(PathBuf::from(path))),
        }
    }
}

/// An exclusive lock on an output directory (`.drgnfly.lock`, an advisory file lock the OS releases when the
/// process ends, however it ends): two runs writing into one directory would interleave their epochs and
/// configs.
pub struct OutdirLock {
    _file: Option<std::fs::File>,
}

impl OutdirLock {
    /// No lock (the processes of a data-parallel run other than rank 0, which holds it).
    fn none() -> Self {
        Self { _file: None }
    }

    /// Lock `dir`, or fail naming it when another run holds it.
    pub fn acquire(dir: &Path) -> Result<Self> {
        let path = dir.join(".drgnfly.lock");
        let file = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .with_context(|| format!("cannot create {}", path.display()))?;
        match file.try_lock() {
            Ok(()) => Ok(Self { _file: Some(file) }),
            Err(std::fs::TryLockError::WouldBlock) => bail!(
                "another drgnfly run is writing into {}; wait for it to finish or choose another -o",
                dir.display()
            ),
            // Some network filesystems cannot lock: run unprotected rather than not at all.
            Err(std::fs::TryLockError::Error(e)) => {
                tracing::warn!(
                    "cannot lock {} ({e}); make sure no other run writes into {}",
                    path.display(),
                    dir.display()
                );
                Ok(Self { _file: Some(file) })
            }
        }
    }
}

/// The newest `weights.N.safetensors` in `dir` (largest N).
pub fn latest_checkpoint(dir: &Path) -> Result<Option<PathBuf>> {
    Ok(checkpoints(dir)?.pop())
}

/// Every `weights.N.safetensors` in `dir`, by N.
pub fn checkpoints(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    let mut found: Vec<(u64, PathBuf)> = entries
        .flatten()
        .filter_map(|entry| {
            let n = entry
                .file_name()
                .to_str()?
                .strip_prefix("weights.")?
                .strip_suffix(".safetensors")?
                .parse::<u64>()
                .ok()?;
            Some((n, entry.path()))
        })
        .collect();
    found.sort();
    Ok(found.into_iter().map(|(_, p)| p).collect())
}

/// Compute device.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceKind {
    /// CPU (all cores, or --threads).
    Cpu,
    /// The first CUDA GPU (needs a build with CUDA support).
    Cuda,
}

impl DeviceKind {
    /// The candle device.
    pub fn device(self) -> Result<candle_core::Device> {
        match self {
            DeviceKind::Cpu => Ok(candle_core::Device::Cpu),
            DeviceKind::Cuda => candle_core::Device::new_cuda(0)
                .context("--device cuda: no usable GPU (this build may lack CUDA support; use --device cpu)"),
        }
    }
}

/// `--pe-type` (cryoDRGN's spellings).
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum PeTypeArg {
    /// Geometric frequencies Dπ … 2π.
    #[value(name = "geom_ft")]
    GeomFt,
    /// Geometric frequencies Dπ … 1.
    #[value(name = "geom_full")]
    GeomFull,
    /// Geometric frequencies D/2 … 1.
    #[value(name = "geom_lowf")]
    GeomLowf,
    /// Geometric frequencies D/2 … 2π.
    #[value(name = "geom_nohighf")]
    GeomNohighf,
    /// Integer frequencies 1 … D/2.
    #[value(name = "linear_lowf")]
    LinearLowf,
    /// Random Gaussian Fourier features (σ = --feat-sigma).
    #[value(name = "gaussian")]
    Gaussian,
    /// Raw coordinates.
    #[value(name = "none")]
    None,
}

impl From<PeTypeArg> for PeType {
    fn from(v: PeTypeArg) -> Self {
        match v {
            PeTypeArg::GeomFt => PeType::GeomFt,
            PeTypeArg::GeomFull => PeType::GeomFull,
            PeTypeArg::GeomLowf => PeType::GeomLowf,
            PeTypeArg::GeomNohighf => PeType::GeomNohighf,
            PeTypeArg::LinearLowf => PeType::LinearLowf,
            PeTypeArg::Gaussian => PeType::Gaussian,
            PeTypeArg::None => PeType::None,
        }
    }
}

/// `--domain`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum DomainArg {
    /// (Re, Im) outputs on a half-space, Friedel symmetry built in (cryoDRGN's default).
    Fourier,
    /// One Hartley output per point.
    Hartley,
}

impl From<DomainArg> for Domain {
    fn from(v: DomainArg) -> Self {
        match v {
            DomainArg::Fourier => Domain::Fourier,
            DomainArg::Hartley => Domain::Hartley,
        }
    }
}

/// `--activation`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum ActivationArg {
    /// max(x, 0).
    #[value(name = "relu")]
    Relu,
    /// Leaky ReLU, slope 0.01.
    #[value(name = "leaky_relu")]
    LeakyRelu,
}

impl From<ActivationArg> for Activation {
    fn from(v: ActivationArg) -> Self {
        match v {
            ActivationArg::Relu => Activation::Relu,
            ActivationArg::LeakyRelu => Activation::LeakyRelu,
        }
    }
}

/// Decoder flags shared by `train-vae` (`--dec-*`) and `train-nn` (`--layers/--dim`), minus the sizes.
#[derive(ClapArgs, Debug, Clone)]
pub struct DecoderArgs {
    /// Positional encoding of the decoder's coordinates.
    #[arg(long, value_enum, default_value_t = PeTypeArg::Gaussian)]
    pub pe_type: PeTypeArg,
    /// Frequencies per encoding (default D/2).
    #[arg(long)]
    pub pe_dim: Option<usize>,
    /// σ of the Gaussian encoding's frequencies.
    #[arg(long, default_value_t = 0.5)]
    pub feat_sigma: f64,
    /// Output domain of the decoder.
    #[arg(long, value_enum, default_value_t = DomainArg::Fourier)]
    pub domain: DomainArg,
    /// Hidden activation.
    #[arg(long, value_enum, default_value_t = ActivationArg::Relu)]
    pub activation: ActivationArg,
}

impl DecoderArgs {
    /// The decoder configuration for lattice side `lattice_size`, latent `zdim`, `layers` × `dim`.
    pub fn config(
        &self,
        lattice_size: usize,
        zdim: usize,
        layers: usize,
        dim: usize,
    ) -> Result<DecoderConfig> {
        if dim == 0 || self.pe_dim == Some(0) || !(self.feat_sigma.is_finite() && self.feat_sigma > 0.0) {
            bail!("decoder width, --pe-dim and --feat-sigma must be positive");
        }
        let mut cfg = DecoderConfig::new(lattice_size, zdim);
        cfg.layers = layers;
        cfg.dim = dim;
        cfg.pe_type = self.pe_type.into();
        cfg.pe_dim = self.pe_dim;
        cfg.feat_sigma = self.feat_sigma;
        cfg.domain = self.domain.into();
        cfg.activation = self.activation.into();
        Ok(cfg)
    }
}

/// `run.log` in the output directory (appended, so a resumed run keeps its history), mirrored to stderr.
pub struct RunLog {
    /// `None` off rank 0 of a data-parallel run, which writes no files.
    file: Option<std::fs::File>,
    path: PathBuf,
}

impl RunLog {
    /// Open `outdir/run.log` for appending.
    pub fn open(outdir: &Path) -> Result<Self> {
        let path = outdir.join("run.log");
        if !crate::cluster::is_root() {
            return Ok(Self { file: None, path });
        }
        let file = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(&path)
            .with_context(|| format!("cannot open {}", path.display()))?;
        Ok(Self { file: Some(file), path })
    }

    /// Start a run: write `config.yaml`, open `run.log` and log the command line and `summary`.
    pub fn start(outdir: &Path, config: &RunConfig, summary: &str) -> Result<Self> {
        if crate::cluster::is_root() {
            config.write(&outdir.join("config.yaml"))?;
        }
        let mut log = Self::open(outdir)?;
        log.line(&format!("# {}", command_line().join(" ")))?;
        log.line(summary)?;
        Ok(log)
    }

    /// Write a line to the log and to stderr.
    pub fn line(&mut self, msg: &str) -> Result<()> {
        tracing::info!("{msg}");
        match &mut self.file {
            Some(f) => writeln!(f, "{msg}").with_context(|| format!("cannot write {}", self.path.display())),
            None => Ok(()),
        }
    }
}

/// The driver's hooks for the CLI: a progress bar per epoch, cryoDRGN's per-epoch line in run.log, and
/// per-checkpoint outputs (`outputs`, plus pose.E.pkl for trainers with a pose table).
pub struct CliHooks<'a, T: ?Sized> {
    log: &'a mut RunLog,
    outdir: PathBuf,
    n: usize,
    d: usize,
    num_epochs: usize,
    progress: Option<Progress>,
    /// The progress bar of a trainer's pass (pose search, pretraining) and the images it has counted.
    pass: Option<(String, Progress, usize)>,
    #[allow(clippy::type_complexity)]
    outputs: Box<dyn FnMut(usize, &T) -> Result<()> + 'a>,
    /// A data-parallel run's exchanges up to the start of the epoch.
    exchanged: drgnfly_nn::train::Traffic,
}

impl<'a, T: ?Sized> CliHooks<'a, T> {
    /// Hooks for training `data` for `num_epochs`, logging to `log`; `outputs(epoch, trainer)` writes the
    /// command's per-checkpoint files.
    pub fn new(
        log: &'a mut RunLog,
        data: &Dataset,
        schedule: &Schedule,
        outputs: impl FnMut(usize, &T) -> Result<()> + 'a,
    ) -> Self {
        Self {
            log,
            outdir: schedule.outdir.clone(),
            n: data.len(),
            d: data.image_size(),
            num_epochs: schedule.num_epochs,
            progress: None,
            pass: None,
            outputs: Box::new(outputs),
            exchanged: crate::cluster::comm().traffic(),
        }
    }
}

impl<T: Trainer + ?Sized> Hooks<T> for CliHooks<'_, T> {
    type Error = anyhow::Error;

    fn pass_progress(&mut self, stage: &str, done: usize, total: usize) {
        if self.pass.as_ref().is_none_or(|(s, _, _)| s != stage) {
            if let Some((_, p, _)) = self.pass.take() {
                p.finish();
            }
            self.pass = Some((stage.to_string(), Progress::new(stage, total as u64, "images"), 0));
        }
        if let Some((_, p, counted)) = &mut self.pass {
            p.inc(done.saturating_sub(*counted) as u64);
            *counted = done;
        }
        if done >= total {
            if let Some((_, p, _)) = self.pass.take() {
                p.finish();
            }
        }
    }

    fn note(&mut self, text: &str) -> Result<()> {
        text.lines().try_for_each(|line| self.log.line(line))
    }

    fn stop_requested(&self) -> bool {
        crate::interrupt::requested().is_some()
    }

    fn epoch_start(&mut self, epoch: usize) -> Result<()> {
        self.progress =
            Some(Progress::new(&format!("epoch {epoch}/{}", self.num_epochs), self.n as u64, "images"));
        Ok(())
    }

    fn batch_done(&mut self, _epoch: usize, images: usize) {
        if let Some(p) = &mut self.progress {
            p.inc(images as u64);
        }
    }

    fn epoch_done(&mut self, s: &EpochSummary) -> Result<()> {
        if let Some(p) = self.progress.take() {
            p.finish();
        }
        let losses: Vec<String> = s.losses.iter().map(|(name, v)| format!("{name} = {v:.6}")).collect();
        self.log.line(&format!(
            "# =====> Epoch: {} Average {}; Finished in {}",
            s.epoch,
            losses.join(", "),
            timedelta(s.elapsed)
        ))?;
        if let Some(line) = drgnfly_nn::phases::report(s.elapsed.as_secs_f64()) {
            self.log.line(&line)?;
        }
        let comm = crate::cluster::comm();
        if comm.size() > 1 {
            let now = comm.traffic();
            let t = now.since(&self.exchanged);
            self.exchanged = now;
            self.log.line(&format!(
                "# {} processes ({}), {:.0} images/s in all; rank 0 exchanged {:.1} MB in {} all-reduces, {:.2} s of the \
                 epoch's {:.2} s (waiting for other ranks included)",
                comm.size(),
                crate::cluster::engine(),
                self.n as f64 / s.elapsed.as_secs_f64().max(1e-9),
                t.bytes as f64 / 1e6,
                t.calls,
                t.seconds,
                s.elapsed.as_secs_f64()
            ))?;
        }
        Ok(())
    }

    fn checkpoint(&mut self, epoch: usize, _path: &Path, trainer: &T) -> Result<()> {
        let written = (|| -> Result<()> {
            // Outputs may be collective (an encoding pass shared out over the processes): every rank runs
            // them, and they write on rank 0 only.
            (self.outputs)(epoch, trainer)?;
            if let Some(table) = trainer.pose_table().filter(|_| crate::cluster::is_root()) {
                write_pose_table(&self.outdir.join(format!("pose.{epoch}.pkl")), table, self.d)?;
            }
            Ok(())
        })();
        written.with_context(|| checkpoint_failed(epoch))
    }
}

/// Refuse a run whose training steps cannot fit in memory, before the first batch: gradients and Adam's two
/// moments (3 × the `params` weights, which are allocated already) plus one batch's decoder inputs and first
/// hidden layer over the image disc (a lower bound: the rest of the network is evaluated in tiles).
pub fn check_training_memory(params: usize, dec: &DecoderConfig, batch: usize, d: usize) -> Result<()> {
    let disc_pixels = (std::f64::consts::FRAC_PI_4 * (d * d) as f64) as usize;
    let per_point = dec.pe_dim().saturating_mul(6).saturating_add(dec.zdim).saturating_add(dec.dim);
    let needed = drgnfly_io::memory::f32_bytes(&[params, 3])
        .saturating_add(drgnfly_io::memory::f32_bytes(&[batch, disc_pixels, per_point]));
    drgnfly_io::memory::check_fits(
        format!(
            "training ({params} parameters, batches of {batch} images of {d}×{d}, {per_point} decoder values per pixel)"
        ),
        needed,
        "lower -b, --dec-dim/--enc-dim or --pe-dim, or downsample the particles (drgnfly downsample)",
    )?;
    Ok(())
}

/// What a failed checkpoint (a full disk, say) means for the run.
pub fn checkpoint_failed(epoch: usize) -> String {
    format!(
        "writing the checkpoint of epoch {epoch} failed; the previous checkpoint is complete and `--load latest` \
         resumes from it once the problem is fixed"
    )
}

/// config.yaml of a training run on `d`-pixel images: `dataset_args`, the (D+1) lattice, `model_args`, the seed,
/// this version and the command line.
pub fn run_config(dataset_args: DatasetArgs, d: usize, model_args: ModelArgs, seed: u64) -> RunConfig {
    RunConfig {
        dataset_args,
        lattice_args: LatticeArgs { d: d + 1, extent: 0.5, ignore_dc: true },
        model_args,
        seed: Some(seed),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        cmd: Some(command_line()),
    }
}

/// Pixel size of the maps a run writes: from ctf.pkl or the stack header, else 1 Å/px with a warning.
pub fn map_apix(data: &Dataset, particles: &Path) -> f32 {
    data.apix().unwrap_or_else(|| {
        tracing::warn!(
            "{}: no pixel size in ctf.pkl or the stack header; the maps are written at 1 Å/px (set it later \
             with `drgnfly add-psize`)",
            particles.display()
        );
        1.0
    })
}

/// `outdir/reconstruct.E.mrc` from a latent-free decoder trained on images of lattice side `d + 1`.
pub fn write_reconstruction(
    decoder: &Decoder,
    norm: DataNorm,
    d: usize,
    apix: f32,
    outdir: &Path,
    epoch: usize,
) -> Result<()> {
    let model = VolumeDecoder::new(decoder.clone(), norm, d + 1, apix);
    model.volume(&[], &VolumeRequest::default())?.write(&outdir.join(format!("reconstruct.{epoch}.mrc")))?;
    Ok(())
}

/// A pose table as cryoDRGN's pose.pkl: rotation matrices and translations as fractions of the box.
pub fn write_pose_table(path: &Path, table: &PoseTable, d: usize) -> Result<()> {
    write_pose_list(path, &table.poses(), d)
}

/// Poses (shifts in pixels) as cryoDRGN's pose.pkl for `d`×`d` images.
pub fn write_pose_list(path: &Path, poses: &[Pose], d: usize) -> Result<()> {
    let file = Poses {
        rot: poses.iter().map(|p| p.pkl_rot()).collect(),
        trans: Some(poses.iter().map(|p| p.pkl_trans(d)).collect()),
    };
    write_poses(path, &file)?;
    Ok(())
}

/// What [`fit_decoder`] needs to write the map at each checkpoint.
pub struct MapOutput {
    /// The dataset's normalisation (the map is mapped back by ·std + mean).
    pub norm: DataNorm,
    /// Image side `D`.
    pub d: usize,
    /// Pixel size of the map header (Å).
    pub apix: f32,
}

/// Trains a decoder-only model (train-nn, abinit-homo) through the driver: run.log headed by `summary`,
/// `--load` resume, progress bars, `reconstruct.E.mrc` (from `decoder(trainer)`) and pose.E.pkl at every
/// checkpoint, and the elapsed-time line at the end.
pub fn fit_decoder<T: Trainer>(
    t: &TrainArgs,
    data: &Dataset,
    trainer: &mut T,
    (config, summary, seed): (&RunConfig, &str, u64),
    map: MapOutput,
    decoder: impl Fn(&T) -> &Decoder,
) -> Result<()> {
    let mut log = RunLog::start(&t.outdir, config, summary)?;
    let start = t.resume_if_asked(trainer, &mut log)?;
    let started = std::time::Instant::now();
    let schedule = t.schedule(seed);
    let outdir = t.outdir.clone();
    let hooks = CliHooks::new(&mut log, data, &schedule, |epoch, trainer: &T| {
        if !crate::cluster::is_root() {
            return Ok(());
        }
        write_reconstruction(decoder(trainer), map.norm, map.d, map.apix, &outdir, epoch)
    });
    drgnfly_nn::train::fit(data, &schedule, trainer, start, &mut { hooks })
        .map_err(|e| explain_interrupt(e, &outdir))?;
    log.line(&format!(
        "# finished {} epochs in {}",
        t.num_epochs.saturating_sub(start),
        timedelta(started.elapsed())
    ))
}

/// The error of a run stopped by an interrupt, with the checkpoint to resume from; other errors unchanged.
pub fn explain_interrupt(e: anyhow::Error, outdir: &Path) -> anyhow::Error {
    if crate::interrupt::requested().is_none() {
        return e;
    }
    match latest_checkpoint(outdir).ok().flatten() {
        Some(p) => {
            anyhow::anyhow!("{e:#}; the latest checkpoint is {}: resume with --load latest", p.display())
        }
        None => anyhow::anyhow!("{e:#}; no checkpoint was written yet: rerun from the start"),
    }
}

/// A duration as Python prints a `timedelta` (`H:MM:SS.ffffff`), which cryoDRGN's logs use.
pub fn timedelta(d: Duration) -> String {
    let micros = d.as_micros();
    let (secs, us) = (micros / 1_000_000, micros % 1_000_000);
    format!("{}:{:02}:{:02}.{us:06}", secs / 3600, (secs / 60) % 60, secs % 60)
}

/// The command line, for config.yaml and run.log.
pub fn command_line() -> Vec<String> {
    std::env::args().collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn timedelta_matches_python() {
        assert_eq!(timedelta(Duration::from_micros(62_500_000)), "0:01:02.500000");
        assert_eq!(timedelta(Duration::from_secs(3 * 3600 + 7)), "3:00:07.000000");
    }

    #[test]
    fn latest_checkpoint_takes_the_largest_epoch() {
        let dir = tempfile::tempdir().unwrap();
        for name in ["weights.2.safetensors", "weights.10.safetensors", "weights.9.pkl", "z.11.pkl"] {
            std::fs::write(dir.path().join(name), b"").unwrap();
        }
        assert_eq!(latest_checkpoint(dir.path()).unwrap(), Some(dir.path().join("weights.10.safetensors")));
        assert_eq!(latest_checkpoint(tempfile::tempdir().unwrap().path()).unwrap(), None);
    }
}
