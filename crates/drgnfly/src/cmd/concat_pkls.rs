//! `concat-pkls`: join the arrays of several cryoDRGN .pkl files along the first axis (ctf.pkl, z.pkl,
//! index arrays; pose tuples element-wise). Shapes must agree beyond the first axis, and all files must
//! have the same layout.
//!
//! Example usage:
//!   drgnfly concat-pkls ctf.a.pkl ctf.b.pkl -o ctf.pkl
//!   drgnfly concat-pkls pose.a.pkl pose.b.pkl -o pose.pkl

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;

use super::pkl_rows::{concat_rows, PklArrays};

/// Concatenate the arrays of several .pkl files.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly concat-pkls ctf.a.pkl ctf.b.pkl -o ctf.pkl\n  drgnfly concat-pkls pose.a.pkl pose.b.pkl -o pose.pkl"
)]
pub struct Args {
    /// Input .pkl files, in order.
    #[arg(required = true, num_args = 1..)]
    pub inputs: Vec<PathBuf>,
    /// Output .pkl.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Join and write.
pub fn run(args: Args) -> Result<()> {
    let files: Vec<PklArrays> = args.inputs.iter().map(|p| PklArrays::load(p)).collect::<Result<_>>()?;
    let Some(first) = files.first() else { bail!("no input files") };
    let same_layout = |f: &PklArrays| {
        std::mem::discriminant(f) == std::mem::discriminant(first) && f.arrays().len() == first.arrays().len()
    };
    if let Some(k) = files.iter().position(|f| !same_layout(f)) {
        bail!(
            "{}: holds {} but {} holds {}; all files must hold the same kind of data (all arrays, or all pose tuples)",
            args.inputs[k].display(),
            files[k].describe(),
            args.inputs[0].display(),
            first.describe()
        );
    }
    let joined = (0..first.arrays().len())
        .map(|i| {
            let parts: Vec<_> =
                args.inputs.iter().zip(&files).map(|(p, f)| (p.as_path(), &f.arrays()[i])).collect();
            concat_rows(&parts)
        })
        .collect::<Result<Vec<_>>>()?;
    let out = first.with_arrays(joined);
    out.write(&args.output)?;
    say!("{}: {} files → {}", args.output.display(), files.len(), out.describe());
    Ok(())
}
