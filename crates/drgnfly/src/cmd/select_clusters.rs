//! `select-clusters`: indices of the particles in chosen k-means clusters (cryoDRGN
//! `select_clusters`), written as an int64 index .pkl usable with `--ind`.
//!
//! With `--parent-ind` (the `--ind` the model was trained with) the indices are mapped back to rows
//! of the original particle stack.
//!
//! Example usage:
//!   drgnfly select-clusters out/analyze.50/kmeans20/labels.pkl --sel 0 3 -o ind.pkl
//!   drgnfly select-clusters labels.pkl --sel 4 --parent-ind train_ind.pkl -o ind_orig.pkl

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_analysis::select::select_clusters;
use drgnfly_io::selection::{write_selection, Selection};

use super::analysis_common::{load_labels, to_original};

/// Particle indices of chosen k-means clusters.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly select-clusters out/analyze.50/kmeans20/labels.pkl --sel 0 3 -o ind.pkl\n  drgnfly select-clusters labels.pkl --sel 4 --parent-ind train_ind.pkl -o ind_orig.pkl"
)]
pub struct Args {
    /// Cluster labels (.pkl, one integer per particle).
    pub labels: PathBuf,
    /// Clusters to keep (0-based, as in labels.pkl).
    #[arg(long, num_args = 1.., required = true, value_name = "K")]
    pub sel: Vec<u32>,
    /// Output index .pkl.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// The training --ind: map the selection to rows of the original stack.
    #[arg(long, value_name = "IND")]
    pub parent_ind: Option<PathBuf>,
}

/// Select and write.
pub fn run(args: Args) -> Result<()> {
    let labels = load_labels(&args.labels)?;
    let rows = select_clusters(&labels, &args.sel)?;
    let parent = match &args.parent_ind {
        Some(p) => Some(Selection::load(p)?.resolve(usize::MAX)?),
        None => None,
    };
    if let Some(p) = &parent {
        if p.len() != labels.len() {
            anyhow::bail!(
                "--parent-ind lists {} particles but {} holds {} labels; pass the --ind the model was trained with",
                p.len(),
                args.labels.display(),
                labels.len()
            );
        }
    }
    let out = to_original(&rows, parent.as_deref())?;
    write_selection(&args.output, &out.iter().map(|&i| i as i64).collect::<Vec<_>>())?;
    say!("{}: {} of {} particles (clusters {:?})", args.output.display(), out.len(), labels.len(), args.sel);
    Ok(())
}
