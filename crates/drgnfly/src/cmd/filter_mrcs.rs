//! `filter-mrcs`: copy the `--ind` images of a particle stack into a new .mrcs, streaming in bounded
//! chunks (memory does not grow with the stack). Images come out in the order of `--ind`, as float32,
//! with the input's pixel size.
//!
//! Example usage:
//!   drgnfly filter-mrcs particles.mrcs --ind good.pkl -o good.mrcs

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_io::mrc::{MrcDtype, MrcStackWriter};
use drgnfly_io::selection::Selection;
use drgnfly_io::source::{ParticleSource, SourceOptions};

use crate::progress::Progress;

/// Bytes of images held at once.
const CHUNK_BYTES: usize = 64 << 20;

/// Subset a particle stack with an index selection.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly filter-mrcs particles.mrcs --ind good.pkl -o good.mrcs")]
pub struct Args {
    /// Particle stack (.mrcs; a .txt list of stacks works too).
    pub input: PathBuf,
    /// Images to keep (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: PathBuf,
    /// Output .mrcs stack.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
}

/// Copy the selected images.
pub fn run(args: Args) -> Result<()> {
    let all = ParticleSource::open(&args.input, &SourceOptions::default())?;
    let rows = Selection::load(&args.ind)?.resolve(all.len())?;
    let d = all.box_size();
    let apix = all.header_apix().unwrap_or(0.0);
    let chunk = (CHUNK_BYTES / (d * d * 4).max(1)).max(1);
    let mut writer = MrcStackWriter::create(&args.output, d, d, apix, MrcDtype::F32)?;
    let mut buf = vec![0.0f32; chunk.min(rows.len()) * d * d];
    let mut progress = Progress::new("filter-mrcs", rows.len() as u64, "images");
    for part in rows.chunks(chunk) {
        let out = &mut buf[..part.len() * d * d];
        all.read_many_into(part, out)?;
        writer.push_many(out)?;
        progress.inc(part.len() as u64);
    }
    writer.finish()?;
    let secs = progress.finish().as_secs_f64();
    say!("{}: {} of {} images ({d}×{d}) in {secs:.1} s", args.output.display(), rows.len(), all.len());
    Ok(())
}
