//! `invert-contrast`: multiply a map by −1 (cryoDRGN `invert_contrast`), keeping its header geometry.
//!
//! Example usage:
//!   drgnfly invert-contrast vol.mrc vol_inverted.mrc

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_io::mrc::{read_volume, write_volume, MrcDtype};

/// Invert the contrast of a map.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly invert-contrast vol.mrc vol_inverted.mrc")]
pub struct Args {
    /// Input map (.mrc).
    pub input: PathBuf,
    /// Output map (.mrc).
    pub output: PathBuf,
}

/// Write `−input`.
pub fn run(args: Args) -> Result<()> {
    let mut vol = read_volume(&args.input)?;
    vol.data.iter_mut().for_each(|v| *v = -*v);
    let apix = vol.header.known_apix().unwrap_or(0.0);
    write_volume(&args.output, &vol.data, vol.shape, apix, vol.origin, MrcDtype::F32)?;
    say!("{}: contrast inverted", args.output.display());
    Ok(())
}
