//! `parse-pose-csparc`: cryoSPARC particle poses → cryoDRGN pose.pkl.
//!
//! Conventions (reference §2.5–2.6): `alignments3D/pose` is an axis-angle vector v and the stored
//! rotation is `exp([v]×)ᵀ` ([`pose_from_cryosparc`]); the translation is `alignments3D/shift` (px; ×2 with
//! `--hetrefine`) divided by the box D (`-D`, else `blob/shape`). `--abinit` reads
//! `alignments_class_0/` instead. The pickle is `(rot float32 (N, 3, 3), trans float32 (N, 2))`, as
//! cryoDRGN writes it.
//!
//! Example usage:
//!   drgnfly parse-pose-csparc cryosparc_P12_J24_001_particles.cs -o pose.pkl
//!   drgnfly parse-pose-csparc particles.cs -D 180 --hetrefine -o pose.pkl

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_em::pose::px_to_fraction;
use drgnfly_em::rotation::cryosparc::pose_from_cryosparc;
use drgnfly_em::rotation::{from_f32, to_f32};
use drgnfly_io::cs::CsFile;
use drgnfly_io::pickle::{self, Poses};

use super::parse_pose_star::describe_first_pose;

/// Extract rotations and translations from a cryoSPARC .cs file into a cryoDRGN pose.pkl.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly parse-pose-csparc cryosparc_P12_J24_001_particles.cs -o pose.pkl\n  drgnfly parse-pose-csparc particles.cs -D 180 --hetrefine -o pose.pkl"
)]
pub struct Args {
    /// cryoSPARC particle .cs file.
    pub input: PathBuf,
    /// Output pose.pkl.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// Box size of the particles (px); default: blob/shape.
    #[arg(short = 'D', value_name = "BOX")]
    pub d: Option<u32>,
    /// Read the poses of an ab initio job (alignments_class_0/).
    #[arg(long)]
    pub abinit: bool,
    /// Heterogeneous refinement: shifts are stored at half the box and are doubled.
    #[arg(long)]
    pub hetrefine: bool,
}

/// Parse the file and write pose.pkl.
pub fn run(args: Args) -> Result<()> {
    let cs = CsFile::open(&args.input)?;
    super::require_rows(cs.len(), &args.input)?;
    let d = cs.box_size(args.d.map(f64::from))?;
    let vectors = cs.pose_vectors(args.abinit)?;
    let shifts = cs.shifts_px(args.abinit, args.hetrefine)?;
    let d = match d {
        Some(d) if d >= 1.0 => d,
        Some(d) => {
            bail!("{}: box size {d} from blob/shape is not a positive size; pass -D", args.input.display())
        }
        None => 1.0, // no rows: nothing is divided
    };
    let poses = Poses {
        rot: vectors.into_iter().map(|v| to_f32(&pose_from_cryosparc(v))).collect(),
        trans: Some(shifts.iter().map(|s| s.map(|v| px_to_fraction(v, d) as f32)).collect()),
    };
    pickle::write_poses(&args.output, &poses)?;
    let first_t = poses.trans.as_ref().and_then(|t| t.first()).map(|t| t.map(f64::from));
    say!(
        "{}: {} particles, box {d} px; {}",
        args.output.display(),
        poses.len(),
        describe_first_pose(poses.rot.first().map(from_f32).as_ref(), first_t.as_ref())
    );
    Ok(())
}
