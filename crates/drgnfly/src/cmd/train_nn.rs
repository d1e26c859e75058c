//! `train-nn`: homogeneous reconstruction with known poses (cryoDRGN `train_nn`): one coordinate decoder
//! fitted to all particles, no latent.
//!
//! Same data pipeline and checkpoints as `train-vae`; per checkpoint it writes `weights.E.safetensors` and
//! the map `reconstruct.E.mrc` (pixel size from ctf.pkl, else the stack header, else 1 Å; cryoDRGN writes
//! 1). Log line per epoch: `# =====> Epoch: E Average loss = …; Finished in …`.
//!
//! Example usage:
//!   drgnfly train-nn particles.mrcs --poses pose.pkl --ctf ctf.pkl -n 20 -o out/

use std::time::Instant;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use drgnfly_io::source::StreamOptions;
use drgnfly_nn::train::{BatchPrep, EncoderInput, HomoTrainer};
use drgnfly_nn::{AdamConfig, DataNorm};

use super::train_common::{command_line, timedelta, DataArgs, DecoderArgs, RunLog, TrainArgs, TrainData};
use crate::progress::Progress;
use crate::run_config::{LatticeArgs, ModelArgs, RunConfig};
use crate::volumes::{VolumeDecoder, VolumeRequest};

/// Train a homogeneous decoder on particles with known poses.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly train-nn particles.mrcs --poses pose.pkl --ctf ctf.pkl -o out/")]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
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
    let data = TrainData::open(
        &args.data.particles,
        &args.data.poses,
        args.data.ctf.as_deref(),
        args.data.ind.as_deref(),
        args.data.datadir.as_deref(),
    )?;
    let (n, d) = (data.len(), data.image_size());
    let norm = data.normalization(args.data.norm.as_deref())?;
    let device = t.device.device()?;
    let prep = BatchPrep::new(d, &args.data.preprocess()?, norm, EncoderInput::None, &device)?;
    let mut dec = args.decoder.config(d + 1, 0, args.layers, args.dim)?;
    let precision = t.precision(&mut dec);
    let seed = t.resolve_seed();
    let adam = AdamConfig { lr: t.lr, weight_decay: t.wd, ..Default::default() };
    let mut trainer = HomoTrainer::new(&dec, seed, adam, &device)?;
    let apix = data.ctf_apix.or_else(|| data.source.header_apix()).unwrap_or(1.0);

    let config = RunConfig {
        dataset_args: args.data.dataset_args(norm),
        lattice_args: LatticeArgs { d: d + 1, extent: 0.5, ignore_dc: true },
        model_args: ModelArgs {
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
        start = trainer.load(&ckpt).with_context(|| format!("--load {}", ckpt.display()))? as usize;
        log.line(&format!("# resuming from {} after epoch {start}", ckpt.display()))?;
    }
    let started = Instant::now();
    for epoch in start + 1..=t.num_epochs {
        let t0 = Instant::now();
        let stream =
            data.source.stream(&StreamOptions::shuffled(t.batch_size, d, seed.wrapping_add(epoch as u64)));
        let mut progress = Progress::new(&format!("epoch {epoch}/{}", t.num_epochs), n as u64, "images");
        let mut total = 0f64;
        for (bi, batch) in stream.enumerate() {
            let batch = batch?;
            let context = || data.batch_context(&format!("epoch {epoch}"), bi + 1, &batch.positions);
            let poses = data.batch_poses(&batch.positions);
            let ctf = data.batch_ctf(&batch.positions);
            let prepared = prep.prepare(&batch.images, &poses, ctf.as_deref()).with_context(context)?;
            let loss = trainer.train_step(&prepared).with_context(context)?;
            total += loss as f64 * batch.positions.len() as f64;
            progress.inc(batch.positions.len() as u64);
        }
        progress.finish();
        log.line(&format!(
            "# =====> Epoch: {epoch} Average loss = {:.6}; Finished in {}",
            total / n as f64,
            timedelta(t0.elapsed())
        ))?;
        if t.is_checkpoint(epoch) {
            trainer.save(&t.outdir.join(format!("weights.{epoch}.safetensors")), epoch as u64)?;
            let data_norm = DataNorm { mean: norm.mean, std: norm.std };
            let model = VolumeDecoder::new(trainer.decoder().clone(), data_norm, d + 1, apix);
            model
                .volume(&[], &VolumeRequest::default())?
                .write(&t.outdir.join(format!("reconstruct.{epoch}.mrc")))?;
        }
    }
    log.line(&format!(
        "# finished {} epochs in {}",
        t.num_epochs.saturating_sub(start),
        timedelta(started.elapsed())
    ))?;
    Ok(())
}
