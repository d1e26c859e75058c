//! `parse-pose-star`: RELION particle poses → cryoDRGN pose.pkl.
//!
//! Conventions (reference §2.5–2.6): the rotation is RELION's Euler matrix of (rot, tilt, psi)
//! ([`matrix_from_euler`], cryoDRGN's `R_from_relion`); the translation is the origin in pixels of the
//! original particles (`_rlnOriginX/Y`, or `_rlnOriginX/YAngst` ÷ Å/px) divided by their box size D (`-D`,
//! else `_rlnImageSize`), sign kept. The pickle is the tuple `(rot float64 (N, 3, 3), trans float64 (N, 2))`,
//! the dtype cryoDRGN's parser writes.
//!
//! Example usage:
//!   drgnfly parse-pose-star particles.star -o pose.pkl
//!   drgnfly parse-pose-star run_data.star -D 300 -o pose.pkl

use std::path::{Path, PathBuf};

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_em::pose::px_to_fraction;
use drgnfly_em::rotation::relion::matrix_from_euler;
use drgnfly_em::rotation::Mat3;
use drgnfly_io::pickle::{self, ArrayData, NdArray};
use drgnfly_io::relion::RelionParticles;

/// Extract rotations and translations from a RELION .star file into a cryoDRGN pose.pkl.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly parse-pose-star particles.star -o pose.pkl\n  drgnfly parse-pose-star run_data.star -D 300 -o pose.pkl\n\nThe translations are stored as fractions of the ORIGINAL box (-D or _rlnImageSize), as cryoDRGN expects."
)]
pub struct Args {
    /// RELION particle .star file (3.0 or 3.1+ with optics groups).
    pub input: PathBuf,
    /// Output pose.pkl.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Box size of the original particles (px); default: _rlnImageSize.
    #[arg(short = 'D', value_name = "BOX")]
    pub d: Option<u32>,
    /// Pixel size of the original particles (Å) for _rlnOriginX/YAngst; default: _rlnImagePixelSize.
    #[arg(long = "Apix", alias = "apix")]
    pub apix: Option<f64>,
}

/// Poses of a particle table: rotations and translations as fractions of the box.
pub struct StarPoses {
    /// RELION Euler matrices, one per particle.
    pub rot: Vec<Mat3>,
    /// Origins (px) ÷ box size, one per particle; zero when the file has no origins.
    pub trans: Vec<[f64; 2]>,
    /// The box size used for the first particle (px).
    pub first_box: Option<f64>,
}

/// Read the poses of `star` with the `-D` / `--Apix` overrides.
pub fn poses_from_star(star: &RelionParticles, d: Option<u32>, apix: Option<f64>) -> Result<StarPoses> {
    let boxes = star.box_size(d.map(f64::from))?;
    if let Some(i) = boxes.iter().position(|&b| b.is_nan() || b < 1.0) {
        bail!(
            "{}: particle {i}: box size {} is not a positive number of pixels; pass -D",
            star.path().display(),
            boxes[i]
        );
    }
    let rot: Vec<Mat3> = star.euler_deg()?.into_iter().map(matrix_from_euler).collect();
    let trans = match star.origin_px(apix)? {
        Some(o) => o.iter().zip(&boxes).map(|(o, &b)| o.map(|v| px_to_fraction(v, b))).collect(),
        None => {
            tracing::warn!("{}: no _rlnOriginX/Y columns; translations are set to 0", star.path().display());
            vec![[0.0; 2]; star.len()]
        }
    };
    Ok(StarPoses { rot, trans, first_box: boxes.first().copied() })
}

/// Write `(rot float64 (N, 3, 3), trans float64 (N, 2))`, atomically.
pub fn write_poses_f64(path: &Path, rot: &[Mat3], trans: &[[f64; 2]]) -> Result<()> {
    let r = NdArray::new(
        vec![rot.len(), 3, 3],
        ArrayData::F64(rot.iter().flatten().flatten().copied().collect()),
    );
    let t = NdArray::new(vec![trans.len(), 2], ArrayData::F64(trans.iter().flatten().copied().collect()));
    pickle::write_tuple(path, &[&r, &t])?;
    Ok(())
}

/// One-line description of the first pose, for the summaries on stderr.
pub fn describe_first_pose(rot: Option<&Mat3>, trans: Option<&[f64; 2]>) -> String {
    match (rot, trans) {
        (Some(r), Some(t)) => format!(
            "first pose R = [[{:.4}, {:.4}, {:.4}], [{:.4}, {:.4}, {:.4}], [{:.4}, {:.4}, {:.4}]], t = [{:.5}, {:.5}]",
            r[0][0], r[0][1], r[0][2], r[1][0], r[1][1], r[1][2], r[2][0], r[2][1], r[2][2], t[0], t[1]
        ),
        _ => "no particles".to_string(),
    }
}

/// Parse the file and write pose.pkl.
pub fn run(args: Args) -> Result<()> {
    let star = RelionParticles::open(&args.input)?;
    super::require_rows(star.len(), &args.input)?;
    let p = poses_from_star(&star, args.d, args.apix)?;
    write_poses_f64(&args.output, &p.rot, &p.trans)?;
    say!(
        "{}: {} particles, box {} px; {}",
        args.output.display(),
        p.rot.len(),
        p.first_box.map_or("?".into(), |b| b.to_string()),
        describe_first_pose(p.rot.first(), p.trans.first())
    );
    Ok(())
}
