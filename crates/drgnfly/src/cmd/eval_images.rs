//! `eval-images`: encode particles with a trained encoder (cryoDRGN `eval_images`).
//!
//! - A VAE (`train-vae`): preprocessing (normalization, window, inversion, encoder mask) comes from the run's
//!   config.yaml, so images are seen exactly as in training. Writes `--out-z` (z_mu then z_logvar, N × zdim
//!   each, in dataset order, as z.N.pkl) and `-o` losses: a float32 array `[gen, KLD, total]` of
//!   image-averaged losses in evaluation mode (z = μ). (cryoDRGN pickles a dict there; drgnfly writes only
//!   numpy arrays.)
//! - An amortized run (`abinit-amortized`): the CNN predicts every particle's pose in one streaming pass,
//!   written to `--out-poses` as pose.pkl (and, for a heterogeneous run, the latents to `--out-z`); no poses
//!   or CTF are needed, and the particles need not be those
//!   the encoder was trained on (train on a subset with `--ind`, infer on the whole stack here).
//!
//! Example usage:
//!   drgnfly eval-images particles.mrcs out/weights.25.safetensors -c out/config.yaml --poses pose.pkl \
//!       --ctf ctf.pkl -o losses.pkl --out-z z.eval.pkl
//!   drgnfly eval-images particles.mrcs amortized/weights.30.safetensors -c amortized/config.yaml \
//!       --out-poses pose.pkl

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_em::preprocess::{Normalization, PreprocessConfig};
use drgnfly_io::pickle::{write_array, ArrayData, NdArray};
use drgnfly_nn::config::{ModelKind, RunConfig};
use drgnfly_nn::data::{Dataset, DatasetFiles};
use drgnfly_nn::train::{
    ordered_pass, AmortizedModel, BatchPrep, Inference, KlSchedule, TrainResult, VaeModel,
};
use drgnfly_nn::volume::read_model_state;

use super::train_common::{write_pose_list, DeviceKind};
use crate::progress::Progress;

