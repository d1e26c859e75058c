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
//! training particle's pose as the encoder predicted it when the particle was last seen). When training
//! ends, one streaming pass of the final encoder over every particle of the stack (those left out by `--ind`
//! too) writes `pose.pkl`; `drgnfly eval-images` does the same for any checkpoint and any stack.
//!
//! Example usage:
//!   drgnfly abinit-amortized particles.mrcs --ctf ctf.pkl -o out/ -n 50

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_nn::cnn::CnnLayout;
use drgnfly_nn::config::{ModelArgs, ModelKind};
use drgnfly_nn::data::DatasetFiles;
use drgnfly_nn::train::{AmortizedTrainer, CppConfig, EncoderInput};
use drgnfly_nn::DataNorm;

use super::abinit::prefixed_decoder_model_args;
use super::eval_images::infer_poses;
use super::train_common::{
    check_training_memory, fit_decoder, map_apix, run_config, write_pose_list, DataArgs, DecoderArgs,
    MapOutput, RunSetup, TrainArgs,
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
    /// Weight λ_p of the conditional pose-prediction task (HetACUMN): the encoder also learns the poses of
    /// projections of the current map at random poses; 0 switches it off.
    #[arg(long, default_value_t = 0.1)]
    pub lambda_cpp: f64,
    /// Images between decodings of the map the pose-prediction task projects.
    #[arg(long, default_value_t = 1024)]
    pub cpp_refresh: u64,
    /// Largest shift (pixels) of the pose-prediction task's projections [default: D/16].
    #[arg(long)]
    pub cpp_max_shift: Option<f32>,
    /// SNR of the pose-prediction task's projections [default: estimated from the images].
    #[arg(long)]
    pub cpp_snr: Option<f64>,
    /// Project this map (MRC, the particles' box) for the pose-prediction task instead of the current
    /// reconstruction: tests the encoder on its own, or starts from a known reference.
    #[arg(long, value_name = "MAP")]
    pub cpp_reference: Option<std::path::PathBuf>,
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
    let RunSetup { norm, prep, dec, precision, seed } =
        RunSetup::new((&args.data, t), &data, EncoderInput::None, &args.decoder, (0, args.layers, args.dim))?;
    let layout = match args.encoder {
        EncoderLayout::Small => CnnLayout::Small,
        EncoderLayout::Resnet18 => CnnLayout::Resnet18,
    };
    let enc = layout.config(d, 0);
    let adam = t.adam();
    let symmetrized = !args.no_symmetrized_loss;
    let cpp = CppConfig {
        weight: args.lambda_cpp.max(0.0),
        refresh_images: args.cpp_refresh.max(1),
        max_shift_px: args.cpp_max_shift.unwrap_or(d as f32 / 16.0).max(0.0),
        snr: args.cpp_snr,
    };
    let mut trainer = AmortizedTrainer::new((&enc, &dec), seed, adam, prep, n, (symmetrized, cpp))?;
    if let Some(path) = &args.cpp_reference {
        let map = drgnfly_io::mrc::read_volume(path)
            .with_context(|| format!("reading --cpp-reference {}", path.display()))?;
        if map.shape != [d, d, d] {
            bail!(
                "--cpp-reference {}: a {:?} map for {d}×{d} particles; give a map of the particles' box",
                path.display(),
                map.shape
            );
        }
        trainer = trainer.with_cpp_reference(&map.data)?;
    }
    check_training_memory(trainer.store().num_params(), &dec, t.batch_size.min(n), d)?;
    let model_args =
        ModelArgs { cnn_layout: Some(layout), ..prefixed_decoder_model_args(ModelKind::Amortized, &dec) };
    let config = run_config(args.data.dataset_args(norm, &[]), d, model_args, seed);
    let summary = format!(
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters ({:?} CNN encoder), seed {seed}, precision \
         {precision}; amortized ab initio (cryoAI), {} loss, pose prediction {:?}",
        norm.mean,
        norm.std,
        trainer.store().num_params(),
        args.encoder,
        if symmetrized { "symmetrized" } else { "plain" },
        cpp,
    );
    let map = MapOutput {
        norm: DataNorm { mean: norm.mean, std: norm.std },
        d,
        apix: map_apix(&data, &args.data.particles),
    };
    fit_decoder(t, &data, &mut trainer, (&config, &summary, seed), map, AmortizedTrainer::decoder)?;
    // Inference on the whole stack: the particles --ind left out get poses too.
    let all =
        drgnfly_nn::data::Dataset::open(&DatasetFiles { ind: None, ctf: None, ..args.data.files(&[]) })?;
    let poses = infer_poses(&all, t.batch_size, |raw| trainer.infer_poses(raw))?;
    let path = t.outdir.join("pose.pkl");
    write_pose_list(&path, &poses, d)?;
    say!("inference: the final encoder's poses of all {} particles → {}", poses.len(), path.display());
    Ok(())
}
