//! `filter-pkl`: keep the `--ind` rows (or the first N) of a cryoDRGN .pkl: ctf.pkl, pose.pkl (rotations
//! and translations together), z.pkl, or any array or tuple of arrays, filtered along the first axis.
//! The output keeps the input's layout and dtypes.
//!
//! Example usage:
//!   drgnfly filter-pkl pose.pkl --ind good.pkl -o pose.good.pkl
//!   drgnfly filter-pkl ctf.pkl --first 10000 -o ctf.10k.pkl

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_io::selection::Selection;

use super::pkl_rows::{take_rows, PklArrays};

/// Subset the arrays of a .pkl file with an index selection or to its first N rows.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly filter-pkl pose.pkl --ind good.pkl -o pose.good.pkl\n  drgnfly filter-pkl ctf.pkl --first 10000 -o ctf.10k.pkl"
)]
#[command(group = clap::ArgGroup::new("which").required(true).args(["ind", "first"]))]
pub struct Args {
    /// Input .pkl (array, tuple of arrays, or arrays back to back).
    pub input: PathBuf,
    /// Rows to keep (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Keep the first N rows instead.
    #[arg(long, value_name = "N")]
    pub first: Option<usize>,
    /// Output .pkl.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Filter and write.
pub fn run(args: Args) -> Result<()> {
    let input = PklArrays::load(&args.input)?;
    let n = input.rows(&args.input)?;
    let rows: Vec<usize> = match (&args.ind, args.first) {
        (Some(p), _) => Selection::load(p)?.resolve(n)?,
        (None, Some(k)) if k <= n => (0..k).collect(),
        (None, Some(k)) => bail!("--first {k}: {} has only {n} rows", args.input.display()),
        (None, None) => bail!("pass --ind or --first"),
    };
    let out = input.with_arrays(input.arrays().iter().map(|a| take_rows(a, &rows)).collect());
    out.write(&args.output)?;
    say!("{}: {} → {}", args.output.display(), input.describe(), out.describe());
    Ok(())
}
