//! `write-star`: a RELION .star file from a particle stack plus ctf.pkl (and pose.pkl), or a subset of an
//! existing .star file.
//!
//! RELION 3.1 by default (`data_optics` + `data_particles`, origins in Å), 3.0 with `--relion30` (one
//! table, origins in px). Image names are `NNNNNN@stack.mrcs`, counting from 1. Poses are converted back:
//! rotation matrix → RELION Euler angles, translation t (fraction of the box) → t·D px (× Å/px for
//! `_rlnOriginX/YAngst`), so `parse-pose-star` and `parse-ctf-star` give back the inputs. A `.star` input
//! is filtered with `--ind` in its own layout (all columns kept), after checking that every row's image
//! exists in its stack.
//!
//! Example usage:
//!   drgnfly write-star particles.mrcs --ctf ctf.pkl --poses pose.pkl -o particles.star
//!   drgnfly write-star particles.txt --ctf ctf.pkl --ind good.pkl --full-path -o good.star
//!   drgnfly write-star particles.star --ind good.pkl -o good.star

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_em::rotation::from_f32;
use drgnfly_em::rotation::relion::euler_from_matrix;
use drgnfly_io::relion::{format_image_name, write_relion, ParticleRecords, RelionParticles, RelionVersion};
use drgnfly_io::selection::Selection;
use drgnfly_io::source::{ParticleSource, SourceOptions};
use drgnfly_io::star::write_star;

use super::export::{self, ExportInputs};

/// Write a RELION .star file for a particle stack with its CTF and poses.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly write-star particles.mrcs --ctf ctf.pkl --poses pose.pkl -o particles.star\n  drgnfly write-star particles.txt --ctf ctf.pkl --ind good.pkl --full-path -o good.star\n  drgnfly write-star particles.star --ind good.pkl -o good.star\n\nctf.pkl and pose.pkl must describe every image of the input, in order; --ind selects from all of them."
)]
pub struct Args {
    /// Particles: .mrcs stack, .txt list of stacks, or a .star file to subset.
    pub particles: PathBuf,
    /// Output .star file.
    #[arg(short = 'o', long = "output", alias = "outfile")]
    pub output: PathBuf,
    /// CTF parameters (ctf.pkl).
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Poses (pose.pkl).
    #[arg(long)]
    pub poses: Option<PathBuf>,
    /// Keep only these particles (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Directory holding the stacks named in a .txt or .star input.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Write absolute stack paths.
    #[arg(long)]
    pub full_path: bool,
    /// Write the RELION 3.0 layout (no optics table, origins in px).
    #[arg(long)]
    pub relion30: bool,
}

/// Build and write the .star file.
pub fn run(args: Args) -> Result<()> {
    if args.output.extension().is_none_or(|e| e != "star") {
        bail!("{}: the output must be a .star file", args.output.display());
    }
    let is_star = args.particles.extension().is_some_and(|e| e.eq_ignore_ascii_case("star"));
    if is_star {
        return subset_star(&args);
    }
    let ex = export::load(&ExportInputs {
        particles: &args.particles,
        ctf: args.ctf.as_deref(),
        poses: args.poses.as_deref(),
        ind: args.ind.as_deref(),
        datadir: args.datadir.as_deref(),
        full_path: args.full_path,
    })?;
    let d = ex.d as f64;
    let rec = ParticleRecords {
        image_names: ex.images.iter().map(|&(s, i)| format_image_name(i, &ex.stack_paths[s])).collect(),
        euler_deg: ex.poses.as_ref().map(|p| p.rot.iter().map(|r| euler_from_matrix(&from_f32(r))).collect()),
        origin_px: ex
            .poses
            .as_ref()
            .and_then(|p| p.trans.as_ref())
            .map(|t| t.iter().map(|t| [f64::from(t[0]) * d, f64::from(t[1]) * d]).collect()),
        ctf: ex.ctf,
        image_size: Some(d),
        apix: ex.header_apix.map(f64::from),
    };
    let version = if args.relion30 { RelionVersion::Relion30 } else { RelionVersion::Relion31 };
    write_relion(&args.output, &rec, version)?;
    say!(
        "{}: {} particles (RELION {}), box {} px{}{}",
        args.output.display(),
        rec.image_names.len(),
        if args.relion30 { "3.0" } else { "3.1" },
        ex.d,
        if rec.ctf.is_some() { ", with CTF" } else { "" },
        if rec.euler_deg.is_some() { ", with poses" } else { "" },
    );
    Ok(())
}

/// A .star input: check its image references, then keep the `--ind` rows in its own layout.
fn subset_star(args: &Args) -> Result<()> {
    if args.ctf.is_some() || args.poses.is_some() {
        bail!("--ctf and --poses apply to .mrcs/.txt inputs; a .star file already holds its CTF and poses");
    }
    let star = RelionParticles::open(&args.particles)?;
    if args.relion30 && star.version() == RelionVersion::Relion31 {
        bail!("--relion30 applies to .mrcs/.txt inputs; a .star input is subset in its own layout (RELION 3.1 here)");
    }
    // Opening the images checks that every N@path exists, so the output never points past a stack.
    ParticleSource::open(&args.particles, &SourceOptions { datadir: args.datadir.clone(), ind: None })?;
    let rows: Vec<usize> = match &args.ind {
        Some(p) => Selection::load(p)?.resolve(star.len())?,
        None => (0..star.len()).collect(),
    };
    let out = star.filter_particles(&rows)?;
    write_star(&args.output, &out)?;
    say!("{}: {} of {} particles", args.output.display(), rows.len(), star.len());
    Ok(())
}
