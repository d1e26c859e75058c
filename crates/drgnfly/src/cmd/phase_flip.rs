//! `phase-flip`: multiply each image's Fourier transform by the sign of its CTF (cryoDRGN `phase_flip`),
//! streaming the stack in batches.
//!
//! The CTF is real and even (`CTF(k) = CTF(−k)`), so multiplying the centred Hartley transform by
//! `sign(CTF)` is the same as multiplying the Fourier transform ([`drgnfly_em::hartley`]). It is evaluated
//! on the `D × D` grid of the images, `k = ((x − D/2)/D, (y − D/2)/D)` cycles/px, with each row's pixel
//! size `Apix₀·D₀/D` ([`CtfParams::from_pkl_row`]). Zeros of the CTF become 0. ctf.pkl describes every
//! image of the input, in order; `--ind` selects from both.
//!
//! Example usage:
//!   drgnfly phase-flip particles.mrcs ctf.pkl -o flipped.mrcs

use std::path::PathBuf;

use anyhow::Result;
use clap::Args as ClapArgs;
use drgnfly_em::ctf::CtfParams;
use drgnfly_em::hartley::HartleyPlan;
use drgnfly_io::mrc::{MrcDtype, MrcStackWriter};
use drgnfly_io::pickle;
use drgnfly_io::source::StreamOptions;
use rayon::prelude::*;

use super::particles::{self, check_finite_pixels, check_rows, ParticleInput, Particles};
use crate::progress::Progress;

/// Phase-flip a particle stack.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly phase-flip particles.mrcs ctf.pkl -o flipped.mrcs\n  drgnfly phase-flip particles.star ctf.pkl --ind keep.pkl -o flipped.mrcs"
)]
pub struct Args {
    /// Particles (.mrcs, .txt, .star, .cs).
    pub particles: PathBuf,
    /// CTF parameters (ctf.pkl), one row per image of the input.
    pub ctf: PathBuf,
    /// Output stack (.mrcs).
    #[arg(short = 'o', long = "output", alias = "outfile")]
    pub output: PathBuf,
    /// Keep only these particles (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Directory holding the stacks named in a .txt/.star/.cs input.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Images per batch.
    #[arg(short = 'b', long, default_value_t = 1000)]
    pub batch_size: usize,
}

/// Flip and write.
pub fn run(args: Args) -> Result<()> {
    let Particles { source, n_rows } = particles::open(&ParticleInput {
        path: &args.particles,
        datadir: args.datadir.as_ref(),
        ind: args.ind.as_ref(),
        first: None,
    })?;
    let rows = pickle::load_ctf(&args.ctf)?;
    check_rows(&args.ctf, "CTF rows", rows.len(), &args.particles, n_rows)?;
    let d = source.box_size();
    let plan = HartleyPlan::new(d)?;
    let h = (d / 2) as f32;
    let freqs: Vec<f32> =
        (0..d * d).flat_map(|i| [((i % d) as f32 - h) / d as f32, ((i / d) as f32 - h) / d as f32]).collect();
    let apix = source.header_apix().unwrap_or(0.0);
    let mut writer = MrcStackWriter::create(&args.output, d, d, apix, MrcDtype::F32)?;
    let mut progress = Progress::new("phase-flip", source.len() as u64, "images");
    for batch in source.stream(&StreamOptions::ordered(args.batch_size.max(1), d)) {
        let mut batch = batch?;
        check_finite_pixels(&batch.images, &batch.positions, d, &args.particles)?;
        plan.ht2_center_batch(&mut batch.images)?;
        batch.images.par_chunks_mut(d * d).zip(&batch.positions).try_for_each_init(
            || vec![0.0f32; d * d],
            |sign, (img, &pos)| -> Result<()> {
                let row = source.row_of(pos).unwrap_or(pos);
                CtfParams::from_pkl_row(rows[row], d, row)?.compute_sign(&freqs, sign)?;
                img.iter_mut().zip(sign.iter()).for_each(|(v, s)| *v *= s);
                Ok(())
            },
        )?;
        plan.iht2_center_batch(&mut batch.images)?;
        writer.push_many(&batch.images)?;
        progress.inc(batch.positions.len() as u64);
    }
    writer.finish()?;
    let secs = progress.finish().as_secs_f64();
    say!("{}: {} images ({d}×{d}) phase-flipped in {secs:.1} s", args.output.display(), source.len());
    Ok(())
}
