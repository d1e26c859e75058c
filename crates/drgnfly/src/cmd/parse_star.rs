//! `parse-star`: CTF and poses of a RELION .star file in one pass (`parse-ctf-star` + `parse-pose-star`).
//!
//! Example usage:
//!   drgnfly parse-star particles.star --ctf ctf.pkl --poses pose.pkl
//!   drgnfly parse-star run_data.star -D 300 --Apix 1.035 --poses pose.pkl

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_io::pickle;
use drgnfly_io::relion::RelionParticles;

use super::parse_ctf_star::{ctf_from_star, describe_first_ctf, CtfFlags};
use super::parse_pose_star::{describe_first_pose, poses_from_star, write_poses_f64};

/// Extract CTF parameters and poses from a RELION .star file (at least one output).
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly parse-star particles.star --ctf ctf.pkl --poses pose.pkl\n  drgnfly parse-star run_data.star -D 300 --Apix 1.035 --poses pose.pkl"
)]
pub struct Args {
    /// RELION particle .star file (3.0 or 3.1+ with optics groups).
    pub input: PathBuf,
    /// Output ctf.pkl.
    #[arg(long = "ctf")]
    pub ctf: Option<PathBuf>,
    /// Output pose.pkl.
    #[arg(long = "poses")]
    pub poses: Option<PathBuf>,
    #[command(flatten)]
    pub flags: CtfFlags,
}

/// Parse the file once and write the requested outputs.
pub fn run(args: Args) -> Result<()> {
    if args.ctf.is_none() && args.poses.is_none() {
        bail!("nothing to do: pass --ctf ctf.pkl and/or --poses pose.pkl");
    }
    let star = RelionParticles::open(&args.input)?;
    super::require_rows(star.len(), &args.input)?;
    // Parse both before writing either, so a bad column leaves no half result behind.
    let ctf = args.ctf.as_ref().map(|_| ctf_from_star(&star, &args.flags)).transpose()?;
    let poses =
        args.poses.as_ref().map(|_| poses_from_star(&star, args.flags.d, args.flags.apix)).transpose()?;
    if let (Some(path), Some(ctf)) = (&args.ctf, &ctf) {
        pickle::write_ctf(path, ctf)?;
        say!("{}: {} particles, {}", path.display(), ctf.len(), describe_first_ctf(ctf));
    }
    if let (Some(path), Some(p)) = (&args.poses, &poses) {
        write_poses_f64(path, &p.rot, &p.trans)?;
        say!(
            "{}: {} particles; {}",
            path.display(),
            p.rot.len(),
            describe_first_pose(p.rot.first(), p.trans.first())
        );
    }
    Ok(())
}
