//! `export-weights`: drgnfly checkpoints → cryoDRGN's PyTorch `weights.N.pkl`, so cryoDRGN's `eval_vol`,
//! `analyze`, its notebooks and `--load` work on a drgnfly run (with the run's `config.yaml` and `z.N.pkl`,
//! which are already in cryoDRGN's format).
//!
//! Example usage:
//!   drgnfly export-weights run/                         # every weights.N.safetensors → weights.N.pkl
//!   drgnfly export-weights run/weights.20.safetensors -o w20.pkl

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_nn::config::RunConfig;
use drgnfly_nn::{read_checkpoint, write_cryodrgn_weights, AdamConfig};

/// Export checkpoints as cryoDRGN weights.N.pkl (PyTorch format).
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly export-weights run/\n  \
    drgnfly export-weights run/weights.20.safetensors -o w20.pkl\n  \
    cryodrgn eval_vol run/weights.20.pkl -c run/config.yaml -z 0 0 0 0 0 0 0 0 -o vol.mrc")]
pub struct Args {
    /// A checkpoint (weights.N.safetensors), or a run directory to export all of its checkpoints.
    pub input: PathBuf,
    /// Output .pkl (only with a single checkpoint; default: beside it, weights.N.pkl).
    #[arg(short, long)]
    pub output: Option<PathBuf>,
    /// The run's config.yaml, for the data normalization and Adam's learning rate written with the
    /// optimizer state (default: config.yaml beside the checkpoint).
    #[arg(short, long)]
    pub config: Option<PathBuf>,
}

pub fn run(args: Args) -> Result<()> {
    let (checkpoints, run_dir) = if args.input.is_dir() {
        if args.output.is_some() {
            bail!("-o names one file: give a single weights.N.safetensors with it, or drop -o to export the whole directory");
        }
        let found = super::train_common::checkpoints(&args.input)?;
        if found.is_empty() {
            bail!(
                "{}: no weights.N.safetensors checkpoints here; pass a drgnfly training output directory",
                args.input.display()
            );
        }
        (found, args.input.clone())
    } else {
        (vec![args.input.clone()], args.input.parent().unwrap_or(Path::new(".")).to_path_buf())
    };
    // One run, one config: its normalization and Adam settings go into every exported checkpoint.
    let config_path = args.config.unwrap_or_else(|| run_dir.join("config.yaml"));
    let config = if config_path.exists() { Some(RunConfig::read(&config_path)?) } else { None };
    let norm = config.as_ref().and_then(|c| c.norm().ok()).map(|n| [n.mean, n.std]);
    let adam = AdamConfig {
        lr: config.as_ref().and_then(|c| flag_value(c, "--lr")).unwrap_or(1e-4),
        weight_decay: config.as_ref().and_then(|c| flag_value(c, "--wd")).unwrap_or(0.0),
        ..AdamConfig::default()
    };
    for weights in &checkpoints {
        let out = args.output.clone().unwrap_or_else(|| weights.with_extension("pkl"));
        let ckpt = read_checkpoint(weights, &candle_core::Device::Cpu)
            .with_context(|| format!("reading {}", weights.display()))?;
        write_cryodrgn_weights(&out, &ckpt, Some(&adam), norm)?;
        say!(
            "{} → {} (epoch {}, {} tensors{})",
            weights.display(),
            out.display(),
            ckpt.epoch,
            ckpt.model.len(),
            if ckpt.optimizer.is_empty() { ", no optimizer state" } else { ", with Adam state" }
        );
    }
    Ok(())
}

/// A numeric flag's value in the run's recorded command line (`--lr 1e-3` or `--lr=1e-3`).
fn flag_value(config: &RunConfig, flag: &str) -> Option<f64> {
    let cmd = config.cmd.as_ref()?;
    let prefix = format!("{flag}=");
    cmd.iter().enumerate().rev().find_map(|(i, a)| {
        if a == flag {
            cmd.get(i + 1)?.parse().ok()
        } else {
            a.strip_prefix(&prefix)?.parse().ok()
        }
    })
}
