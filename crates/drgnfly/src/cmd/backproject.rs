//! `backproject` (cryoDRGN `backproject_voxel`): a map from particles with known poses (and CTF) by direct
//! Fourier backprojection, plus half maps and their FSC. Used to check poses, CTF and contrast before
//! training.
//!
//! Images are streamed in batches from the input (bounded memory), inverted unless `--uninvert-data`
//! (raw particles are dark, see [`drgnfly_em::simulate`]), Hartley-transformed without window or
//! normalization (cryoDRGN's `backproject_voxel` reads with `norm = (0, 1)` and no window), translated by
//! the pose shift and splatted ([`drgnfly_em::backproject`]).
//!
//! Conventions: pose.pkl translations are fractions of the box, converted to pixels with **D** (cryoDRGN
//! uses D + 1, see the `drgnfly-em` crate docs). ctf.pkl and pose.pkl describe every particle of the
//! input, in order; `--ind` and `--first` select from all of them. Pixel size: ctf.pkl (`Apix₀·D₀/D` of
//! row 0), else the stack header, else 1 Å/px. Half maps take alternating images (even/odd positions).
//!
//! Outputs in `-o DIR`: `backproject.mrc`, `half_map_a.mrc`, `half_map_b.mrc`, `fsc-vals.txt` and
//! `fsc-plot.png` (the half-map FSC; not with `--no-half-maps`).
//!
//! Example usage:
//!   drgnfly backproject particles.mrcs --poses pose.pkl --ctf ctf.pkl -o bp/
//!   drgnfly backproject particles.star --poses pose.pkl --ctf ctf.pkl --ind good.pkl --ctf-alg flip -o bp/

use std::io::Write;
use std::path::PathBuf;

use anyhow::{Context, Result};
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_em::backproject::{BackprojectConfig, Backprojector, CtfAlg};
use drgnfly_em::ctf::CtfParams;
use drgnfly_em::pose::Pose;
use drgnfly_em::preprocess::{Normalization, PreprocessConfig, Preprocessor};
use drgnfly_io::pickle::{self, load_poses};
use drgnfly_io::source::StreamOptions;

use super::maps::{resolution_line, write_fsc, write_map};
use super::particles::{self, check_rows, ParticleInput, Particles};
use crate::progress::Progress;

/// How the CTF enters (`--ctf-alg`).
#[derive(Clone, Copy, Debug, ValueEnum)]
pub enum CtfAlgArg {
    /// Σ y·c / Σ c² (Wiener-like).
    Mul,
    /// Σ y·sign(c) / Σ 1 (phase flipping).
    Flip,
}

/// Backproject particles with known poses into a map.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly backproject particles.mrcs --poses pose.pkl --ctf ctf.pkl -o bp/\n  drgnfly backproject particles.star --poses pose.pkl --ctf ctf.pkl --ind good.pkl --ctf-alg flip -o bp/\n\nWrites backproject.mrc, half_map_a.mrc, half_map_b.mrc, fsc-vals.txt and fsc-plot.png in the output directory."
)]
pub struct Args {
    /// Particles (.mrcs, .txt, .star, .cs).
    pub particles: PathBuf,
    /// Poses (pose.pkl; translations as fractions of the box).
    #[arg(long)]
    pub poses: PathBuf,
    /// CTF parameters (ctf.pkl).
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Output directory.
    #[arg(short = 'o', long = "outdir")]
    pub outdir: PathBuf,
    /// How the CTF is used.
    #[arg(long, value_enum, default_value_t = CtfAlgArg::Mul)]
    pub ctf_alg: CtfAlgArg,
    /// Regularisation λ added as λ·mean(weights) to the weights.
    #[arg(long, default_value_t = 1.0)]
    pub reg_weight: f64,
    /// Keep only these particles (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Directory holding the stacks named in a .txt/.star/.cs input.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Do not multiply the images by −1 (by default they are, as in cryoDRGN: raw particles are dark).
    #[arg(long)]
    pub uninvert_data: bool,
    /// Use only the first N particles (after --ind).
    #[arg(long, value_name = "N")]
    pub first: Option<usize>,
    /// Skip the half maps and their FSC.
    #[arg(long)]
    pub no_half_maps: bool,
    /// Images per batch.
    #[arg(short = 'b', long, default_value_t = 1000)]
    pub batch_size: usize,
}

