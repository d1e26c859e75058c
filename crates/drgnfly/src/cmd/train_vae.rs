//! `train-vae`: heterogeneous reconstruction with known poses (cryoDRGN `train_vae`).
//!
//! Each epoch streams the particles in chunk-shuffled batches (seed + epoch), prepares them
//! (`drgnfly_nn::train::BatchPrep`), and takes one Adam step per batch on gen + β·KLD/M. Per epoch it logs
//! cryoDRGN's line to `run.log` and stderr; at each checkpoint it writes `weights.E.safetensors` (model,
//! optimizer, epoch) and `z.E.pkl` (z_mu then z_logvar of every particle, in dataset order, z = μ). Epochs
//! are numbered from 1. `--load latest` resumes model, optimizer and epoch exactly. As cryoDRGN does, the
//! final epoch is then analysed with `analyze`'s defaults (`--no-analysis` skips it).
//!
//! Example usage:
//!   drgnfly train-vae particles.mrcs --poses pose.pkl --ctf ctf.pkl --zdim 8 -n 25 -o out/

use std::time::Instant;

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_io::source::StreamOptions;
use drgnfly_nn::train::{BatchPrep, EncoderInput, VaeTrainer};
use drgnfly_nn::{AdamConfig, EncodeMode, EncoderConfig};
use rand::SeedableRng;
use rand_chacha::ChaCha8Rng;

use super::train_common::{command_line, timedelta, DataArgs, DecoderArgs, RunLog, TrainArgs, TrainData};
use crate::progress::Progress;
use crate::run_config::{LatticeArgs, ModelArgs, RunConfig};

/// Train a VAE (encoder + z-conditioned decoder) on particles with known poses.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly train-vae particles.mrcs --poses pose.pkl --ctf ctf.pkl --zdim 8 -o out/\n  \
                  drgnfly train-vae particles.mrcs --poses pose.pkl --ctf ctf.pkl --zdim 8 -n 40 -o out/ --load latest"
)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Latent dimension.
    #[arg(long, required = true)]
    pub zdim: usize,
    /// KLD weight β: a number (default 1/zdim), or a schedule a, b, c or d (linear ramps in the number of
    /// images seen, as cryoDRGN's; a schedule needs --beta-control).
    #[arg(long, value_name = "BETA|a|b|c|d")]
    pub beta: Option<drgnfly_nn::BetaSchedule>,
    /// Hold the KLD near β instead of weighting it: loss = gen + γ·(β − KLD)²/|mask|.
    #[arg(long, value_name = "γ")]
    pub beta_control: Option<f64>,
    /// Encoder hidden layers.
    #[arg(long, default_value_t = 3)]
    pub enc_layers: usize,
    /// Encoder width.
    #[arg(long, default_value_t = 1024)]
    pub enc_dim: usize,
    /// Encoder architecture.
    #[arg(long, value_enum, default_value_t = EncodeModeArg::Resid)]
    pub encode_mode: EncodeModeArg,
    /// Encoder input: the Fourier disc of this radius in pixels (default D/2); -1 for the whole image.
    #[arg(long, allow_negative_numbers = true)]
    pub enc_mask: Option<i64>,
    /// Decoder hidden layers.
    #[arg(long, default_value_t = 3)]
    pub dec_layers: usize,
    /// Decoder width.
    #[arg(long, default_value_t = 1024)]
    pub dec_dim: usize,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    /// Do not run `analyze` (default settings) on the final epoch when training ends.
    #[arg(long)]
    pub no_analysis: bool,
}

/// `--encode-mode`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeModeArg {
    /// Residual MLP.
    Resid,
    /// Plain MLP.
    Mlp,
}

