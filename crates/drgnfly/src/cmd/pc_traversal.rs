//! `pc-traversal`: z values along principal components of the latents, one `pcK.txt` per component
//! (numpy `loadtxt` format, ready for `eval-vol --zfile`). Points run from the 5th to the 95th
//! percentile of the particles' PC values (or `--lim LO HI`), with the other components at 0.
//!
//! Example usage:
//!   drgnfly pc-traversal out/z.50.pkl -o out/pc_traversal
//!   drgnfly pc-traversal z.txt --pc 1 3 -n 20 --use-percentile-spacing -o traj

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use drgnfly_analysis::pca::Pca;
use drgnfly_analysis::traversal::{format_z_text, pc_traversal, PcSpacing};
use drgnfly_analysis::Latents;

use super::analysis_common::{load_zfile, write_text};

/// Latent paths along principal components.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly pc-traversal out/z.50.pkl -o out/pc_traversal\n  drgnfly pc-traversal z.txt --pc 1 3 -n 20 --use-percentile-spacing -o traj"
)]
pub struct Args {
    /// Latents: z.N.pkl or a z-values text file.
    pub zfile: PathBuf,
    /// Components to traverse (1-based; default: all).
    #[arg(long, num_args = 1.., value_name = "K")]
    pub pc: Vec<usize>,
    /// Points per component.
    #[arg(short = 'n', default_value_t = 10)]
    pub n: usize,
    /// PC values of the first and last points (instead of the 5th and 95th percentiles).
    #[arg(long, num_args = 2, value_names = ["LO", "HI"], allow_negative_numbers = true, conflicts_with = "use_percentile_spacing")]
    pub lim: Option<Vec<f64>>,
    /// Place points at evenly spaced percentiles (5…95) rather than evenly in PC value.
    #[arg(long)]
    pub use_percentile_spacing: bool,
    /// Output directory (pcK.txt per component).
    #[arg(short = 'o', long = "outdir")]
    pub outdir: PathBuf,
}

/// Fit PCA and write the paths.
pub fn run(args: Args) -> Result<()> {
    let (z, zdim) = load_zfile(&args.zfile)?;
    let lat = Latents::new(&z, zdim).with_context(|| format!("latents of {}", args.zfile.display()))?;
    let pca = Pca::fit(lat)?;
    let spacing = match (&args.lim, args.use_percentile_spacing) {
        (Some(l), _) => PcSpacing::Limits(l[0], l[1]),
        (None, true) => PcSpacing::PercentileSpaced,
        (None, false) => PcSpacing::Percentile5To95,
    };
    let pcs: Vec<usize> = if args.pc.is_empty() { (1..=zdim).collect() } else { args.pc.clone() };
    std::fs::create_dir_all(&args.outdir).with_context(|| format!("creating {}", args.outdir.display()))?;
    for pc in pcs {
        let tr = pc_traversal(&pca, lat, pc, args.n, spacing)?;
        let path = args.outdir.join(format!("pc{pc}.txt"));
        write_text(&path, &format_z_text(&tr.z, zdim))?;
        let ev = pca.explained_variance_ratio.get(pc - 1).copied().unwrap_or(0.0);
        say!(
            "{}: {} points, PC{pc} from {:.4} to {:.4} ({:.1}% of the variance)",
            path.display(),
            args.n,
            tr.coords.first().copied().unwrap_or(0.0),
            tr.coords.last().copied().unwrap_or(0.0),
            100.0 * ev
        );
    }
    Ok(())
}
