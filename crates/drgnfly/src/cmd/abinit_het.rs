//! `abinit-het`: heterogeneous ab initio reconstruction without poses (cryoDRGN2's `abinit_het`, now
//! `abinit_het_old` in cryoDRGN): a VAE trained on poses it finds itself (`drgnfly_nn::train::AbinitHetTrainer`
//! in the library driver).
//!
//! Pretraining of the decoder on `--pretrain` images at random poses with latents from the prior; in epochs
//! 1, 1 + `--ps-freq`, … each batch is encoded and its poses searched before the VAE trains on them. The
//! search compares each image to the decoder's map at the conformation nearest its latent: the k-means
//! centres (`--search-conformations`) of recently encoded latents, decoded again every `--search-refresh`
//! images. Memory is those maps plus the search's chunk, whatever the batch size (cryoDRGN expands its
//! grid per image: ~40 GB of GPU memory at D = 128). Per checkpoint: `weights.E.safetensors` (model,
//! optimizer, pose table), `z.E.pkl` (at the poses found) and `pose.E.pkl`; the output directory works
//! with `analyze`, `eval-vol` and the rest as a `train-vae` one does.
//!
//! Example usage:
//!   drgnfly abinit-het particles.mrcs --ctf ctf.pkl --zdim 8 -o out/ -n 30

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_nn::train::{AbinitHetTrainer, KlSchedule};
use drgnfly_nn::EncoderConfig;

use super::abinit_homo::{ConformationSearchArgs, SearchArgs};
use super::train_common::{check_training_memory, run_config, DataArgs, DecoderArgs, RunSetup, TrainArgs};
use super::train_vae::{encoder_input, fit_vae, vae_model_args, LatentParts};

/// Reconstruct a heterogeneous ensemble, its latent space and the particles' poses from the images alone.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly abinit-het particles.mrcs --ctf ctf.pkl --zdim 8 -o out/\n  \
                  drgnfly abinit-het particles.star --ctf ctf.pkl --zdim 8 -n 30 -o out/ --load latest")]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Latent dimension.
    #[arg(long, required = true)]
    pub zdim: usize,
    /// KLD weight β (default 1/zdim).
    #[arg(long)]
    pub beta: Option<f64>,
    /// Hold the KLD near β instead of weighting it: loss = gen + γ·(β − KLD)²/|mask|.
    #[arg(long, value_name = "γ")]
    pub beta_control: Option<f64>,
    /// Encoder hidden layers.
    #[arg(long, default_value_t = 3)]
    pub enc_layers: usize,
    /// Encoder width.
    #[arg(long, default_value_t = 256)]
    pub enc_dim: usize,
    /// Encoder input: the Fourier disc of this radius in pixels (default D/2); -1 for the whole image.
    #[arg(long, allow_negative_numbers = true)]
    pub enc_mask: Option<i64>,
    /// Decoder hidden layers.
    #[arg(long, default_value_t = 3)]
    pub dec_layers: usize,
    /// Decoder width.
    #[arg(long, default_value_t = 256)]
    pub dec_dim: usize,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    #[command(flatten)]
    pub search: SearchArgs,
    #[command(flatten)]
    pub conformations: ConformationSearchArgs,
    /// Do not run `analyze` (default settings) on the final epoch when training ends.
    #[arg(long)]
    pub no_analysis: bool,
}

/// Reconstruct.
pub fn run(args: Args) -> Result<()> {
    let t = &args.train;
    let _lock = t.validate()?;
    if args.zdim == 0 {
        bail!("--zdim 0: heterogeneous ab initio needs a latent dimension of at least 1 (abinit-homo reconstructs one map)");
    }
    let data = args.data.open(&[])?;
    let (n, d) = (data.len(), data.image_size());
    let dims = (args.zdim, args.dec_layers, args.dec_dim);
    let input = encoder_input(args.enc_mask, d)?;
    let RunSetup { norm, prep, dec, precision, seed } =
        RunSetup::new((&args.data, t), &data, input, &args.decoder, dims)?;
    let mut enc = EncoderConfig::new(prep.encoder_dim(), args.zdim);
    (enc.layers, enc.dim, enc.activation) = (args.enc_layers, args.enc_dim, args.decoder.activation.into());
    let beta = args.beta.unwrap_or(1.0 / args.zdim as f64);
    let kl = KlSchedule::new(drgnfly_nn::BetaSchedule::Constant(beta), args.beta_control)?;
    let adam = t.adam();
    let k = args.conformations.search_conformations;
    let mut schedule = args.search.schedule(0);
    schedule.every_map_from = args.conformations.search_all_conformations;
    schedule.search.mixed_precision = dec.mixed_precision;
    let memory = args.search.grid.fit_search_memory(&mut schedule, d, k)?;
    let describe = format!("{}, {memory}", args.search.describe(&schedule));
    let mut trainer = AbinitHetTrainer::new(&enc, &dec, seed, (adam, kl), prep, n, schedule, k)?;
    check_training_memory(trainer.model().store().num_params(), &dec, t.batch_size.min(n), d)?;

    let config =
        run_config(args.data.dataset_args(norm, &[]), d, vae_model_args(&enc, &dec, args.enc_mask, d), seed);
    let summary = format!(
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters, beta {beta}, seed {seed}, precision {precision}; \
         heterogeneous ab initio ({describe})",
        norm.mean,
        norm.std,
        trainer.model().store().num_params(),
    );
    fit_vae(t, &data, &mut trainer, (&config, &summary, seed), het_parts, !args.no_analysis)
}

fn het_parts(t: &AbinitHetTrainer) -> LatentParts<'_> {
    (t.model(), t.prep(), Some(t.poses()))
}
