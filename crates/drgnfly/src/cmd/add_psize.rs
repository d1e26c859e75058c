//! `add-psize`: write the pixel size (Å/px) into an MRC header.

use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_io::mrc;

/// Set the pixel size in the header of an MRC map or stack, in place or into a copy.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly add-psize vol.mrc --Apix 1.35\n  drgnfly add-psize vol.mrc --Apix 1.35 -o vol_apix.mrc"
)]
pub struct Args {
    /// The .mrc/.mrcs file.
    pub input: PathBuf,
    /// Pixel size in Å/px.
    #[arg(long = "Apix", alias = "apix")]
    pub apix: f32,
    /// Write a copy with the new header instead of editing the input in place.
    #[arg(short = 'o', long = "output")]
    pub output: Option<PathBuf>,
}

/// Rewrite the cell so that every axis reads back as `apix`.
pub fn run(args: Args) -> Result<()> {
    if !(args.apix.is_finite() && args.apix > 0.0) {
        bail!("--Apix {} is not a positive pixel size in Å", args.apix);
    }
    let target = match &args.output {
        Some(out) => {
            // Copy, edit and rename into place; a failure leaves neither the temporary file nor a
            // message naming it.
            let out = drgnfly_io::atomic::output_path(out)?;
            let tmp = drgnfly_io::atomic::temp_path(&out);
            let edited = std::fs::copy(&args.input, &tmp)
                .with_context(|| format!("copying {} to {}", args.input.display(), out.display()))
                .and_then(|_| {
                    mrc::set_voxel_size(&tmp, args.apix).map_err(|e| {
                        let text = e
                            .to_string()
                            .replace(&tmp.display().to_string(), &args.input.display().to_string());
                        anyhow::anyhow!(text)
                    })
                })
                .and_then(|()| {
                    std::fs::rename(&tmp, &out).with_context(|| format!("writing {}", out.display()))
                });
            if edited.is_err() {
                let _ = std::fs::remove_file(&tmp);
            }
            edited?;
            out
        }
        None => {
            mrc::set_voxel_size(&args.input, args.apix)?;
            args.input.clone()
        }
    };
    let h = mrc::read_header(&target)?;
    let vs = h.voxel_size();
    say!("{}: voxel size now {} {} {} Å", target.display(), vs[0], vs[1], vs[2]);
    Ok(())
}
