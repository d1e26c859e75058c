//! `direct-traversal`: straight lines in latent space between anchor particles, `-n` points per
//! segment plus the last anchor (numpy `loadtxt` format, ready for `eval-vol --zfile`).
//!
//! Example usage:
//!   drgnfly direct-traversal out/z.50.pkl --anchors 12 4051 733 -o z-path.txt
//!   drgnfly direct-traversal z.txt --anchors 0 9 --loop -n 20 -o loop.txt

use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::Args as ClapArgs;
use drgnfly_analysis::traversal::{direct_traversal, format_z_text};
use drgnfly_analysis::Latents;

use super::analysis_common::{load_zfile, write_text};

/// Linear interpolation between anchor particles.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly direct-traversal out/z.50.pkl --anchors 12 4051 733 -o z-path.txt\n  drgnfly direct-traversal z.txt --anchors 0 9 --loop -n 20 -o loop.txt"
)]
pub struct Args {
    /// Latents: z.N.pkl or a z-values text file.
    pub zfile: PathBuf,
    /// Particle indices (0-based rows of zfile) to pass through, in order.
    #[arg(long, num_args = 2.., required = true, value_name = "I")]
    pub anchors: Vec<usize>,
    /// Points per segment.
    #[arg(short = 'n', default_value_t = 6)]
    pub n: usize,
    /// Return from the last anchor to the first.
    #[arg(long = "loop")]
    pub closed: bool,
    /// Output z-values text file.
    #[arg(short = 'o', long = "output", default_value = "z-path.txt")]
    pub output: PathBuf,
}

/// Interpolate and write.
pub fn run(args: Args) -> Result<()> {
    let (z, zdim) = load_zfile(&args.zfile)?;
    let lat = Latents::new(&z, zdim).with_context(|| format!("latents of {}", args.zfile.display()))?;
    let path = direct_traversal(lat, &args.anchors, args.n, args.closed)?;
    write_text(&args.output, &format_z_text(&path, zdim))?;
    say!("{}: {} points through {} anchors", args.output.display(), path.len() / zdim, args.anchors.len());
    Ok(())
}