/// Backproject and write the maps.
pub fn run(args: Args) -> Result<()> {
    let Particles { source, n_rows } = particles::open(&ParticleInput {
        path: &args.particles,
        datadir: args.datadir.as_ref(),
        ind: args.ind.as_ref(),
        first: args.first,
    })?;
    let d = source.box_size();
    let poses = load_poses(&args.poses)?;
    check_rows(&args.poses, "poses", poses.len(), &args.particles, n_rows)?;
    if poses.trans.is_none() {
        tracing::info!("{}: rotations only; images are not translated", args.poses.display());
    }
    let ctf_rows = match &args.ctf {
        Some(p) => {
            let rows = pickle::load_ctf(p)?;
            check_rows(p, "CTF rows", rows.len(), &args.particles, n_rows)?;
            Some((p, rows))
        }
        None => None,
    };
    // Pixel size: ctf.pkl (cryoDRGN's D₀·Apix₀/D from row 0), else the header, else 1.
    let apix = match ctf_rows.as_ref().and_then(|(_, r)| r.first()) {
        Some(r) => CtfParams::from_pkl_row(*r, d, 0)?.angpix,
        None => source.header_apix().unwrap_or_else(|| {
            tracing::warn!("no ctf.pkl and no pixel size in the stack header; writing 1 Å/px");
            1.0
        }),
    };

    let cfg = BackprojectConfig {
        ctf_alg: match args.ctf_alg {
            CtfAlgArg::Mul => CtfAlg::Mul,
            CtfAlgArg::Flip => CtfAlg::Flip,
        },
        reg_weight: args.reg_weight,
        half_maps: !args.no_half_maps,
        ..BackprojectConfig::new(d)
    };
    let bp = Backprojector::new(cfg)?;
    let pre = Preprocessor::new(
        d,
        &PreprocessConfig { window_r: None, invert: !args.uninvert_data },
        Normalization { mean: 0.0, std: 1.0 },
    )?;
    let mut acc = bp.accumulator();
    let m = (d + 1) * (d + 1);
    let mut hts = Vec::new();
    let mut progress = Progress::new("backproject", source.len() as u64, "images");
    for batch in source.stream(&StreamOptions::ordered(args.batch_size.max(1), d)) {
        let batch = batch?;
        let b = batch.positions.len();
        hts.resize(b * m, 0.0);
        let first = batch.positions.first().copied().unwrap_or(0);
        pre.process_batch(&batch.images, &mut hts)
            .with_context(|| format!("particles {first}–{} of {}", first + b, args.particles.display()))?;
        // Positions were range-checked when the source opened, and the metadata has one row per file row.
        let rows: Vec<usize> = batch.positions.iter().map(|&p| source.row_of(p).unwrap_or(p)).collect();
        let batch_poses: Vec<Pose> = rows
            .iter()
            .map(|&r| Pose::from_pkl(&poses.rot[r], poses.trans.as_ref().map(|t| t[r]), d))
            .collect();
        let batch_ctf: Option<Vec<CtfParams>> = match &ctf_rows {
            Some((path, c)) => Some(
                rows.iter()
                    // All rows at row 0's pixel size, as cryoDRGN's load_ctf_for_training.
                    .map(|&r| CtfParams::from_pkl_row(c[r], d, r).map(|p| CtfParams { angpix: apix, ..p }))
                    .collect::<drgnfly_em::Result<_>>()
                    .with_context(|| path.display().to_string())?,
            ),
            None => None,
        };
        bp.add_batch(&mut acc, &hts, &batch_poses, batch_ctf.as_deref())
            .with_context(|| format!("particles {first}–{} of {}", first + b, args.particles.display()))?;
        progress.inc(b as u64);
    }
    let secs = progress.finish().as_secs_f64();
    let rec = bp.finish(&acc)?;

    std::fs::create_dir_all(&args.outdir).with_context(|| format!("creating {}", args.outdir.display()))?;
    let out = |name: &str| args.outdir.join(name);
    write_map(&out("backproject.mrc"), &rec.volume, d, apix)?;
    let mut written = vec!["backproject.mrc"];
    let mut summary = String::new();
    if let Some((a, b, curve)) = &rec.halves {
        write_map(&out("half_map_a.mrc"), a, d, apix)?;
        write_map(&out("half_map_b.mrc"), b, d, apix)?;
        write_fsc(
            curve,
            Some(&out("fsc-vals.txt")),
            Some(&out("fsc-plot.png")),
            "half-map FSC",
            f64::from(apix),
        )?;
        written.extend(["half_map_a.mrc", "half_map_b.mrc", "fsc-vals.txt", "fsc-plot.png"]);
        summary = format!("half-map {}", resolution_line(curve, f64::from(apix)));
    }
    say!(
        "{}: {} images ({d}×{d}, {apix} Å/px) in {secs:.1} s; wrote {}",
        args.outdir.display(),
        acc.len(),
        written.join(", ")
    );
    if !summary.is_empty() {
        writeln!(std::io::stdout().lock(), "{summary}")?;
    }
    Ok(())
}
