//! `filter-star`: keep the `--ind` particles of a RELION .star file, and only the optics groups they
//! still use. Every other block and column is kept unchanged; rows come out in the order of `--ind`.
//!
//! Example usage:
//!   drgnfly filter-star particles.star --ind good.pkl -o good.star

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_io::relion::RelionParticles;
use drgnfly_io::selection::Selection;
use drgnfly_io::star::write_star;

/// Subset a RELION .star file with an index selection.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly filter-star particles.star --ind good.pkl -o good.star")]
pub struct Args {
    /// RELION particle .star file.
    pub input: PathBuf,
    /// Particles to keep (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: PathBuf,
    /// Output .star file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Filter and write.
pub fn run(args: Args) -> Result<()> {
    let star = RelionParticles::open(&args.input)?;
    let rows = Selection::load(&args.ind)?.resolve(star.len())?;
    let out = star.filter_particles(&rows)?;
    write_star(&args.output, &out)?;
    let groups = |s: Option<usize>| s.map_or(String::new(), |g| format!(", {g} optics groups"));
    let kept = RelionParticles::from_star(out)?;
    say!(
        "{}: {} of {} particles{}",
        args.output.display(),
        kept.len(),
        star.len(),
        groups(kept.optics().map(|o| o.len()))
    );
    Ok(())
}
