//! `train-vae`: heterogeneous reconstruction with known poses (cryoDRGN `train_vae`).
//!
//! Training runs in the library's driver (`drgnfly_nn::train::fit`) with the `VaeTrainer`: one Adam step
//! per batch on gen + β·KLD/M. Per epoch it logs cryoDRGN's line to `run.log` and stderr; at each
//! checkpoint it writes `weights.E.safetensors` (model, optimizer, epoch) and `z.E.pkl` (z_mu then z_logvar
//! of every particle, in dataset order, z = μ). Epochs are numbered from 1. `--load latest` resumes model,
//! optimizer and epoch exactly. As cryoDRGN does, the final epoch is then analysed with `analyze`'s
//! defaults (`--no-analysis` skips it).
//!
//! Example usage:
//!   drgnfly train-vae particles.mrcs --poses pose.pkl --ctf ctf.pkl --zdim 8 -n 25 -o out/

use std::time::Instant;

use anyhow::{bail, Result};
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_nn::config::{ModelArgs, ModelKind, RunConfig};
use drgnfly_nn::data::Dataset;
use drgnfly_nn::train::{
    fit, ordered_rows, BatchPrep, EncoderInput, KlSchedule, PoseTable, Trainer, VaeModel, VaeTrainer,
};
use drgnfly_nn::{DecoderConfig, EncodeMode, EncoderConfig};

use super::compat::UnsupportedVaeFlags;
use super::train_common::{
    check_training_memory, explain_interrupt, run_config, timedelta, CliHooks, DataArgs, DecoderArgs,
    PoseArgs, PoseSgdArgs, RunLog, RunSetup, TrainArgs,
};
use crate::progress::Progress;

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
    pub poses: PoseArgs,
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
    #[command(flatten)]
    pub pose_sgd: PoseSgdArgs,
    /// Do not run `analyze` (default settings) on the final epoch when training ends.
    #[arg(long)]
    pub no_analysis: bool,
    #[command(flatten)]
    pub unsupported: UnsupportedVaeFlags,
}

/// `--encode-mode`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncodeModeArg {
    /// Residual MLP.
    Resid,
    /// Plain MLP.
    Mlp,
    /// cryoDRGN's convolutional encoder (64×64 real-space images): not available.
    #[value(hide = true)]
    Conv,
    /// cryoDRGN-ET's tilt-series encoder: not available.
    #[value(hide = true)]
    Tilt,
}

/// Train.
pub fn run(args: Args) -> Result<()> {
    let t = &args.train;
    args.unsupported.check()?;
    let encode_mode = match args.encode_mode {
        EncodeModeArg::Resid => EncodeMode::Resid,
        EncodeModeArg::Mlp => EncodeMode::Mlp,
        EncodeModeArg::Conv | EncodeModeArg::Tilt => bail!(
            "--encode-mode {}: drgnfly's encoders are resid (cryoDRGN's default) and mlp; choose one of them",
            if args.encode_mode == EncodeModeArg::Conv { "conv" } else { "tilt" }
        ),
    };
    let _lock = t.validate()?;
    if args.zdim == 0 {
        bail!("--zdim 0: a VAE needs a latent dimension of at least 1 (use train-nn for a homogeneous map)");
    }
    let data = args.data.open(&args.poses.poses)?;
    let (n, d) = (data.len(), data.image_size());
    let dims = (args.zdim, args.dec_layers, args.dec_dim);
    let input = encoder_input(args.enc_mask, d)?;
    let RunSetup { norm, prep, dec, precision, seed } =
        RunSetup::new((&args.data, t), &data, input, &args.decoder, dims)?;
    let mut enc = EncoderConfig::new(prep.encoder_dim(), args.zdim);
    enc.layers = args.enc_layers;
    enc.dim = args.enc_dim;
    enc.mode = encode_mode;
    enc.activation = args.decoder.activation.into();
    let beta = args.beta.unwrap_or(drgnfly_nn::BetaSchedule::Constant(1.0 / args.zdim as f64));
    let adam = t.adam();
    let kl = KlSchedule::new(beta, args.beta_control)?;
    let mut trainer = VaeTrainer::new(&enc, &dec, seed, adam, kl, prep)?;
    check_training_memory(trainer.model().store().num_params(), &dec, t.batch_size.min(n), d)?;
    // cryoDRGN train_vae refines after 1 epoch on the given poses.
    if let Some(refine) = args.pose_sgd.refinement(&data, 1)? {
        trainer = trainer.with_pose_refinement(refine);
    }

    let model_args = vae_model_args(&enc, &dec, args.enc_mask, d);
    let mut dataset_args = args.data.dataset_args(norm, &args.poses.poses);
    dataset_args.do_pose_sgd = args.pose_sgd.do_pose_sgd;
    let config = run_config(dataset_args, d, model_args, seed);
    let summary = format!(
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters, beta {}, seed {seed}, precision {precision}",
        norm.mean,
        norm.std,
        trainer.model().store().num_params(),
        match args.beta_control {
            Some(g) => format!("{beta} with control γ = {g}"),
            None => format!("{beta}"),
        }
    );
    fit_vae(t, &data, &mut trainer, (&config, &summary, seed), vae_parts, !args.no_analysis)
}

/// What `z.E.pkl` is computed from: the model, the batch preparation and the refined poses, if any.
pub type LatentParts<'a> = (&'a VaeModel, &'a BatchPrep, Option<&'a PoseTable>);

fn vae_parts(t: &VaeTrainer) -> LatentParts<'_> {
    (t.model(), t.prep(), t.pose_table())
}

