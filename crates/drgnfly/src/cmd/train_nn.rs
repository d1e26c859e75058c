//! `train-nn`: homogeneous reconstruction with known poses (cryoDRGN `train_nn`): one coordinate decoder
//! fitted to all particles, no latent.
//!
//! Same driver, data pipeline and checkpoints as `train-vae`; per checkpoint it writes
//! `weights.E.safetensors` and the map `reconstruct.E.mrc` (pixel size from ctf.pkl, else the stack header,
//! else 1 Å with a warning; cryoDRGN always writes 1), and with `--do-pose-sgd` the refined `pose.E.pkl`. Log line per epoch: `# =====> Epoch: E Average loss = …; Finished in …`.
//!
//! Example usage:
//!   drgnfly train-nn particles.mrcs --poses pose.pkl --ctf ctf.pkl -n 20 -o out/

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_nn::config::{ModelArgs, ModelKind};
use drgnfly_nn::train::{EncoderInput, HomoTrainer};
use drgnfly_nn::DataNorm;

use super::train_common::{
    check_training_memory, fit_decoder, map_apix, run_config, DataArgs, DecoderArgs, MapOutput, PoseArgs,
    PoseSgdArgs, RunSetup, TrainArgs,
};

/// Train a homogeneous decoder on particles with known poses.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly train-nn particles.mrcs --poses pose.pkl --ctf ctf.pkl -o out/\n  drgnfly train-nn particles.mrcs --poses pose.pkl --ctf ctf.pkl --do-pose-sgd --pretrain 5 -o out/"
)]
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
    #[command(flatten)]
    pub pose_sgd: PoseSgdArgs,
    /// Extent of the coordinate lattice (cryoDRGN's --l-extent); only its default, 0.5, is supported.
    #[arg(long, default_value_t = 0.5)]
    pub l_extent: f64,
}

/// Train.
pub fn run(args: Args) -> Result<()> {
    let t = &args.train;
    if args.l_extent != 0.5 {
        anyhow::bail!(
            "--l-extent {}: drgnfly's decoders use cryoDRGN's default lattice extent 0.5; drop the flag",
            args.l_extent
        );
    }
    let _lock = t.validate()?;
    let data = args.data.open(&args.poses.poses)?;
    let (n, d) = (data.len(), data.image_size());
    let RunSetup { norm, prep, dec, precision, seed } =
        RunSetup::new((&args.data, t), &data, EncoderInput::None, &args.decoder, (0, args.layers, args.dim))?;
    let adam = t.adam();
    let mut trainer = HomoTrainer::new(&dec, seed, adam, prep)?;
    check_training_memory(trainer.store().num_params(), &dec, t.batch_size.min(n), d)?;
    // cryoDRGN train_nn refines after 5 epochs on the given poses.
    if let Some(refine) = args.pose_sgd.refinement(&data, 5)? {
        trainer = trainer.with_pose_refinement(refine);
    }
    let apix = map_apix(&data, &args.data.particles);

    let model_args = ModelArgs::decoder_only(ModelKind::Homogeneous, &dec);
    let mut dataset_args = args.data.dataset_args(norm, &args.poses.poses);
    dataset_args.do_pose_sgd = args.pose_sgd.do_pose_sgd;
    let config = run_config(dataset_args, d, model_args, seed);
    let summary = format!(
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters, seed {seed}, precision {precision}",
        norm.mean,
        norm.std,
        trainer.store().num_params()
    );
    let map = MapOutput { norm: DataNorm { mean: norm.mean, std: norm.std }, d, apix };
    fit_decoder(t, &data, &mut trainer, (&config, &summary, seed), map, HomoTrainer::decoder)
}
