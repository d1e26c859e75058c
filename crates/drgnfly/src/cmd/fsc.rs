//! `fsc`: Fourier shell correlation between two maps (cryoDRGN `fsc`), with an optional real-space mask.
//!
//! Prints the resolution where the curve crosses 0.5 and 0.143, in Å (pixel size from `--Apix`, else the
//! first map's header, else 1 Å/px) and in pixels, and the area under the curve (FSC-AUC in cycles/px, the
//! benchmarks' one-number summary). Writes cryoDRGN's `pixres fsc` table with `-o` and the
//! curve with `--plot`. Shells and crossings are [`drgnfly_em::fsc`]'s (cryoDRGN's table).
//!
//! Example usage:
//!   drgnfly fsc half_map_a.mrc half_map_b.mrc
//!   drgnfly fsc vol.mrc gt.mrc --mask mask.mrc -o fsc.txt --plot fsc.png

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_em::fsc::fsc;

use super::maps::{read_cubic, resolution_line, write_fsc};

/// FSC between two volumes.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly fsc half_map_a.mrc half_map_b.mrc\n  drgnfly fsc vol.mrc gt.mrc --mask mask.mrc -o fsc.txt --plot fsc.png --Apix 1.3"
)]
pub struct Args {
    /// First map (.mrc).
    pub vol1: PathBuf,
    /// Second map, same box.
    pub vol2: PathBuf,
    /// Real-space mask applied to both maps (e.g. from gen-mask).
    #[arg(long)]
    pub mask: Option<PathBuf>,
    /// Write the FSC table (`pixres fsc`, as cryoDRGN's fsc-vals.txt).
    #[arg(short = 'o', long = "output", alias = "outtxt")]
    pub output: Option<PathBuf>,
    /// Write the curve as a PNG.
    #[arg(long, alias = "plot-file")]
    pub plot: Option<PathBuf>,
    /// Pixel size in Å (default: the first map's header, else 1).
    #[arg(long = "Apix", value_name = "Å")]
    pub apix: Option<f64>,
}

/// Compute, print and write the FSC.
pub fn run(args: Args) -> Result<()> {
    let a = read_cubic(&args.vol1, "first volume")?;
    let b = read_cubic(&args.vol2, "second volume")?;
    if a.d != b.d {
        bail!(
            "{} is {}³ but {} is {}³; both maps need the same box (downsample one with `drgnfly downsample --is-vol`)",
            args.vol1.display(),
            a.d,
            args.vol2.display(),
            b.d
        );
    }
    let mask = match &args.mask {
        Some(p) => {
            let m = read_cubic(p, "mask")?;
            if m.d != a.d {
                bail!("{}: the mask is {}³ but the maps are {}³", p.display(), m.d, a.d);
            }
            Some(m.data)
        }
        None => None,
    };
    let apix = match args.apix {
        Some(x) if x.is_finite() && x > 0.0 => x,
        Some(x) => bail!("--Apix {x}: the pixel size must be a positive number of Å"),
        None => a.apix.map_or(1.0, f64::from),
    };
    let curve = fsc(&a.data, &b.data, a.d, mask.as_deref())?;
    write_fsc(&curve, args.output.as_deref(), args.plot.as_deref(), "FSC", apix)?;
    if args.output.is_none() {
        write!(std::io::stdout(), "{}", curve.to_text())?;
    }
    writeln!(std::io::stdout(), "{}", resolution_line(&curve, apix))?;
    Ok(())
}
