//! `abinit-amortized`: ab initio with amortized inference. A CNN encoder predicts every image's rotation and
//! shift (cryoAI), and with `--zdim N` its conformation too (HetACUMN); the coordinate decoder renders the
//! slice there, and both train on the image MSE with the symmetrized loss, alongside HetACUMN's conditional
//! pose-prediction task (`drgnfly_nn::train::AmortizedTrainer`, whose docs give the method). No pose search,
//! no per-particle state: time and memory per image do not grow with the dataset. HetACUMN's parts each have
//! a switch for ablations: `--lambda-cpp 0` (CPP), `--no-pds`, `--no-asn`, `--fch-epochs 0`.
//!
//! **Experimental.** The poses converge slowly: on the hinge phantom (2000 noise-free images, D = 32) the
//! median error falls from chance to 76° in 40 epochs and 8.7° in 120 (BENCHMARKS.md, "abinit-amortized"),
//! where a pose search needs minutes; noisy data and the heterogeneous runs are not yet shown to converge.
//! Once trained, inference is fast (about 1800 images/s at D = 64 on two threads).
//!
//! Per checkpoint: `weights.E.safetensors` (encoder and decoder), `reconstruct.E.mrc` (homogeneous) or
//! `z.E.pkl` (heterogeneous), and `pose.E.pkl` (each training particle's pose, and latent, as the encoder
//! predicted them when the particle was last seen). When training ends, one streaming pass of the final
//! encoder over every particle of the stack (those left out by `--ind` too) writes `pose.pkl` (and `z.pkl`),
//! then a heterogeneous run is analysed; `drgnfly eval-images` does the same pass for any checkpoint and stack.
//!
//! Example usage:
//!   drgnfly abinit-amortized particles.mrcs --ctf ctf.pkl -o out/ -n 50

