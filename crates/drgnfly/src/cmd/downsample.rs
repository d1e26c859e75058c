//! `downsample`: Fourier-crop particles (or a map with `--is-vol`) from box D₀ to an even D < D₀
//! ([`drgnfly_em::downsample`]: cryoDRGN's scaling, pixel values ×(D₀/D)², ×(D₀/D)³ for maps), streaming
//! the images in batches so memory does not grow with the stack. The pixel size written to the headers is
//! `Apix₀·D₀/D` (Apix₀ from the input header, or from the .star optics table when the header has none).
//!
//! Outputs, by the extension of `-o`:
//! - `.mrcs`/`.mrc`: one stack; with `--chunk N`, stacks `out.0.mrcs`, `out.1.mrcs`, … of N images each
//!   and the list `out.txt`;
//! - `.txt`: stacks `out.0.mrcs`, … (one unless `--chunk`) and the list `out.txt`;
//! - `.star` (from a .star input): stacks as for `.txt` (`out.mrcs` without `--chunk`) and a copy of the
//!   input's tables whose `_rlnImageName` points at the new stacks, with `_rlnImagePixelSize` /
//!   `_rlnDetectorPixelSize` scaled by D₀/D, `_rlnImageSize` = D, and pixel origins (`_rlnOriginX/Y`,
//!   RELION 3.0) scaled by D/D₀ (origins in Å are unchanged).
//!
//! Stack paths in the `.txt`/`.star` are relative to the list's directory, where the stacks are written.
//! `--ind` keeps the selected particles, in order.
//!
//! Example usage:
//!   drgnfly downsample particles.mrcs -D 64 -o particles.64.mrcs
//!   drgnfly downsample particles.star -D 128 -o ds/particles.128.star --chunk 50000
//!   drgnfly downsample map.mrc -D 64 --is-vol -o map.64.mrc

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_em::downsample::Downsampler;
use drgnfly_io::atomic::write_atomic;
use drgnfly_io::mrc::{MrcDtype, MrcStackWriter};
use drgnfly_io::relion::{format_image_name, RelionParticles};
use drgnfly_io::selection::Selection;
use drgnfly_io::source::{SourceKind, StreamOptions};
use drgnfly_io::star::{write_star, Block, LoopBuilder, StarFile};

use super::maps::{read_cubic, write_map};
use super::particles::{self, check_finite_pixels, ParticleInput, Particles};
use crate::progress::Progress;

/// Downsample images or a map by Fourier cropping.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly downsample particles.mrcs -D 64 -o particles.64.mrcs\n  drgnfly downsample particles.star -D 128 -o ds/particles.128.star --chunk 50000\n  drgnfly downsample particles.txt -D 64 -o ds/particles.64.txt --chunk 10000\n  drgnfly downsample map.mrc -D 64 --is-vol -o map.64.mrc"
)]
pub struct Args {
    /// Particles (.mrcs, .txt, .star, .cs) or, with --is-vol, a map (.mrc).
    pub input: PathBuf,
    /// New box size (even, smaller than the input's).
    #[arg(short = 'D')]
    pub d: usize,
    /// Output: .mrcs/.mrc, .txt (list of stacks) or .star (from a .star input).
    #[arg(short = 'o', long = "outfile", alias = "output")]
    pub output: PathBuf,
    /// The input is a map, not images.
    #[arg(long)]
    pub is_vol: bool,
    /// Images per output stack (writes out.0.mrcs, out.1.mrcs, … and out.txt).
    #[arg(long, value_name = "N")]
    pub chunk: Option<usize>,
    /// Images per batch (memory: about 2 × batch × D₀² × 4 bytes).
    #[arg(short = 'b', long, default_value_t = 1000)]
    pub batch_size: usize,
    /// Directory holding the stacks named in a .txt/.star/.cs input.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Keep only these particles (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: Option<PathBuf>,
}

