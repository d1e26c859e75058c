//! `eval-images`: encode particles with a trained VAE and report its losses (cryoDRGN `eval_images`).
//!
//! Preprocessing (normalization, window, inversion, encoder mask) comes from the run's config.yaml, so
//! images are seen exactly as in training. Writes `--out-z` (z_mu then z_logvar, N × zdim each, in dataset
//! order, as z.N.pkl) and `-o` losses: a float32 array `[gen, KLD, total]` of image-averaged losses in
//! evaluation mode (z = μ). (cryoDRGN pickles a dict there; drgnfly writes only numpy arrays.)
//!
//! Example usage:
//!   drgnfly eval-images particles.mrcs out/weights.25.safetensors -c out/config.yaml --poses pose.pkl \
//!       --ctf ctf.pkl -o losses.pkl --out-z z.eval.pkl

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_em::preprocess::{Normalization, PreprocessConfig};
use drgnfly_io::pickle::{write_array, ArrayData, NdArray};
use drgnfly_nn::config::{ModelKind, RunConfig};
use drgnfly_nn::data::{Dataset, DatasetFiles};
use drgnfly_nn::train::{ordered_pass, BatchPrep, KlSchedule, VaeModel};
use drgnfly_nn::volume::read_model_state;

use super::train_common::DeviceKind;
use crate::progress::Progress;

/// Encode particles and evaluate the loss of a trained VAE.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly eval-images particles.mrcs out/weights.25.safetensors -c out/config.yaml \
                  --poses pose.pkl --ctf ctf.pkl -o losses.pkl --out-z z.pkl"
)]
pub struct Args {
    /// Particle images (.mrcs, .star, .cs, .txt).
    pub particles: PathBuf,
    /// Model weights (weights.N.safetensors or cryoDRGN's weights.N.pkl).
    pub weights: PathBuf,
    /// The run's config.yaml.
    #[arg(short = 'c', long)]
    pub config: PathBuf,
    /// Poses: pose.pkl, or rot.pkl trans.pkl.
    #[arg(long, required = true, num_args = 1..=2)]
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
    /// Output losses (.pkl).
    #[arg(short = 'o', long)]
    pub output: PathBuf,
    /// Output latents (.pkl).
    #[arg(long)]
    pub out_z: PathBuf,
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
    if config.model_kind() != ModelKind::Vae {
        bail!("{}: a {:?} model has no encoder to evaluate", args.config.display(), config.model_kind());
    }
    let zdim = config.zdim();
    if args.batch_size == 0 {
        bail!("-b must be at least 1");
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
    drgnfly_io::pickle::write_latents(&args.out_z, &mu, zdim, Some(&logvar))?;
    let avg: Vec<f32> = sums.iter().map(|s| (s / n as f64) as f32).collect();
    write_array(&args.output, &NdArray::new(vec![3], ArrayData::F32(avg.clone())))?;
    say!(
        "{n} images: gen loss {:.6}, KLD {:.6}, total loss {:.6}; z → {}, losses → {}",
        avg[0],
        avg[1],
        avg[2],
        args.out_z.display(),
        args.output.display()
    );
    Ok(())
}