/// Encode particles with a trained VAE (latents and losses) or amortized run (poses).
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly eval-images particles.mrcs out/weights.25.safetensors -c out/config.yaml \
                  --poses pose.pkl --ctf ctf.pkl -o losses.pkl --out-z z.pkl\n  \
                  drgnfly eval-images particles.mrcs amortized/weights.30.safetensors -c amortized/config.yaml \
                  --out-poses pose.pkl"
)]
pub struct Args {
    /// Particle images (.mrcs, .star, .cs, .txt).
    pub particles: PathBuf,
    /// Model weights (weights.N.safetensors or cryoDRGN's weights.N.pkl).
    pub weights: PathBuf,
    /// The run's config.yaml.
    #[arg(short = 'c', long)]
    pub config: PathBuf,
    /// Poses: pose.pkl, or rot.pkl trans.pkl (a VAE's evaluation).
    #[arg(long, num_args = 1..=2)]
    pub poses: Vec<PathBuf>,
    /// CTF parameters (ctf.pkl).
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Evaluate these particles only (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Directory of the stacks a .star/.cs/.txt refers to.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Output losses (.pkl; a VAE's evaluation).
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Output latents (.pkl; a VAE, or an amortized run with latents).
    #[arg(long)]
    pub out_z: Option<PathBuf>,
    /// Output poses (pose.pkl; an amortized run's inference).
    #[arg(long)]
    pub out_poses: Option<PathBuf>,
    /// Images per batch.
    #[arg(short = 'b', long = "batch-size", default_value_t = 64)]
    pub batch_size: usize,
    /// KLD weight (default 1/zdim).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Where to compute.
    #[arg(long, value_enum, default_value_t = DeviceKind::Cpu)]
    pub device: DeviceKind,
}

/// Evaluate.
pub fn run(args: Args) -> Result<()> {
    let config = RunConfig::read(&args.config)?;
    if args.batch_size == 0 {
        bail!("-b must be at least 1");
    }
    match config.model_kind() {
        ModelKind::Vae => evaluate_vae(args, &config),
        ModelKind::Amortized => infer_amortized(args, &config),
        kind => bail!("{}: a {kind:?} model has no encoder to evaluate", args.config.display()),
    }
}

/// An amortized run's poses (and latents) for every particle.
fn infer_amortized(args: Args, config: &RunConfig) -> Result<()> {
    let Some(out) = &args.out_poses else {
        bail!(
            "{} describes an amortized run, whose encoder predicts poses: give --out-poses pose.pkl",
            args.config.display()
        );
    };
    let zdim = config.zdim();
    if !args.poses.is_empty() || args.output.is_some() || (zdim == 0 && args.out_z.is_some()) {
        bail!(
            "--poses, -o and (for a homogeneous model) --out-z belong to a VAE's evaluation; an amortized run \
             takes --out-poses (and --out-z when it has latents)"
        );
    }
    let cnn = config.cnn_config().context("amortized config without a CNN")?;
    let data = Dataset::open(&DatasetFiles {
        particles: args.particles.clone(),
        poses: Vec::new(),
        ctf: None,
        ind: args.ind.clone(),
        datadir: args.datadir.clone(),
    })?;
    let d = data.image_size();
    if d != cnn.d {
        bail!(
            "{} has {d}×{d} images but the encoder in {} was trained on {1}×{1}",
            args.particles.display(),
            cnn.d
        );
    }
    let model = AmortizedModel::load(&cnn, &args.weights, &args.device.device()?)?;
    let inferred = infer_all(&data, args.batch_size, |raw| model.infer(raw))?;
    write_pose_list(out, &inferred.poses, d)?;
    say!("{} poses → {}", inferred.poses.len(), out.display());
    if let Some(z) = &args.out_z {
        drgnfly_io::pickle::write_latents(z, &inferred.mu, zdim, Some(&inferred.logvar))?;
        say!("latents → {}", z.display());
    }
    Ok(())
}

/// What `predict` gives each particle of `data`, in dataset order: one streaming pass with a progress bar.
pub fn infer_all(
    data: &Dataset,
    batch_size: usize,
    predict: impl Fn(&[f32]) -> TrainResult<Inference>,
) -> Result<Inference> {
    let mut all = Inference::default();
    let mut progress = Progress::new("inferring poses", data.len() as u64, "images");
    ordered_pass(
        data,
        batch_size,
        "inferring poses",
        |_, images| {
            let batch = predict(images)?;
            all.poses.extend(batch.poses);
            all.mu.extend(batch.mu);
            all.logvar.extend(batch.logvar);
            Ok(())
        },
        |b| progress.inc(b as u64),
    )?;
    progress.finish();
    Ok(all)
}

/// A VAE's latents and losses.
fn evaluate_vae(args: Args, config: &RunConfig) -> Result<()> {
    let zdim = config.zdim();
    let (Some(output), Some(out_z)) = (&args.output, &args.out_z) else {
        bail!("{} describes a VAE: give -o losses.pkl and --out-z z.pkl", args.config.display());
    };
    if args.poses.is_empty() {
        bail!(
            "{} describes a VAE, which decodes at known poses: give --poses pose.pkl",
            args.config.display()
        );
    }
    if args.out_poses.is_some() {
        bail!("--out-poses: a VAE does not predict poses (an amortized run does)");
    }
    let data = Dataset::open(&DatasetFiles {
        particles: args.particles.clone(),
        poses: args.poses.clone(),
        ctf: args.ctf.clone(),
        ind: args.ind.clone(),
        datadir: args.datadir.clone(),
    })?;
    let d = data.image_size();
    if d + 1 != config.lattice_args.d {
        bail!(
            "{} has {d}×{d} images but the model in {} was trained on {1}×{1}",
            args.particles.display(),
            config.image_size()
        );
    }
    let norm = config.norm()?;
    let ds = &config.dataset_args;
    let preprocess = PreprocessConfig { window_r: ds.window.then_some(ds.window_r), invert: ds.invert_data };
    let device = args.device.device()?;
    let norm = Normalization { mean: norm.mean, std: norm.std };
    let prep = BatchPrep::new(d, &preprocess, norm, config.encoder_input()?, &device)?;
    let enc = config.encoder_config(prep.encoder_dim()).context("config without zdim")?;
    let beta = args.beta.unwrap_or(1.0 / zdim as f64);
    let kl = KlSchedule::new(drgnfly_nn::BetaSchedule::Constant(beta), None)?.at(u64::MAX);
    let model = VaeModel::new(&enc, &config.decoder_config(), 0, &device)?;
    model.store().load_state(&read_model_state(&args.weights)?, &args.weights)?;

    let n = data.len();
    let (mut mu, mut logvar) = (Vec::with_capacity(n * zdim), Vec::with_capacity(n * zdim));
    let mut sums = [0f64; 3];
    let mut progress = Progress::new("eval-images", n as u64, "images");
    ordered_pass(
        &data,
        args.batch_size,
        "evaluating",
        |positions, images| {
            let (loss, m, l) = model.evaluate(&prep.prepare_positions(&data, positions, images)?, kl)?;
            mu.extend(m);
            logvar.extend(l);
            for (s, v) in sums.iter_mut().zip([loss.gen, loss.kld, loss.total]) {
                *s += v as f64 * positions.len() as f64;
            }
            Ok(())
        },
        |b| progress.inc(b as u64),
    )?;
    progress.finish();
    drgnfly_io::pickle::write_latents(out_z, &mu, zdim, Some(&logvar))?;
    let avg: Vec<f32> = sums.iter().map(|s| (s / n as f64) as f32).collect();
    write_array(output, &NdArray::new(vec![3], ArrayData::F32(avg.clone())))?;
    say!(
        "{n} images: gen loss {:.6}, KLD {:.6}, total loss {:.6}; z → {}, losses → {}",
        avg[0],
        avg[1],
        avg[2],
        out_z.display(),
        output.display()
    );
    Ok(())
}
