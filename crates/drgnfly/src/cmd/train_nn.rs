//! `train-nn`: homogeneous reconstruction with known poses (cryoDRGN `train_nn`): one coordinate decoder
//! fitted to all particles, no latent.
//!
//! Same driver, data pipeline and checkpoints as `train-vae`; per checkpoint it writes
//! `weights.E.safetensors` and the map `reconstruct.E.mrc` (pixel size from ctf.pkl, else the stack header,
//! else 1 Å with a warning; cryoDRGN always writes 1). Log line per epoch: `# =====> Epoch: E Average loss = …; Finished in …`.
//!
//! Example usage:
//!   drgnfly train-nn particles.mrcs --poses pose.pkl --ctf ctf.pkl -n 20 -o out/

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use drgnfly_nn::config::{LatticeArgs, ModelArgs, ModelKind, RunConfig};
use drgnfly_nn::train::{fit, resume, BatchPrep, EncoderInput, HomoTrainer};
use drgnfly_nn::volume::{VolumeDecoder, VolumeRequest};
use drgnfly_nn::{AdamConfig, DataNorm};

use super::train_common::{
    command_line, timedelta, CliHooks, DataArgs, DecoderArgs, PoseArgs, RunLog, TrainArgs,
};

/// Train a homogeneous decoder on particles with known poses.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly train-nn particles.mrcs --poses pose.pkl --ctf ctf.pkl -o out/")]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub poses: PoseArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Decoder hidden layers.
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Decoder width.
    #[arg(long, default_value_t = 1024)]
    pub dim: usize,
    #[command(flatten)]
    pub decoder: DecoderArgs,
}

/// Train.
pub fn run(args: Args) -> Result<()> {
    let t = &args.train;
    t.validate()?;
    let data = args.data.open(&args.poses.poses)?;
    let (n, d) = (data.len(), data.image_size());
    let norm = args.data.normalization(&data)?;
    let device = t.device.device()?;
    let prep = BatchPrep::new(d, &args.data.preprocess()?, norm, EncoderInput::None, &device)?;
    let mut dec = args.decoder.config(d + 1, 0, args.layers, args.dim)?;
    let precision = t.precision(&mut dec);
    let seed = t.resolve_seed()?;
    let adam = AdamConfig { lr: t.lr, weight_decay: t.wd, ..Default::default() };
    let mut trainer = HomoTrainer::new(&dec, seed, adam, prep)?;
    let apix = data.apix().unwrap_or_else(|| {
        tracing::warn!(
            "{}: no pixel size in ctf.pkl or the stack header; the maps are written at 1 Å/px (set it later \
             with `drgnfly add-psize`)",
            args.data.particles.display()
        );
        1.0
    });

    let config = RunConfig {
        dataset_args: args.data.dataset_args(norm, &args.poses.poses),
        lattice_args: LatticeArgs { d: d + 1, extent: 0.5, ignore_dc: true },
        model_args: ModelArgs {
            kind: Some(ModelKind::Homogeneous),
            qlayers: Some(dec.layers),
            qdim: Some(dec.dim),
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
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters, seed {seed}, precision {precision}",
        norm.mean,
        norm.std,
        trainer.store().num_params()
    );
    let mut log = RunLog::start(&t.outdir, &config, &summary)?;
    let mut start = 0usize;
    if let Some(ckpt) = t.checkpoint_to_load()? {
        start = resume(&mut trainer, &ckpt).with_context(|| format!("--load {}", ckpt.display()))?;
        log.line(&format!("# resuming from {} after epoch {start}", ckpt.display()))?;
    }
    let started = Instant::now();
    let schedule = t.schedule(seed);
    let outdir = t.outdir.clone();
    let data_norm = DataNorm { mean: norm.mean, std: norm.std };
    let hooks = CliHooks::new(&mut log, &data, &schedule, |epoch, trainer: &HomoTrainer| {
        let model = VolumeDecoder::new(trainer.decoder().clone(), data_norm, d + 1, apix);
        model
            .volume(&[], &VolumeRequest::default())?
            .write(&outdir.join(format!("reconstruct.{epoch}.mrc")))?;
        Ok(())
    });
    fit(&data, &schedule, &mut trainer, start, &mut { hooks })?;
    log.line(&format!(
        "# finished {} epochs in {}",
        t.num_epochs.saturating_sub(start),
        timedelta(started.elapsed())
    ))?;
    Ok(())
}
