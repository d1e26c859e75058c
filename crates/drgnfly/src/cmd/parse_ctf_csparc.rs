//! `parse-ctf-csparc`: cryoSPARC CTF parameters → cryoDRGN ctf.pkl (`float32 (N, 9)`).
//!
//! Reads `ctf/df1_A`, `ctf/df2_A`, `ctf/df_angle_rad` (→ °), `ctf/accel_kv`, `ctf/cs_mm`,
//! `ctf/amp_contrast`, `ctf/phase_shift_rad` (→ °), the box from `blob/shape` and the pixel size from
//! `blob/psize_A` (reference §2.7). Higher-order aberrations are not part of ctf.pkl and are ignored.
//!
//! Example usage:
//!   drgnfly parse-ctf-csparc cryosparc_P12_J24_001_particles.cs -o ctf.pkl
//!   drgnfly parse-ctf-csparc particles.cs -D 256 --Apix 1.1 -o ctf.pkl

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_io::cs::CsFile;
use drgnfly_io::pickle;

use super::parse_ctf_star::describe_first_ctf;

/// Extract CTF parameters from a cryoSPARC .cs file into a cryoDRGN ctf.pkl.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly parse-ctf-csparc cryosparc_P12_J24_001_particles.cs -o ctf.pkl\n  drgnfly parse-ctf-csparc particles.cs -D 256 --Apix 1.1 -o ctf.pkl"
)]
pub struct Args {
    /// cryoSPARC particle .cs file.
    pub input: PathBuf,
    /// Output ctf.pkl.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Box size of the particles (px); default: blob/shape.
    #[arg(short = 'D', value_name = "BOX")]
    pub d: Option<u32>,
    /// Pixel size (Å); default: blob/psize_A.
    #[arg(long = "Apix", alias = "apix")]
    pub apix: Option<f64>,
}

/// Parse the file and write ctf.pkl.
pub fn run(args: Args) -> Result<()> {
    let cs = CsFile::open(&args.input)?;
    super::require_rows(cs.len(), &args.input)?;
    let ctf: Vec<[f32; 9]> =
        cs.ctf_params(args.d.map(f64::from), args.apix)?.iter().map(|r| r.map(|v| v as f32)).collect();
    pickle::write_ctf(&args.output, &ctf)?;
    say!("{}: {} particles, {}", args.output.display(), ctf.len(), describe_first_ctf(&ctf));
    Ok(())
}
