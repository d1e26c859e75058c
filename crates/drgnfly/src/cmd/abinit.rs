//! `abinit`: ab initio reconstruction as cryoDRGN-AI (`cryodrgn abinit`): a few epochs of pose search,
//! then gradient descent on a per-particle pose table, a per-particle conformation table (an autodecoder,
//! `--zdim N`; none with `--zdim 0`) and the decoder (`drgnfly_nn::train::AbinitAiTrainer`).
//!
//! After pretraining on `--n-imgs-pretrain` images at random poses, epochs 1 … `--epochs-pose-search`
//! search every batch's poses (a heterogeneous model: against the map at the k-means centre of the
//! conformation table nearest each particle, as `abinit-het`), then the remaining epochs refine poses and
//! conformations by SGD, with no search. Per checkpoint (`--checkpoint`, 5): `weights.E.safetensors`
//! (decoder, optimizer, both tables), `pose.E.pkl`, and `z.E.pkl` (the table's means; cryoDRGN-AI calls
//! it conf.E.pkl) or `reconstruct.E.mrc` for `--zdim 0`. The directory works with `analyze`, `eval-vol`
//! and the rest.
//!
//! Example usage:
//!   drgnfly abinit particles.mrcs --ctf ctf.pkl --zdim 8 -o out/ -n 30

use anyhow::{bail, Result};
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_nn::cnn::CnnLayout;
use drgnfly_nn::config::{ModelArgs, ModelKind};
use drgnfly_nn::train::{
    AbinitAiTrainer, AiSchedule, EncoderInput, LatentTable, OutputMask, PoseAdamConfig, Stepping,
};
use drgnfly_nn::{DataNorm, DecoderConfig};

use super::abinit_homo::{ConformationSearchArgs, SearchGridArgs};
use super::train_common::{
    check_training_memory, fit_decoder, map_apix, run_config, DataArgs, DecoderArgs, MapOutput, RunSetup,
    TrainArgs,
};
use super::train_vae::fit_with_latents;

/// Reconstruct a map, or an ensemble and its latent space, and the particles' poses from the images
/// alone (cryoDRGN-AI).
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly abinit particles.mrcs --ctf ctf.pkl --zdim 8 -o out/\n  \
                  drgnfly abinit particles.mrcs --ctf ctf.pkl --zdim 0 -o homo/\n  \
                  drgnfly abinit particles.star --ctf ctf.pkl --zdim 8 -n 40 -o out/ --load latest")]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Latent dimension of the conformation table; 0 reconstructs one map.
    #[arg(long, required = true)]
    pub zdim: usize,
    /// Images of pretraining at random poses.
    #[arg(long, default_value_t = 10_000)]
    pub n_imgs_pretrain: usize,
    /// Epochs that search every batch's poses (the rest refine poses by SGD) [default: 3].
    #[arg(long)]
    pub epochs_pose_search: Option<usize>,
    /// Images to search instead: max(2, N/particles + 1) search epochs (cryoDRGN-AI's way to set them).
    #[arg(long, conflicts_with = "epochs_pose_search")]
    pub n_imgs_pose_search: Option<u64>,
    /// SGD epochs after the searches [default: --num-epochs minus the search epochs]; sets the total.
    #[arg(long)]
    pub epochs_sgd: Option<usize>,
    /// Images trained with the conformations held at 0 before the conformation table learns.
    #[arg(long, default_value_t = 0)]
    pub pose_only_phase: u64,
    /// Batch size of the search epochs [default: --batch-size].
    #[arg(long)]
    pub batch_size_hps: Option<usize>,
    /// Batch size of the SGD epochs.
    #[arg(long, default_value_t = 128)]
    pub batch_size_sgd: usize,
    /// Adam step size of the pose table (rotations and shifts).
    #[arg(long, default_value_t = 1e-3)]
    pub lr_pose_table: f64,
    /// Adam step size of the conformation table.
    #[arg(long, default_value_t = 1e-2)]
    pub lr_conf_table: f64,
    /// σ of the conformation table's starting latents.
    #[arg(long, default_value_t = 0.1)]
    pub std_z_init: f64,
    /// A log-variance per particle too: the decoder sees samples of N(z, σ²).
    #[arg(long)]
    pub variational_het: bool,
    /// Weight of the KL term of a variational table (divided by D²).
    #[arg(long, default_value_t = 0.0)]
    pub beta_conf: f64,
    /// Weight of the mean |shift| (pixels) in the SGD epochs.
    #[arg(long, default_value_t = 0.0)]
    pub trans_l1_regularizer: f64,
    /// The loss's mask: a disc of radius --max-freq, or one growing with training.
    #[arg(long, value_enum, default_value_t = MaskArg::Circ)]
    pub output_mask: MaskArg,
    /// Radius of the output mask in pixels [default: D/2].
    #[arg(long)]
    pub max_freq: Option<usize>,
    /// Frequency marching: starting radius. cryoDRGN-AI starts at 1, which leaves its search nothing
    /// to compare on a dataset under ~10⁶ images; drgnfly starts at the search's --l-start.
    #[arg(long)]
    pub l_start_fm: Option<usize>,
    /// Frequency marching: one more pixel of radius every this many images during the searches.
    #[arg(long, default_value_t = 100_000)]
    pub add_one_frequency_every: u64,
    /// Frequency marching: pixels of radius added after each SGD epoch.
    #[arg(long, default_value_t = 10)]
    pub n_frequencies_per_epoch: usize,
    /// Decoder hidden layers.
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Decoder width.
    #[arg(long, default_value_t = 256)]
    pub dim: usize,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    #[command(flatten)]
    pub search: SearchGridArgs,
    /// Predict each image's conformation with a CNN on its real-space image instead of a per-particle table
    /// (cryoDRGN-AI's `--use-conf-encoder`; the small CNN of `abinit-amortized`, stepping with `--lr`). It
    /// amortizes the conformations: new particles can be encoded without training. With
    /// `--variational-het` it predicts a variance too.
    #[arg(long)]
    pub use_conf_encoder: bool,
    #[command(flatten)]
    pub conformations: ConformationSearchArgs,
    /// Do not run `analyze` on the final epoch (heterogeneous runs).
    #[arg(long)]
    pub no_analysis: bool,
}

