//! `flip-hand`: mirror a map by reversing its z axis (the first array axis, as cryoDRGN `flip_hand`),
//! which turns a reconstruction of the wrong handedness into the right one. Header geometry is kept.
//!
//! Example usage:
//!   drgnfly flip-hand vol.mrc vol_flipped.mrc

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_io::mrc::{read_volume, write_volume, MrcDtype};

/// Flip the handedness of a map.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly flip-hand vol.mrc vol_flipped.mrc")]
pub struct Args {
    /// Input map (.mrc).
    pub input: PathBuf,
    /// Output map (.mrc).
    pub output: PathBuf,
}

/// Write the map with its sections (z) in reverse order.
pub fn run(args: Args) -> Result<()> {
    let vol = read_volume(&args.input)?;
    let [_, ny, nx] = vol.shape;
    let section = (ny * nx).max(1);
    let flipped: Vec<f32> = vol.data.chunks_exact(section).rev().flatten().copied().collect();
    let apix = vol.header.known_apix().unwrap_or(0.0);
    write_volume(&args.output, &flipped, vol.shape, apix, vol.origin, MrcDtype::F32)?;
    say!("{}: z axis reversed ({} sections)", args.output.display(), vol.shape[0]);
    Ok(())
}
