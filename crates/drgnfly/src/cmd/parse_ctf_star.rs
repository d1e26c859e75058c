//! `parse-ctf-star`: RELION CTF parameters → cryoDRGN ctf.pkl (`float32 (N, 9)`).
//!
//! Columns (reference §2.7): box D₀ (px), Å/px, defocus U, V (Å), defocus angle (°), voltage (kV), Cs (mm),
//! amplitude contrast, phase shift (°). Values come per particle from the particle table, else from its
//! optics group; `-D`, `--Apix`, `--kv`, `--cs`, `-w`, `--ps` replace a column for every particle.
//!
//! Example usage:
//!   drgnfly parse-ctf-star particles.star -o ctf.pkl
//!   drgnfly parse-ctf-star run_data.star -D 300 --Apix 1.035 -w 0.1 -o ctf.pkl

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_io::pickle;
use drgnfly_io::relion::{CtfOverrides, RelionParticles};

/// Flags that supply or replace CTF columns (shared with `parse-star`).
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct CtfFlags {
    /// Box size of the original particles (px); default: _rlnImageSize.
    #[arg(short = 'D', value_name = "BOX")]
    pub d: Option<u32>,
    /// Pixel size of the original particles (Å); default: _rlnImagePixelSize.
    #[arg(long = "Apix", alias = "apix")]
    pub apix: Option<f64>,
    /// Accelerating voltage (kV); default: _rlnVoltage.
    #[arg(long = "kv")]
    pub kv: Option<f64>,
    /// Spherical aberration (mm); default: _rlnSphericalAberration.
    #[arg(long = "cs")]
    pub cs: Option<f64>,
    /// Amplitude contrast; default: _rlnAmplitudeContrast.
    #[arg(short = 'w')]
    pub w: Option<f64>,
    /// Phase shift (degrees); default: _rlnPhaseShift.
    #[arg(long = "ps")]
    pub ps: Option<f64>,
}

impl CtfFlags {
    /// The overrides as the library takes them.
    pub fn overrides(&self) -> CtfOverrides {
        CtfOverrides {
            d: self.d.map(f64::from),
            apix: self.apix,
            kv: self.kv,
            cs: self.cs,
            w: self.w,
            ps: self.ps,
        }
    }
}

/// Extract CTF parameters from a RELION .star file into a cryoDRGN ctf.pkl.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly parse-ctf-star particles.star -o ctf.pkl\n  drgnfly parse-ctf-star run_data.star -D 300 --Apix 1.035 -w 0.1 -o ctf.pkl\n\nRELION 3.0 files have no _rlnImageSize: pass -D with the box of the ORIGINAL particles."
)]
pub struct Args {
    /// RELION particle .star file (3.0 or 3.1+ with optics groups).
    pub input: PathBuf,
    /// Output ctf.pkl.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    #[command(flatten)]
    pub ctf: CtfFlags,
}

/// ctf.pkl rows of `star` in float32.
pub fn ctf_from_star(star: &RelionParticles, flags: &CtfFlags) -> Result<Vec<[f32; 9]>> {
    if flags.overrides().ps.is_none() && !star.has_column("_rlnPhaseShift") {
        tracing::info!(
            "note: {} has no _rlnPhaseShift: phase shift 0°, as RELION reads it (pass --ps otherwise)",
            star.path().display()
        );
    }
    Ok(star.ctf_params(&flags.overrides())?.iter().map(|r| r.map(|v| v as f32)).collect())
}

/// One-line description of the first CTF row, for the summaries on stderr.
pub fn describe_first_ctf(ctf: &[[f32; 9]]) -> String {
    match ctf.first() {
        Some(c) => format!(
            "box {} px, {} Å/px; first row: defocus {}/{} Å at {}°, {} kV, Cs {} mm, w {}, phase {}°",
            c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7], c[8]
        ),
        None => "no particles".to_string(),
    }
}

/// Parse the file and write ctf.pkl.
pub fn run(args: Args) -> Result<()> {
    let star = RelionParticles::open(&args.input)?;
    super::require_rows(star.len(), &args.input)?;
    let ctf = ctf_from_star(&star, &args.ctf)?;
    pickle::write_ctf(&args.output, &ctf)?;
    say!("{}: {} particles, {}", args.output.display(), ctf.len(), describe_first_ctf(&ctf));
    Ok(())
}