/// `--output-mask`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum MaskArg {
    /// A disc of radius --max-freq.
    Circ,
    /// Growing from --l-start-fm (cryoDRGN-AI's frequency_marching).
    #[value(alias = "frequency_marching")]
    FrequencyMarching,
}

/// Reconstruct.
pub fn run(mut args: Args) -> Result<()> {
    let _lock = args.train.validate()?;
    let data = args.data.open(&[])?;
    let (n, d) = (data.len(), data.image_size());
    let search_epochs = match (args.epochs_pose_search, args.n_imgs_pose_search) {
        (Some(e), _) => e,
        (None, Some(images)) => (images / n as u64 + 1).max(2) as usize,
        (None, None) => 3,
    };
    if let Some(sgd) = args.epochs_sgd {
        args.train.num_epochs = search_epochs + sgd;
    }
    let t = &args.train;
    if t.num_epochs < search_epochs {
        bail!(
            "-n {}: fewer epochs than the {search_epochs} pose-search epochs; raise -n or lower --epochs-pose-search",
            t.num_epochs
        );
    }
    let RunSetup { norm, prep, dec, precision, seed } = RunSetup::new(
        (&args.data, t),
        &data,
        EncoderInput::None,
        &args.decoder,
        (args.zdim, args.layers, args.dim),
    )?;
    let k = if args.zdim == 0 { 1 } else { args.conformations.search_conformations.max(1) };
    let mut search = args.search.schedule(20.0);
    search.every_map_from = args.conformations.search_all_conformations;
    search.search.mixed_precision = dec.mixed_precision;
    let memory = args.search.fit_search_memory(&mut search, d, k)?;
    let plan = AiSchedule {
        pretrain_images: args.n_imgs_pretrain,
        search_epochs,
        pose_only_images: args.pose_only_phase,
        mask: output_mask(&args, d)?,
        search,
        batch_search: args.batch_size_hps.unwrap_or(t.batch_size).max(1),
        batch_sgd: args.batch_size_sgd.max(1),
        pose_adam: PoseAdamConfig {
            lr_rot: args.lr_pose_table,
            lr_shift: args.lr_pose_table,
            stepping: Stepping::Dense,
            ..Default::default()
        },
        beta_conf: args.beta_conf,
        trans_l1: args.trans_l1_regularizer,
        conformations: k,
    };
    let describe = format!(
        "pretrain {}, {search_epochs} search epochs (batch {}), then {} SGD epochs (batch {}), band limit {}→{}, {:?} \
         output mask, {memory}",
        plan.pretrain_images,
        plan.batch_search,
        t.num_epochs - search_epochs,
        plan.batch_sgd,
        plan.search.l_start,
        plan.search.l_end,
        plan.mask
    );
    let table = (args.zdim > 0).then(|| {
        LatentTable::new(
            n,
            args.zdim,
            (args.std_z_init, args.variational_het),
            (args.lr_conf_table, Stepping::Dense),
            seed,
        )
    });
    let adam = t.adam();
    if args.use_conf_encoder && args.zdim == 0 {
        bail!("--use-conf-encoder predicts conformations: give --zdim N (N > 0)");
    }
    let conf_encoder = args.use_conf_encoder.then(|| CnnLayout::Small.config(d, args.zdim));
    let mut trainer = AbinitAiTrainer::new(&dec, seed, adam, prep, n, plan, (table, conf_encoder.as_ref()))?;
    check_training_memory(trainer.store().num_params(), &dec, t.batch_size.min(n), d)?;
    let summary = format!(
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters, zdim {}, seed {seed}, precision {precision}; \
         ab initio as cryoDRGN-AI ({describe})",
        norm.mean,
        norm.std,
        trainer.store().num_params(),
        args.zdim,
    );
    let dataset_args = args.data.dataset_args(norm, &[]);
    if args.zdim == 0 {
        let config = run_config(dataset_args, d, ModelArgs::decoder_only(ModelKind::AbinitHomo, &dec), seed);
        let map = MapOutput {
            norm: DataNorm { mean: norm.mean, std: norm.std },
            d,
            apix: map_apix(&data, &args.data.particles),
        };
        return fit_decoder(t, &data, &mut trainer, (&config, &summary, seed), map, AbinitAiTrainer::decoder);
    }
    let config = run_config(dataset_args, d, prefixed_decoder_model_args(ModelKind::Autodecoder, &dec), seed);
    let outdir = t.outdir.clone();
    let write_z = move |epoch: usize, trainer: &AbinitAiTrainer| -> Result<()> {
        let Some(table) = trainer.latents() else { bail!("a heterogeneous run has a conformation table") };
        // Every process holds the whole table; rank 0 writes it.
        if !crate::cluster::is_root() {
            return Ok(());
        }
        let path = outdir.join(format!("z.{epoch}.pkl"));
        drgnfly_io::pickle::write_latents(&path, table.means(), table.zdim(), table.logvars())?;
        Ok(())
    };
    fit_with_latents(t, &data, &mut trainer, (&config, &summary, seed), write_z, !args.no_analysis)
}