use anyhow::{bail, Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_nn::cnn::CnnLayout;
use drgnfly_nn::config::{ModelArgs, ModelKind};
use drgnfly_nn::data::DatasetFiles;
use drgnfly_nn::train::{AmortizedConfig, AmortizedTrainer, CppConfig, EncoderInput, HetConfig};
use drgnfly_nn::DataNorm;

use super::abinit::prefixed_decoder_model_args;
use super::eval_images::infer_all;
use super::train_common::{
    check_training_memory, fit_decoder, map_apix, run_config, write_pose_list, DataArgs, DecoderArgs,
    MapOutput, RunSetup, TrainArgs,
};
use super::train_vae::{analyze_final_epoch, fit_with_latents};

/// Reconstruct maps and the particles' poses (and conformations) with a predicting encoder (cryoAI,
/// HetACUMN); experimental: the poses converge slowly.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly abinit-amortized particles.mrcs --ctf ctf.pkl -o out/ -n 50\n  \
                  drgnfly abinit-amortized particles.mrcs --ctf ctf.pkl -o out/ --encoder resnet18\n  \
                  drgnfly abinit-amortized particles.mrcs --ctf ctf.pkl -o out/ --zdim 8 -n 100"
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
    /// Weight λ_t of the L1 penalty ½‖t̂‖₁ on the predicted shifts (pixels; HetACUMN), which keeps the map
    /// centred.
    #[arg(long, default_value_t = 1e-3)]
    pub lambda_t: f64,
    /// Pose-prediction noise at the data's variance, fixed, instead of HetACUMN's adaptive noise (ASN: the
    /// data's SNR relative to each batch of projections of the current maps); an ablation.
    #[arg(long)]
    pub no_asn: bool,
    /// Epochs over which the pose-prediction task's noise rises from 1% of its variance to all of it (the
    /// SNR from 100× the data's down to it), so that the encoder first learns poses from nearly clean
    /// projections; 0: at full noise from the start; a resumed run keeps its own [default: half of
    /// --num-epochs].
    #[arg(long, value_name = "EPOCHS")]
    pub cpp_noise_warmup: Option<f64>,
    /// Latent width: 0 reconstructs one map (cryoAI); N > 0 also learns each image's conformation
    /// (HetACUMN), writing z.E.pkl, z.pkl and an analysis.
    #[arg(long, default_value_t = 0)]
    pub zdim: usize,
    /// Weight λ_z of the KL term of the latents (HetACUMN: 1e-4).
    #[arg(long, default_value_t = 1e-4)]
    pub lambda_z: f64,
    /// Epochs with the conformation head frozen and latents from the prior, so that poses settle first
    /// (HetACUMN's FCH); 0 switches it off.
    #[arg(long, default_value_t = 5)]
    pub fch_epochs: usize,
    /// Draw the pose-prediction maps' latents from the prior instead of the posteriors of the batch's images
    /// (HetACUMN's PDS); an ablation.
    #[arg(long)]
    pub no_pds: bool,
    /// Maps decoded for the pose-prediction task at each refresh, each at its own latent (heterogeneous runs).
    #[arg(long, default_value_t = 4)]
    pub cpp_conformations: usize,
    /// Skip the analysis of the final epoch (heterogeneous runs).
    #[arg(long)]
    pub no_analysis: bool,
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
    let zdim = args.zdim;
    let RunSetup { norm, prep, dec, precision, seed } = RunSetup::new(
        (&args.data, t),
        &data,
        EncoderInput::None,
        &args.decoder,
        (zdim, args.layers, args.dim),
    )?;
    let layout = match args.encoder {
        EncoderLayout::Small => CnnLayout::Small,
        EncoderLayout::Resnet18 => CnnLayout::Resnet18,
    };
    let enc = layout.config(d, zdim);
    let warmup_epochs = args.cpp_noise_warmup.unwrap_or(t.num_epochs as f64 / 2.0);
    if !(warmup_epochs.is_finite() && warmup_epochs >= 0.0) {
        bail!(
            "--cpp-noise-warmup {warmup_epochs}: give a number of epochs, 0 or more (fractions are allowed)"
        );
    }
    let cfg = AmortizedConfig {
        symmetrized: !args.no_symmetrized_loss,
        lambda_t: args.lambda_t.max(0.0),
        cpp: CppConfig {
            weight: args.lambda_cpp.max(0.0),
            refresh_images: args.cpp_refresh.max(1),
            max_shift_px: args.cpp_max_shift.unwrap_or(d as f32 / 16.0).max(0.0),
            snr: args.cpp_snr,
            adaptive_noise: !args.no_asn,
            noise_warmup_images: (warmup_epochs * n as f64).round() as u64,
        },
        het: if zdim == 0 {
            HetConfig::HOMOGENEOUS
        } else {
            HetConfig {
                zdim,
                lambda_z: args.lambda_z.max(0.0),
                fch_epochs: args.fch_epochs,
                pds: !args.no_pds,
                conformations: args.cpp_conformations.max(1),
            }
        },
    };
    let mut trainer = AmortizedTrainer::new((&enc, &dec), seed, t.adam(), prep, n, cfg)?;
    if let Some(path) = &args.cpp_reference {
        if zdim > 0 {
            bail!("--cpp-reference is one map: it is for homogeneous runs (--zdim 0)");
        }
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
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters ({:?} CNN encoder), zdim {zdim}, seed {seed}, \
         precision {precision}; amortized ab initio ({}), {} loss, λ_t {}, pose prediction {:?}{}",
        norm.mean,
        norm.std,
        trainer.store().num_params(),
        args.encoder,
        if zdim > 0 { "HetACUMN" } else { "cryoAI" },
        if cfg.symmetrized { "symmetrized" } else { "plain" },
        cfg.lambda_t,
        cfg.cpp,
        if zdim > 0 { format!(", {:?}", cfg.het) } else { String::new() },
    );
    if zdim == 0 {
        let map = MapOutput {
            norm: DataNorm { mean: norm.mean, std: norm.std },
            d,
            apix: map_apix(&data, &args.data.particles),
        };
        fit_decoder(t, &data, &mut trainer, (&config, &summary, seed), map, AmortizedTrainer::decoder)?;
    } else {
        let outdir = t.outdir.clone();
        let write_z = move |epoch: usize, trainer: &AmortizedTrainer| -> Result<()> {
            let (mu, logvar) = trainer.latents();
            let path = outdir.join(format!("z.{epoch}.pkl"));
            drgnfly_io::pickle::write_latents(&path, mu, trainer.zdim(), Some(logvar))?;
            Ok(())
        };
        // The analysis of the final epoch runs after the inference pass below.
        fit_with_latents(t, &data, &mut trainer, (&config, &summary, seed), write_z, false)?;
    }
    // Inference on the whole stack: the particles --ind left out get poses (and latents) too.
    let all =
        drgnfly_nn::data::Dataset::open(&DatasetFiles { ind: None, ctf: None, ..args.data.files(&[]) })?;
    let inferred = infer_all(&all, t.batch_size, |raw| trainer.infer(raw))?;
    let path = t.outdir.join("pose.pkl");
    write_pose_list(&path, &inferred.poses, d)?;
    if zdim > 0 {
        let z_path = t.outdir.join("z.pkl");
        drgnfly_io::pickle::write_latents(&z_path, &inferred.mu, zdim, Some(&inferred.logvar))?;
        say!(
            "inference: the final encoder's poses and latents of all {} particles → {}, {}",
            inferred.poses.len(),
            path.display(),
            z_path.display()
        );
        if !args.no_analysis {
            analyze_final_epoch(&t.outdir, t.num_epochs);
        }
    } else {
        say!(
            "inference: the final encoder's poses of all {} particles → {}",
            inferred.poses.len(),
            path.display()
        );
    }
    Ok(())
}