/// Train.
pub fn run(args: Args) -> Result<()> {
    let t = &args.train;
    t.validate()?;
    if args.zdim == 0 {
        bail!("--zdim 0: a VAE needs a latent dimension of at least 1 (use train-nn for a homogeneous map)");
    }
    let data = TrainData::open(
        &args.data.particles,
        &args.data.poses,
        args.data.ctf.as_deref(),
        args.data.ind.as_deref(),
        args.data.datadir.as_deref(),
    )?;
    let (n, d) = (data.len(), data.image_size());
    let norm = data.normalization(args.data.norm.as_deref())?;
    let enc_input = match args.enc_mask {
        None => EncoderInput::Disc(d / 2),
        Some(-1) => EncoderInput::FullLattice,
        Some(r) if r >= 1 => EncoderInput::Disc(r as usize),
        Some(r) => bail!("--enc-mask {r}: give a radius between 1 and D/2 = {}, or -1", d / 2),
    };
    let device = t.device.device()?;
    let prep = BatchPrep::new(d, &args.data.preprocess()?, norm, enc_input, &device)?;
    let mut enc = EncoderConfig::new(prep.encoder_dim(), args.zdim);
    enc.layers = args.enc_layers;
    enc.dim = args.enc_dim;
    enc.mode = match args.encode_mode {
        EncodeModeArg::Resid => EncodeMode::Resid,
        EncodeModeArg::Mlp => EncodeMode::Mlp,
    };
    enc.activation = args.decoder.activation.into();
    let mut dec = args.decoder.config(d + 1, args.zdim, args.dec_layers, args.dec_dim)?;
    let precision = t.precision(&mut dec);
    let seed = t.resolve_seed();
    let beta = args.beta.unwrap_or(drgnfly_nn::BetaSchedule::Constant(1.0 / args.zdim as f64));
    let adam = AdamConfig { lr: t.lr, weight_decay: t.wd, ..Default::default() };
    let mut trainer = VaeTrainer::new(&enc, &dec, seed, adam, beta, args.beta_control, &device)?;

    let config = RunConfig {
        dataset_args: args.data.dataset_args(norm),
        lattice_args: LatticeArgs { d: d + 1, extent: 0.5, ignore_dc: true },
        model_args: ModelArgs {
            qlayers: Some(enc.layers),
            qdim: Some(enc.dim),
            players: Some(dec.layers),
            pdim: Some(dec.dim),
            zdim: Some(args.zdim),
            encode_mode: Some(enc.mode),
            enc_mask: Some(args.enc_mask.unwrap_or((d / 2) as i64)),
            pe_type: Some(dec.pe_type),
            feat_sigma: Some(dec.feat_sigma),
            pe_dim: dec.pe_dim,
            domain: Some(dec.domain),
            activation: Some(dec.activation),
            ..Default::default()
        },
        seed: Some(seed),
        version: Some(env!("CARGO_PKG_VERSION").to_string()),
        cmd: Some(command_line()),
    };
    let summary = format!(
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters, beta {}, seed {seed}, precision {precision}",
        norm.mean,
        norm.std,
        trainer.store().num_params(),
        match args.beta_control {
            Some(g) => format!("{beta} with control γ = {g}"),
            None => format!("{beta}"),
        }
    );
    let mut log = RunLog::start(&t.outdir, &config, &summary)?;
    let mut start = 0usize;
    if let Some(ckpt) = t.checkpoint_to_load()? {
        start = trainer.load(&ckpt).with_context(|| format!("--load {}", ckpt.display()))? as usize;
        log.line(&format!("# resuming from {} after epoch {start}", ckpt.display()))?;
    }
    if start >= t.num_epochs {
        log.line(&format!("# nothing to do: the checkpoint already has {start} of {} epochs", t.num_epochs))?;
        return Ok(());
    }
    let started = Instant::now();
    for epoch in start + 1..=t.num_epochs {
        let t0 = Instant::now();
        let stream =
            data.source.stream(&StreamOptions::shuffled(t.batch_size, d, seed.wrapping_add(epoch as u64)));
        // Reparameterisation noise: one stream per epoch, so a resumed run draws what a straight one does.
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        rng.set_stream(epoch as u64);
        let mut progress = Progress::new(&format!("epoch {epoch}/{}", t.num_epochs), n as u64, "images");
        let (mut gen, mut kld, mut total) = (0f64, 0f64, 0f64);
        // Images seen since the start of training, for the β schedule (cryoDRGN counts the current batch).
        let mut seen = (epoch - 1) as u64 * n as u64;
        for (bi, batch) in stream.enumerate() {
            let batch = batch?;
            let context = || data.batch_context(&format!("epoch {epoch}"), bi + 1, &batch.positions);
            let poses = data.batch_poses(&batch.positions);
            let ctf = data.batch_ctf(&batch.positions);
            let prepared = prep.prepare(&batch.images, &poses, ctf.as_deref()).with_context(context)?;
            seen += batch.positions.len() as u64;
            let loss = trainer.train_step(&prepared, seen, &mut rng).with_context(context)?;
            let b = batch.positions.len() as f64;
            gen += loss.gen as f64 * b;
            kld += loss.kld as f64 * b;
            total += loss.total as f64 * b;
            progress.inc(batch.positions.len() as u64);
        }
        progress.finish();
        let nf = n as f64;
        log.line(&format!(
            "# =====> Epoch: {epoch} Average gen loss = {:.6}, KLD = {:.6}, total loss = {:.6}; Finished in {}",
            gen / nf,
            kld / nf,
            total / nf,
            timedelta(t0.elapsed())
        ))?;
        if t.is_checkpoint(epoch) {
            let weights = t.outdir.join(format!("weights.{epoch}.safetensors"));
            trainer.save(&weights, epoch as u64)?;
            let z_path = t.outdir.join(format!("z.{epoch}.pkl"));
            write_latents(&trainer, &data, &prep, t.batch_size, &z_path)?;
        }
    }
    log.line(&format!("# finished {} epochs in {}", t.num_epochs - start, timedelta(started.elapsed())))?;
    if !args.no_analysis {
        analyze_final_epoch(&t.outdir, t.num_epochs);
    }
    Ok(())
}