/// The output mask of `--output-mask` for images of side `d`.
fn output_mask(args: &Args, d: usize) -> Result<OutputMask> {
    let max = args.max_freq.unwrap_or(d / 2);
    if max == 0 || max > d / 2 {
        bail!("--max-freq {max}: give a radius between 1 and D/2 = {}", d / 2);
    }
    Ok(match args.output_mask {
        MaskArg::Circ => OutputMask::Circle(max as f64),
        MaskArg::FrequencyMarching => OutputMask::Marching {
            start: args.l_start_fm.unwrap_or(args.search.l_start).clamp(1, max) as f64,
            every_images: args.add_one_frequency_every.max(1),
            per_epoch: args.n_frequencies_per_epoch as f64,
            max: max as f64,
        },
    })
}

/// config.yaml's `model_args` of a decoder named `decoder.*` without its own encoder's `model_args` (a
/// conformation table, or the amortized runs' CNN): its size under `players`/`pdim`, as a VAE's decoder.
pub fn prefixed_decoder_model_args(kind: ModelKind, dec: &DecoderConfig) -> ModelArgs {
    ModelArgs {
        kind: Some(kind),
        players: Some(dec.layers),
        pdim: Some(dec.dim),
        zdim: Some(dec.zdim),
        pe_type: Some(dec.pe_type),
        feat_sigma: Some(dec.feat_sigma),
        pe_dim: dec.pe_dim,
        domain: Some(dec.domain),
        activation: Some(dec.activation),
        ..Default::default()
    }
}
