//! `eval-simulation`: how well the latents of a run on simulated data recover the ground truth.
//!
//! - Classification accuracy: k-means on the latents with K = the number of true states (10
//!   restarts, up to 300 iterations), clusters matched to states by the Hungarian algorithm.
//! - |Spearman ρ| between PC1 and the frame index (`--frames`, e.g. the position along a simulated
//!   trajectory; default: the state labels, taken as ordered). The sign of a PC is arbitrary.
//! - The HetACUMN entanglement score (Section 4.4, lower is better): the conformation term E_z of the states
//!   (Eq. 11; 0 = separated, 1 = identical) and, with `--true-poses`, the pose terms and their sum
//!   E_entangle = E_rot + E_trans + E_z. E_rot is the median ‖ΔR‖²_F after global alignment (both hands;
//!   the paper's "Rot."), E_trans the median squared shift error (map offset removed; the paper's "Trans.",
//!   in pixels²) divided by D², i.e. in pose.pkl's box fractions: the unit under which the paper's Table 3
//!   is the sum of its Tables 1–2 (cryoDRGN2, 20k set, D = 128: 2e-4 + 8.7/128² + 0 = 7.3e-4).
//!
//! Ground-truth files hold one entry per particle, either per z row or per original particle (then
//! mapped through the training `--ind`). The estimated poses are the run's `pose.EPOCH.pkl` (ab initio,
//! pose refinement) unless `--poses` names others (an `eval-images` inference pass, say), else the poses
//! the run was given. Prints a table on stdout and writes `metrics.json`.
//!
//! Example usage:
//!   drgnfly eval-simulation out 50 --labels sim/states.pkl
//!   drgnfly eval-simulation out 50 --labels sim/states.pkl --frames sim/frames.pkl -o metrics.json
//!   drgnfly eval-simulation abinit 30 --labels sim/states.pkl --true-poses sim/pose.pkl

use std::io::Write;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_analysis::kmeans::{kmeans, KMeansParams};
use drgnfly_analysis::metrics::{best_match_accuracy, entanglement_z, spearman, Entanglement};
use drgnfly_analysis::pca::Pca;
use drgnfly_analysis::Latents;
use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::accuracy::{median, PoseAccuracy};
use drgnfly_io::pickle::load_poses;
use drgnfly_nn::config::PosesArg;

use super::analysis_common::{load_labels, write_text, Workdir};

/// Latent quality against simulation ground truth.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly eval-simulation out 50 --labels sim/states.pkl\n  drgnfly eval-simulation out 50 --labels sim/states.pkl --frames sim/frames.pkl -o metrics.json\n  drgnfly eval-simulation abinit 30 --labels sim/states.pkl --true-poses sim/pose.pkl"
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
    /// The simulation's true poses (pose.pkl): adds the pose terms E_rot, E_trans and the total E_entangle.
    #[arg(long)]
    pub true_poses: Option<PathBuf>,
    /// Estimated poses [default: WORKDIR/pose.EPOCH.pkl, else the poses the run was trained with].
    #[arg(long, requires = "true_poses")]
    pub poses: Option<PathBuf>,
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
    let truth = per_z(load_labels(&args.labels)?, n, ind.as_deref(), &args.labels)?;
    let frames = match &args.frames {
        Some(p) => per_z(load_labels(p)?, n, ind.as_deref(), p)?,
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
    let pose_terms = match &args.true_poses {
        Some(true_path) => Some(pose_terms(&wd, args.poses.as_deref(), true_path, (n, ind.as_deref()))?),
        None => None,
    };
    let entanglement = pose_terms.as_ref().map(|(acc, d)| Entanglement {
        e_rot: acc.e_rot(),
        e_trans: acc.e_trans(*d),
        e_z,
    });

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
    if let (Some((acc, _)), Some(e)) = (&pose_terms, &entanglement) {
        let rows = [
            (
                "median angle error",
                format!(
                    "{:.2}° ({} hand)",
                    median(&acc.angles_deg),
                    if acc.rotation.flipped { "mirrored" } else { "same" }
                ),
            ),
            ("Rot. = E_rot", format!("{:.3e}", e.e_rot)),
            ("Trans. (px²)", format!("{:.3}", acc.median_shift_sq_px())),
            ("E_trans (Trans./D²)", format!("{:.3e}", e.e_trans)),
            ("E_entangle", format!("{:.3e}", e.total())),
        ];
        for (name, value) in &rows {
            writeln!(out, "{name:<24} {value}")?;
        }
    }
    let mut json = serde_json::json!({
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
    if let (Some((acc, _)), Some(e)) = (&pose_terms, &entanglement) {
        json["median_angle_deg"] = serde_json::json!(median(&acc.angles_deg));
        json["hand_flipped"] = serde_json::json!(acc.rotation.flipped);
        json["median_shift_sq_px"] = serde_json::json!(acc.median_shift_sq_px());
        json["entanglement_rot"] = serde_json::json!(e.e_rot);
        json["entanglement_trans"] = serde_json::json!(e.e_trans);
        json["entanglement"] = serde_json::json!(e.total());
    }
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

/// Per-particle ground truth `v` as one entry per z row: as it is when it has `n` entries, else through the
/// training `--ind`.
fn per_z<T: Copy>(v: Vec<T>, n: usize, ind: Option<&[usize]>, path: &Path) -> Result<Vec<T>> {
    match ind {
        _ if v.len() == n => Ok(v),
        Some(ind) if ind.iter().all(|&i| i < v.len()) => Ok(ind.iter().map(|&i| v[i]).collect()),
        _ => bail!(
            "{}: {} entries, but the latents hold {n} particles{}",
            path.display(),
            v.len(),
            if ind.is_some() { " (and the training --ind reaches beyond it)" } else { "" }
        ),
    }
}

/// The run's estimated poses against `true_path`, one per z row, and the box size D.
fn pose_terms(
    wd: &Workdir,
    estimated: Option<&Path>,
    true_path: &Path,
    (n, ind): (usize, Option<&[usize]>),
) -> Result<(PoseAccuracy, usize)> {
    let config = wd.config()?.with_context(|| {
        format!(
            "{}: no config.yaml, which gives the box size the poses' shifts are fractions of",
            wd.dir.display()
        )
    })?;
    let d = config.image_size();
    let own = wd.dir.join(format!("pose.{}.pkl", wd.epoch));
    let estimated = match (estimated, &config.dataset_args.poses) {
        (Some(p), _) => p.to_path_buf(),
        (None, _) if own.is_file() => own,
        (None, Some(PosesArg::One(p))) => PathBuf::from(p),
        _ => bail!(
            "{}: no pose.{}.pkl and no single pose file in config.yaml: pass --poses",
            wd.dir.display(),
            wd.epoch
        ),
    };
    let poses = |path: &Path| -> Result<Vec<Pose>> {
        let p = load_poses(path)?;
        let all =
            (0..p.rot.len()).map(|i| Pose::from_pkl(&p.rot[i], p.trans.as_ref().map(|t| t[i]), d)).collect();
        per_z(all, n, ind, path)
    };
    let (est, truth) = (poses(&estimated)?, poses(true_path)?);
    let acc = PoseAccuracy::measure(&est, &truth)
        .with_context(|| format!("{} against {}", estimated.display(), true_path.display()))?;
    Ok((acc, d))
}