/// `drgnfly analyze OUTDIR EPOCH` with its defaults. Training has succeeded by then, so a failed analysis
/// is a warning with the command to rerun, not an error that would hide the trained model.
fn analyze_final_epoch(outdir: &std::path::Path, epoch: usize) {
    use clap::{Args as _, FromArgMatches as _};
    let argv = ["analyze".into(), outdir.as_os_str().to_owned(), epoch.to_string().into()];
    let parsed = super::analyze::Args::augment_args(clap::Command::new("analyze"))
        .try_get_matches_from(argv)
        .map_err(anyhow::Error::from)
        .and_then(|m| Ok(super::analyze::Args::from_arg_matches(&m)?));
    if let Err(e) = parsed.and_then(super::analyze::run) {
        tracing::warn!(
            "training finished, but the automatic analysis failed: {e:#}\n  rerun it with: drgnfly analyze {} {epoch}",
            outdir.display()
        );
    }
}

/// z_mu and z_logvar of every particle in dataset order (z = μ, no noise), written as z.E.pkl.
pub fn write_latents(
    trainer: &VaeTrainer,
    data: &TrainData,
    prep: &BatchPrep,
    batch_size: usize,
    path: &std::path::Path,
) -> Result<()> {
    let (mu, logvar) = encode_all(trainer, data, prep, batch_size)?;
    drgnfly_io::pickle::write_latents(path, &mu, trainer.model().encoder.zdim(), Some(&logvar))?;
    Ok(())
}

/// Posterior means and log variances of all particles in dataset order (each N × zdim).
pub fn encode_all(
    trainer: &VaeTrainer,
    data: &TrainData,
    prep: &BatchPrep,
    batch_size: usize,
) -> Result<(Vec<f32>, Vec<f32>)> {
    let zdim = trainer.model().encoder.zdim();
    let n = data.len();
    let (mut mu, mut logvar) = (Vec::with_capacity(n * zdim), Vec::with_capacity(n * zdim));
    let d = data.image_size();
    let mut progress = Progress::new("latents", n as u64, "images");
    for (bi, batch) in data.source.stream(&StreamOptions::ordered(batch_size, d)).enumerate() {
        let batch = batch?;
        let context = || data.batch_context("encoding", bi + 1, &batch.positions);
        let poses = data.batch_poses(&batch.positions);
        let ctf = data.batch_ctf(&batch.positions);
        let prepared = prep.prepare(&batch.images, &poses, ctf.as_deref()).with_context(context)?;
        let (m, l) = trainer.encode(&prepared).with_context(context)?;
        mu.extend(m);
        logvar.extend(l);
        progress.inc(batch.positions.len() as u64);
    }
    progress.finish();
    Ok((mu, logvar))
}
