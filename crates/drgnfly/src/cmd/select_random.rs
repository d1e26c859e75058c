//! `select-random`: a random subset of particle indices, written as an int64 index .pkl (sorted), and
//! optionally its complement. The same `--seed` gives the same selection.
//!
//! Example usage:
//!   drgnfly select-random 189043 -n 10000 -o sel.pkl
//!   drgnfly select-random 189043 --frac 0.5 --seed 1 -o half.pkl -s other_half.pkl

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_io::selection::{complement, select_random, write_selection};

/// Select a random subset of N particles.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly select-random 189043 -n 10000 -o sel.pkl\n  drgnfly select-random 189043 --frac 0.5 --seed 1 -o half.pkl -s other_half.pkl"
)]
#[command(group = clap::ArgGroup::new("how_many").required(true).args(["n", "frac"]))]
pub struct Args {
    /// Total number of particles.
    #[arg(value_name = "N")]
    pub total: usize,
    /// Output selection (.pkl).
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Number of particles to select.
    #[arg(short = 'n', value_name = "K")]
    pub n: Option<usize>,
    /// Fraction of particles to select (K = ⌊N·F⌋).
    #[arg(long, value_name = "F")]
    pub frac: Option<f64>,
    /// Random seed.
    #[arg(long, default_value_t = 0)]
    pub seed: u64,
    /// Also write the particles not selected (.pkl).
    #[arg(short = 's', long = "complement", value_name = "REST")]
    pub rest: Option<PathBuf>,
}

/// Draw and write.
pub fn run(args: Args) -> Result<()> {
    let k = match (args.n, args.frac) {
        (Some(k), _) => k,
        (None, Some(f)) if (0.0..=1.0).contains(&f) => (args.total as f64 * f).floor() as usize,
        (None, Some(f)) => bail!("--frac {f} is not a fraction in [0, 1]"),
        (None, None) => bail!("pass -n or --frac"),
    };
    let sel = select_random(args.total, k, args.seed)?;
    write_selection(&args.output, &sel)?;
    say!("{}: {} of {} particles (seed {})", args.output.display(), sel.len(), args.total, args.seed);
    if let Some(rest_path) = &args.rest {
        let rest = complement(args.total, &sel);
        write_selection(rest_path, &rest)?;
        say!("{}: the other {} particles", rest_path.display(), rest.len());
    }
    Ok(())
}