/// Downsample and write.
pub fn run(args: Args) -> Result<()> {
    if let Some(dir) = args.output.parent().filter(|p| !p.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    if args.is_vol {
        return volume(&args);
    }
    let ext = extension(&args.output);
    if !matches!(ext.as_str(), "mrcs" | "mrc" | "txt" | "star") {
        bail!("{}: the output must end in .mrcs, .mrc, .txt or .star", args.output.display());
    }
    if args.chunk == Some(0) {
        bail!("--chunk 0: give the number of images per output stack (≥ 1)");
    }
    let Particles { source, .. } = particles::open(&ParticleInput {
        path: &args.input,
        datadir: args.datadir.as_ref(),
        ind: args.ind.as_ref(),
        first: None,
    })?;
    let star = match (ext.as_str(), source.kind()) {
        ("star", SourceKind::Star) => Some(RelionParticles::open(&args.input)?),
        ("star", _) => bail!(
            "{}: a .star output needs a .star input (its tables are copied); write .mrcs or .txt instead",
            args.input.display()
        ),
        _ => None,
    };
    let d0 = source.box_size();
    let ds = downsampler(d0, args.d, &args.input)?;
    let apix0 = source.header_apix().or_else(|| star_apix(star.as_ref()));
    let apix = apix0.map_or(0.0, |a| ds.apix(f64::from(a)) as f32);
    if apix0.is_none() {
        tracing::warn!(
            "{}: no pixel size known; the output headers say 0 (set it with add-psize)",
            args.input.display()
        );
    }

    // Where the images go: one stack, or numbered chunks listed in a .txt.
    let n = source.len();
    let dir = args.output.parent().map(Path::to_path_buf).unwrap_or_default();
    let stem = args.output.file_stem().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default();
    let numbered = args.chunk.is_some() || ext == "txt";
    let per_stack = if numbered { args.chunk.unwrap_or(n).max(1) } else { n.max(1) };
    let stack_names: Vec<String> = if numbered {
        (0..n.div_ceil(per_stack)).map(|k| format!("{stem}.{k}.mrcs")).collect()
    } else if ext == "star" {
        vec![format!("{stem}.mrcs")]
    } else {
        vec![args.output.file_name().map(|s| s.to_string_lossy().into_owned()).unwrap_or_default()]
    };

    let mut progress = Progress::new("downsample", n as u64, "images");
    let mut out = Vec::new();
    let mut writer: Option<MrcStackWriter> = None;
    let mut stack = 0;
    for batch in source.stream(&StreamOptions::ordered(args.batch_size.max(1), d0)) {
        let batch = batch?;
        check_finite_pixels(&batch.images, &batch.positions, d0, &args.input)?;
        out.resize(batch.positions.len() * args.d * args.d, 0.0);
        ds.images(&batch.images, &mut out)?;
        for img in out.chunks_exact(args.d * args.d) {
            if writer.as_ref().is_some_and(|w| w.len() == per_stack) {
                if let Some(w) = writer.take() {
                    w.finish()?;
                }
                stack += 1;
            }
            if writer.is_none() {
                let name = stack_names.get(stack).context("more images than the stacks planned")?;
                writer = Some(MrcStackWriter::create(dir.join(name), args.d, args.d, apix, MrcDtype::F32)?);
            }
            if let Some(w) = writer.as_mut() {
                w.push(img)?;
            }
        }
        progress.inc(batch.positions.len() as u64);
    }
    if let Some(w) = writer.take() {
        w.finish()?;
    }
    let secs = progress.finish().as_secs_f64();

    if numbered && ext != "star" {
        let list_path = if ext == "txt" { args.output.clone() } else { dir.join(format!("{stem}.txt")) };
        write_atomic(&list_path, format!("{}\n", stack_names.join("\n")).as_bytes())?;
        say!("{}: lists {} stacks", list_path.display(), stack_names.len());
    }
    if let Some(star) = &star {
        let rows: Vec<usize> = match &args.ind {
            Some(p) => Selection::load(p)?.resolve(star.len())?,
            None => (0..star.len()).collect(),
        };
        let name_of = |pos: usize| format_image_name((pos % per_stack) as u64, &stack_names[pos / per_stack]);
        let out_star = rescale_star(&star.filter_particles(&rows)?, &args.output, d0, args.d, name_of)?;
        write_star(&args.output, &out_star)?;
    }
    say!(
        "{}: {n} images {d0}→{} px ({} → {apix:.4} Å/px) in {secs:.1} s",
        args.output.display(),
        args.d,
        apix0.map_or("unknown".to_string(), |a| format!("{a:.4}")),
    );
    Ok(())
}

/// `--is-vol`: crop a cubic map.
fn volume(args: &Args) -> Result<()> {
    let m = read_cubic(&args.input, "map")?;
    let ds = downsampler(m.d, args.d, &args.input)?;
    let apix = m.apix.map_or(0.0, |a| ds.apix(f64::from(a)) as f32);
    write_map(&args.output, &ds.volume(&m.data)?, args.d, apix)?;
    say!("{}: {}³ → {}³, {apix:.4} Å/px", args.output.display(), m.d, args.d);
    Ok(())
}

fn downsampler(d0: usize, d: usize, input: &Path) -> Result<Downsampler> {
    if !d.is_multiple_of(2) || d == 0 {
        bail!("-D {d}: the new box size must be even and positive");
    }
    if d >= d0 {
        bail!("-D {d}: {} has box {d0}; downsampling needs an even D smaller than {d0}", input.display());
    }
    Ok(Downsampler::new(d0, d)?)
}

fn extension(p: &Path) -> String {
    p.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default()
}

/// The pixel size of the first particle of a .star input, when it has one.
fn star_apix(star: Option<&RelionParticles>) -> Option<f32> {
    let a = star?.pixel_size(None).ok()?;
    a.first().map(|&a| a as f32).filter(|a| a.is_finite() && *a > 0.0)
}

/// A copy of `star` for the downsampled images: image names from `name_of(position)` and sizes rescaled
/// (see the module docs).
fn rescale_star(
    star: &StarFile,
    path: &Path,
    d0: usize,
    d: usize,
    name_of: impl Fn(usize) -> String,
) -> Result<StarFile> {
    let up = d0 as f64 / d as f64;
    let mut out = StarFile::new(path);
    for b in star.blocks() {
        let mut nb = Block::new(b.name());
        nb.set_version(b.version());
        for (k, v) in b.pairs() {
            nb.push_pair(k, v.clone());
        }
        for l in b.loops() {
            let cols = l.columns();
            let mut lb = LoopBuilder::new(cols.iter());
            let mut row: Vec<String> = Vec::with_capacity(cols.len());
            for r in 0..l.len() {
                row.clear();
                for (c, cell) in cols.iter().zip(l.row(r)) {
                    let scaled = |f: f64| -> Result<String> {
                        let v: f64 = cell.parse().map_err(|_| {
                            anyhow::anyhow!(
                                "{}: {} `{cell}` is not a number",
                                star.path().display(),
                                l.cell_record(r, c)
                            )
                        })?;
                        Ok(format!("{:.6}", v * f))
                    };
                    row.push(match c.as_str() {
                        "_rlnImageName" => name_of(r),
                        "_rlnImageSize" => d.to_string(),
                        "_rlnImagePixelSize" | "_rlnDetectorPixelSize" => scaled(up)?,
                        "_rlnOriginX" | "_rlnOriginY" => scaled(1.0 / up)?,
                        _ => cell.to_string(),
                    });
                }
                lb.push_row(&row)?;
            }
            nb.push_loop(lb.finish());
        }
        out.push_block(nb);
    }
    Ok(out)
}
