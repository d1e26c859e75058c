//! `gen-mask`: a soft solvent mask from a map (cryoDRGN `gen_mask`): threshold → dilate → cosine edge.
//!
//! - threshold: `--thresh`, default half the 99.99th percentile of the densities;
//! - dilation by `--dilate` Å (default 25) and a cosine edge `--dist` Å wide (default 15), converted to
//!   voxels with the pixel size from `--Apix`, else the header, else 1 Å/px (cryoDRGN's defaults; see
//!   [`drgnfly_em::mask::CosineDilationMask`] for the exact semantics).
//!
//! Works on non-cubic maps. The mask keeps the input's pixel size and origin.
//!
//! Example usage:
//!   drgnfly gen-mask vol.mrc mask.mrc
//!   drgnfly gen-mask vol.mrc mask.mrc --thresh 0.02 --dilate 10 --dist 6

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_em::mask::CosineDilationMask;
use drgnfly_io::mrc::{read_volume, write_volume, MrcDtype};

/// Make a soft mask from a map.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly gen-mask vol.mrc mask.mrc\n  drgnfly gen-mask vol.mrc mask.mrc --thresh 0.02 --dilate 10 --dist 6 --Apix 1.5"
)]
pub struct Args {
    /// Input map (.mrc).
    pub input: PathBuf,
    /// Output mask (.mrc).
    pub output: PathBuf,
    /// Density threshold (default: half the 99.99th percentile).
    #[arg(long, allow_negative_numbers = true)]
    pub thresh: Option<f32>,
    /// Dilate the thresholded region by this distance (Å).
    #[arg(long, default_value_t = 25.0, value_name = "Å")]
    pub dilate: f32,
    /// Width of the cosine soft edge (Å).
    #[arg(long, default_value_t = 15.0, value_name = "Å")]
    pub dist: f32,
    /// Pixel size in Å (default: the header, else 1).
    #[arg(long = "Apix", value_name = "Å")]
    pub apix: Option<f32>,
}

/// Compute and write the mask.
pub fn run(args: Args) -> Result<()> {
    let vol = read_volume(&args.input)?;
    let apix = match (args.apix, vol.header.known_apix()) {
        (Some(a), _) => a,
        (None, Some(a)) => a,
        (None, None) => {
            tracing::warn!(
                "{}: no pixel size in the header; using 1 Å/px (pass --Apix)",
                args.input.display()
            );
            1.0
        }
    };
    if args.thresh.is_some_and(|t| !t.is_finite()) {
        bail!("--thresh must be a finite density value");
    }
    let m = CosineDilationMask::from_angstrom(args.thresh, args.dilate, args.dist, apix)?;
    let threshold = m.threshold_for(&vol.data)?;
    let mask = m.compute(&vol.data, vol.shape)?;
    write_volume(&args.output, &mask, vol.shape, apix, vol.origin, MrcDtype::F32)?;
    let inside = mask.iter().filter(|&&v| v >= 0.5).count();
    say!(
        "{}: threshold {threshold:.6}, dilation {} px, edge {:.2} px; {inside} of {} voxels ≥ 0.5",
        args.output.display(),
        m.dilate_px,
        m.edge_px,
        mask.len()
    );
    Ok(())
}
