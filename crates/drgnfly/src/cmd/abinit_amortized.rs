//! `abinit-amortized`: homogeneous ab initio with amortized pose inference (cryoAI): a CNN encoder predicts
//! every image's rotation and shift, the coordinate decoder renders the slice there, and both train on the
//! image MSE with the symmetrized loss (`drgnfly_nn::train::AmortizedTrainer`). No pose search, no
//! per-particle state: time and memory per image do not grow with the dataset.
//!
//! **Experimental.** On the hinge phantom (4000 noise-free images, 15 epochs) the loss falls but the predicted
//! poses stay at chance (~125°) and crowd into part of the sphere: the encoder needs what cryoAI and HetACUMN
//! add on top (the conditional pose-prediction task of HetACUMN, issue 13). The command is here so that work
//! has its driver, checkpoints and outputs.
//!
//! Per checkpoint: `weights.E.safetensors` (encoder and decoder), `reconstruct.E.mrc`, and `pose.E.pkl` (each
//! particle's pose as the encoder predicted it when the particle was last seen).
//!
//! Example usage:
//!   drgnfly abinit-amortized particles.mrcs --ctf ctf.pkl -o out/ -n 50

use anyhow::Result;
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_nn::config::ModelKind;
use drgnfly_nn::train::{AmortizedTrainer, BatchPrep, EncoderInput};
use drgnfly_nn::{AdamConfig, CnnConfig, DataNorm};

use super::abinit::prefixed_decoder_model_args;
use super::train_common::{
    check_training_memory, fit_decoder, map_apix, run_config, DataArgs, DecoderArgs, MapOutput, TrainArgs,
};

/// Reconstruct a map and the particles' poses with a pose-predicting encoder (cryoAI); experimental: the
/// poses do not converge yet.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly abinit-amortized particles.mrcs --ctf ctf.pkl -o out/ -n 50\n  \
                  drgnfly abinit-amortized particles.mrcs --ctf ctf.pkl -o out/ --encoder resnet18"
)]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// The CNN encoder's layout.
    #[arg(long, value_enum, default_value_t = EncoderLayout::Small)]
    pub encoder: EncoderLayout,
    /// Plain MSE instead of cryoAI's symmetrized loss (min over the image and its half-turned twin).
    #[arg(long)]
    pub no_symmetrized_loss: bool,
    /// Decoder hidden layers.
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Decoder width.
    #[arg(long, default_value_t = 256)]
    pub dim: usize,
    #[command(flatten)]
    pub decoder: DecoderArgs,
}

/// `--encoder`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderLayout {
    /// Four stages of one residual block, 16 → 128 channels (~0.4 M parameters).
    Small,
    /// ResNet-18's trunk, 64 → 512 channels (~11 M parameters; HetACUMN).
    Resnet18,
}

/// Reconstruct.
pub fn run(args: Args) -> Result<()> {
    let t = &args.train;
    let _lock = t.validate()?;
    let data = args.data.open(&[])?;
    let (n, d) = (data.len(), data.image_size());
    let norm = args.data.normalization(&data)?;
    let device = t.device.device()?;
    let prep = BatchPrep::new(d, &args.data.preprocess()?, norm, EncoderInput::None, &device)?;
    let mut dec = args.decoder.config(d + 1, 0, args.layers, args.dim)?;
    let precision = t.precision(&mut dec);
    let seed = t.resolve_seed()?;
    let enc = match args.encoder {
        EncoderLayout::Small => CnnConfig::small(d, 0),
        EncoderLayout::Resnet18 => CnnConfig::resnet18(d, 0),
    };
    let adam = AdamConfig { lr: t.lr, weight_decay: t.wd, ..Default::default() };
    let symmetrized = !args.no_symmetrized_loss;
    let mut trainer = AmortizedTrainer::new((&enc, &dec), seed, adam, prep, n, symmetrized)?;
    check_training_memory(trainer.store().num_params(), &dec, t.batch_size.min(n), d)?;
    let model_args = prefixed_decoder_model_args(ModelKind::Amortized, &dec);
    let config = run_config(args.data.dataset_args(norm, &[]), d, model_args, seed);
    let summary = format!(
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters ({:?} CNN encoder), seed {seed}, precision \
         {precision}; amortized ab initio (cryoAI), {} loss",
        norm.mean,
        norm.std,
        trainer.store().num_params(),
        args.encoder,
        if symmetrized { "symmetrized" } else { "plain" },
    );
    let map = MapOutput {
        norm: DataNorm { mean: norm.mean, std: norm.std },
        d,
        apix: map_apix(&data, &args.data.particles),
    };
    fit_decoder(t, &data, &mut trainer, (&config, &summary, seed), map, AmortizedTrainer::decoder)
}