/// Trains a VAE-based run (train-vae, abinit-het) through the driver: run.log headed by `summary`, `--load`
/// resume, progress bars, `z.E.pkl` at every checkpoint (the images centred with the poses `parts` gives),
/// the elapsed-time line, and `analyze` of the final epoch when `analysis`.
pub fn fit_vae<T: Trainer>(
    t: &TrainArgs,
    data: &Dataset,
    trainer: &mut T,
    meta: (&RunConfig, &str, u64),
    parts: fn(&T) -> LatentParts<'_>,
    analysis: bool,
) -> Result<()> {
    let (outdir, batch_size) = (t.outdir.clone(), t.batch_size);
    let write_z = move |epoch: usize, trainer: &T| {
        let (model, prep, poses) = parts(trainer);
        write_latents(model, (prep, poses), data, batch_size, &outdir.join(format!("z.{epoch}.pkl")))
    };
    fit_with_latents(t, data, trainer, meta, write_z, analysis)
}

/// Trains a model with latents (run.log, resume, progress, checkpoints with `write_z(epoch, trainer)`
/// writing z.E.pkl beside them), then runs `analyze` on the final epoch if `analysis`.
pub fn fit_with_latents<'d, T: Trainer>(
    t: &TrainArgs,
    data: &'d Dataset,
    trainer: &mut T,
    (config, summary, seed): (&RunConfig, &str, u64),
    write_z: impl FnMut(usize, &T) -> Result<()> + 'd,
    analysis: bool,
) -> Result<()> {
    let mut log = RunLog::start(&t.outdir, config, summary)?;
    let start = t.resume_if_asked(trainer, &mut log)?;
    if start >= t.num_epochs {
        log.line(&format!("# nothing to do: the checkpoint already has {start} of {} epochs", t.num_epochs))?;
        return Ok(());
    }
    let started = Instant::now();
    let schedule = t.schedule(seed);
    let hooks = CliHooks::new(&mut log, data, &schedule, write_z);
    fit(data, &schedule, trainer, start, &mut { hooks }).map_err(|e| explain_interrupt(e, &t.outdir))?;
    log.line(&format!("# finished {} epochs in {}", t.num_epochs - start, timedelta(started.elapsed())))?;
    if analysis && crate::cluster::is_root() {
        analyze_final_epoch(&t.outdir, t.num_epochs);
    }
    Ok(())
}

/// The encoder's input from `--enc-mask`: the Fourier disc of that radius (default D/2), or the whole
/// lattice for -1.
pub fn encoder_input(enc_mask: Option<i64>, d: usize) -> Result<EncoderInput> {
    Ok(match enc_mask {
        None => EncoderInput::Disc(d / 2),
        Some(-1) => EncoderInput::FullLattice,
        Some(r) if r >= 1 => EncoderInput::Disc(r as usize),
        Some(r) => bail!("--enc-mask {r}: give a radius between 1 and D/2 = {}, or -1", d / 2),
    })
}

/// config.yaml's `model_args` of a VAE (cryoDRGN's keys).
pub fn vae_model_args(
    enc: &EncoderConfig,
    dec: &DecoderConfig,
    enc_mask: Option<i64>,
    d: usize,
) -> ModelArgs {
    ModelArgs {
        kind: Some(ModelKind::Vae),
        qlayers: Some(enc.layers),
        qdim: Some(enc.dim),
        players: Some(dec.layers),
        pdim: Some(dec.dim),
        zdim: Some(enc.zdim),
        encode_mode: Some(enc.mode),
        enc_mask: Some(enc_mask.unwrap_or((d / 2) as i64)),
        pe_type: Some(dec.pe_type),
        feat_sigma: Some(dec.feat_sigma),
        pe_dim: dec.pe_dim,
        domain: Some(dec.domain),
        activation: Some(dec.activation),
        ..Default::default()
    }
}

/// `drgnfly analyze OUTDIR EPOCH` with its defaults. Training has succeeded by then, so a failed analysis
/// is a warning with the command to rerun, not an error that would hide the trained model.
pub fn analyze_final_epoch(outdir: &std::path::Path, epoch: usize) {
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

/// z_mu and z_logvar of every particle in dataset order (z = μ, no noise), written as z.E.pkl; the images
/// are centred with the refined poses when a pose table is given, else the dataset's. On more than one
/// process each encodes its share of every batch, and rank 0 writes.
pub fn write_latents(
    model: &VaeModel,
    (prep, refined): (&BatchPrep, Option<&PoseTable>),
    data: &Dataset,
    batch_size: usize,
    path: &std::path::Path,
) -> Result<()> {
    let zdim = model.model().encoder.zdim();
    let n = data.len();
    let (mut mu, mut logvar) = (Vec::with_capacity(n * zdim), Vec::with_capacity(n * zdim));
    let mut progress = Progress::new("latents", n as u64, "images");
    let comm = crate::cluster::comm();
    ordered_rows(
        data,
        comm.as_ref(),
        batch_size,
        ("encoding", 2 * zdim),
        |positions, images| {
            let poses = refined.map_or_else(|| data.batch_poses(positions), |t| t.batch_poses(positions));
            let (m, l) =
                model.encode(&prep.prepare(images, &poses, data.batch_ctf(positions).as_deref())?)?;
            Ok(m.chunks(zdim).zip(l.chunks(zdim)).flat_map(|(m, l)| m.iter().chain(l).copied()).collect())
        },
        |_, rows| {
            for row in rows.chunks(2 * zdim) {
                mu.extend_from_slice(&row[..zdim]);
                logvar.extend_from_slice(&row[zdim..]);
            }
            Ok(())
        },
        |b| progress.inc(b as u64),
    )?;
    progress.finish();
    if crate::cluster::is_root() {
        drgnfly_io::pickle::write_latents(path, &mu, zdim, Some(&logvar))?;
    }
    Ok(())
}
