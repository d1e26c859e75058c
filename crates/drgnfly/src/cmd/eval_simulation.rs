//! `eval-simulation`: how well the latents of a run on simulated data recover the ground truth.
//!
//! - Classification accuracy: k-means on the latents with K = the number of true states (10
//!   restarts, up to 300 iterations), clusters matched to states by the Hungarian algorithm.
//! - |Spearman ρ| between PC1 and the frame index (`--frames`, e.g. the position along a simulated
//!   trajectory; default: the state labels, taken as ordered). The sign of a PC is arbitrary.
//! - The HetACUMN entanglement term E_z of the states (lower is better; 0 = separated, 1 = identical).
//!
//! Ground-truth files hold one integer per particle, either per z row or per original particle (then
//! mapped through the training `--ind`). Prints a table on stdout and writes `metrics.json`.
//!
//! Example usage:
//!   drgnfly eval-simulation out 50 --labels sim/states.pkl
//!   drgnfly eval-simulation out 50 --labels sim/states.pkl --frames sim/frames.pkl -o metrics.json

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_analysis::kmeans::{kmeans, KMeansParams};
use drgnfly_analysis::metrics::{best_match_accuracy, entanglement_z, spearman};
use drgnfly_analysis::pca::Pca;
use drgnfly_analysis::Latents;

use super::analysis_common::{load_labels, write_text, Workdir};

/// Latent quality against simulation ground truth.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly eval-simulation out 50 --labels sim/states.pkl\n  drgnfly eval-simulation out 50 --labels sim/states.pkl --frames sim/frames.pkl -o metrics.json"
)]
pub struct Args {
    /// Training output directory.
    pub workdir: PathBuf,
    /// Epoch (1-based; −1 for the latest).
    #[arg(allow_negative_numbers = true)]
    pub epoch: i64,
    /// True state of each particle (.pkl or text, integers ≥ 0).
    #[arg(long)]
    pub labels: PathBuf,
    /// Frame index of each particle along the simulated motion (default: the labels).
    #[arg(long)]
    pub frames: Option<PathBuf>,
    /// Output JSON (default: WORKDIR/analyze.EPOCH/metrics.json).
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
    /// Seed of the k-means initialisations.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
}

/// Compute, print, write.
pub fn run(args: Args) -> Result<()> {
    let wd = Workdir::open(&args.workdir, args.epoch)?;
    let (z, zdim) = wd.load_z(wd.epoch)?;
    let n = z.len() / zdim;
    let lat =
        Latents::new(&z, zdim).with_context(|| format!("latents of {}", wd.z_path(wd.epoch).display()))?;
    let ind = wd.dataset_ind(n)?;
    let per_z = |path: &PathBuf| -> Result<Vec<u32>> {
        let v = load_labels(path)?;
        match &ind {
            _ if v.len() == n => Ok(v),
            Some(ind) if ind.iter().all(|&i| i < v.len()) => Ok(ind.iter().map(|&i| v[i]).collect()),
            _ => bail!(
                "{}: {} entries, but the latents hold {n} particles{}",
                path.display(),
                v.len(),
                if ind.is_some() { " (and the training --ind reaches beyond it)" } else { "" }
            ),
        }
    };
    let truth = per_z(&args.labels)?;
    let frames = match &args.frames {
        Some(p) => per_z(p)?,
        None => truth.clone(),
    };
    let mut states: Vec<u32> = truth.clone();
    states.sort_unstable();
    states.dedup();
    if states.len() < 2 {
        bail!("{}: all particles have the same state; nothing to classify", args.labels.display());
    }
    let k = states.len().min(n);
    let km =
        kmeans(lat, &KMeansParams { k, max_iter: 300, n_init: 10, seed: args.seed, ..Default::default() })?;
    let acc = best_match_accuracy(&km.labels, &truth)?;
    let pca = Pca::fit(lat)?;
    let pc1: Vec<f64> = pca.transform(lat, 1)?.into_iter().map(f64::from).collect();
    let frame_f: Vec<f64> = frames.iter().map(|&f| f64::from(f)).collect();
    // Constant PC1 or frames leave the correlation undefined: reported as n/a, not an error.
    let rho = spearman(&pc1, &frame_f).ok();
    let e_z = entanglement_z(lat, &truth)?;

    let rows = [
        ("particles", n.to_string()),
        ("zdim", zdim.to_string()),
        ("states", states.len().to_string()),
        ("k-means accuracy", format!("{:.4}", acc.accuracy)),
        (
            if args.frames.is_some() { "|Spearman(PC1, frame)|" } else { "|Spearman(PC1, state)|" },
            rho.map_or("n/a".to_string(), |r| format!("{:.4}", r.abs())),
        ),
        ("entanglement E_z", format!("{e_z:.4}")),
    ];
    let mut out = std::io::stdout().lock();
    for (name, value) in &rows {
        writeln!(out, "{name:<24} {value}")?;
    }
    let json = serde_json::json!({
        "workdir": wd.dir.display().to_string(),
        "epoch": wd.epoch,
        "particles": n,
        "zdim": zdim,
        "states": states.len(),
        "kmeans_accuracy": acc.accuracy,
        "kmeans_to_state": acc.mapping,
        "spearman_pc1": rho,
        "spearman_against": if args.frames.is_some() { "frames" } else { "labels" },
        "entanglement_z": e_z,
    });
    let path = args
        .output
        .clone()
        .unwrap_or_else(|| wd.dir.join(format!("analyze.{}", wd.epoch)).join("metrics.json"));
    if let Some(parent) = path.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(parent).with_context(|| format!("creating {}", parent.display()))?;
    }
    write_text(&path, &format!("{}\n", serde_json::to_string_pretty(&json)?))?;
    say!("{}: written", path.display());
    Ok(())
}
