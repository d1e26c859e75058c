//! `filter-cs`: keep the `--ind` rows of a cryoSPARC .cs file, every field unchanged (for re-import into
//! cryoSPARC). Rows come out in the order of `--ind`.
//!
//! Example usage:
//!   drgnfly filter-cs particles.cs --ind good.pkl -o good.cs

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_io::cs::CsFile;
use drgnfly_io::selection::Selection;

/// Subset a cryoSPARC .cs file with an index selection.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly filter-cs particles.cs --ind good.pkl -o good.cs")]
pub struct Args {
    /// cryoSPARC .cs file.
    pub input: PathBuf,
    /// Rows to keep (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: PathBuf,
    /// Output .cs file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Filter and write.
pub fn run(args: Args) -> Result<()> {
    let cs = CsFile::open(&args.input)?;
    let rows = Selection::load(&args.ind)?.resolve(cs.len())?;
    cs.filter_rows(&rows, &args.output)?;
    say!("{}: {} of {} particles", args.output.display(), rows.len(), cs.len());
    Ok(())
}
