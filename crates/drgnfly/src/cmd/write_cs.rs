//! `write-cs`: a cryoSPARC particle .cs file from a particle stack plus ctf.pkl (and pose.pkl).
//!
//! Fields (numpy structured array, little-endian, one row per particle):
//! `uid` (u8, distinct), `blob/path` (bytes), `blob/idx` (u4, 0-based), `blob/shape` (u4 ×2, px),
//! `blob/psize_A` (f4, Å/px), `blob/sign` (f4, −1: dark particles, as cryoSPARC extracts them);
//! with `--ctf`: `ctf/type` (`imported`), `ctf/accel_kv`, `ctf/cs_mm`, `ctf/amp_contrast`, `ctf/df1_A`,
//! `ctf/df2_A`, `ctf/df_angle_rad`, `ctf/phase_shift_rad`, `ctf/scale` (1) (f4);
//! with `--poses`: `alignments3D/pose` (f4 ×3, axis-angle of Rᵀ, the inverse of `parse-pose-csparc`),
//! `alignments3D/shift` (f4 ×2, t·D px) and `alignments3D/psize_A`. `parse-pose-csparc` and
//! `parse-ctf-csparc` read it back.
//!
//! Example usage:
//!   drgnfly write-cs particles.mrcs --ctf ctf.pkl --poses pose.pkl -o particles.cs
//!   drgnfly write-cs particles.txt --ctf ctf.pkl --ind good.pkl --full-path -o good.cs

use std::path::PathBuf;

use anyhow::{bail, Result};
use clap::Args as ClapArgs;
use drgnfly_em::rotation::align::best_rotation;
use drgnfly_em::rotation::cryosparc::cryosparc_from_pose;
use drgnfly_em::rotation::from_f32;
use drgnfly_io::npy::{Column, StructuredBuilder};

use super::export::{self, ExportInputs};

/// Write a cryoSPARC .cs file for a particle stack with its CTF and poses.
#[derive(ClapArgs, Debug)]
#[command(
    after_help = "Examples:\n  drgnfly write-cs particles.mrcs --ctf ctf.pkl --poses pose.pkl -o particles.cs\n  drgnfly write-cs particles.txt --ctf ctf.pkl --ind good.pkl --full-path -o good.cs\n\nTo subset an existing .cs file, use filter-cs."
)]
pub struct Args {
    /// Particles: .mrcs stack or .txt list of stacks.
    pub particles: PathBuf,
    /// Output .cs file.
    #[arg(short = 'o', long = "output")]
    pub output: PathBuf,
    /// CTF parameters (ctf.pkl).
    #[arg(long)]
    pub ctf: Option<PathBuf>,
    /// Poses (pose.pkl).
    #[arg(long)]
    pub poses: Option<PathBuf>,
    /// Keep only these particles (0-based indices, .pkl or .txt).
    #[arg(long)]
    pub ind: Option<PathBuf>,
    /// Directory holding the stacks named in a .txt input.
    #[arg(long)]
    pub datadir: Option<PathBuf>,
    /// Write absolute stack paths.
    #[arg(long)]
    pub full_path: bool,
}

/// A distinct 64-bit id per row: splitmix64 is a bijection, so distinct rows get distinct uids.
fn uid(row: u64) -> u64 {
    let mut z = row.wrapping_add(0x9E37_79B9_7F4A_7C15);
    z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
    z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
    z ^ (z >> 31)
}

/// Build and write the .cs file.
pub fn run(args: Args) -> Result<()> {
    let ex = export::load(&ExportInputs {
        particles: &args.particles,
        ctf: args.ctf.as_deref(),
        poses: args.poses.as_deref(),
        ind: args.ind.as_deref(),
        datadir: args.datadir.as_deref(),
        full_path: args.full_path,
    })?;
    let n = ex.images.len();
    let apix: Vec<f32> = match (&ex.ctf, ex.header_apix) {
        (Some(c), _) => c.iter().map(|r| r[1] as f32).collect(),
        (None, Some(a)) => vec![a; n],
        (None, None) => bail!(
            "{}: the stack header records no pixel size and no --ctf was given; pass --ctf ctf.pkl (cryoSPARC needs blob/psize_A)",
            args.particles.display()
        ),
    };
    let d = ex.d as u32;
    let width = ex.stack_paths.iter().map(String::len).max().unwrap_or(1).max(1);
    let mut b = StructuredBuilder::new(n);
    b.add("uid", &[], Column::U64((0..n as u64).map(uid).collect()))?;
    b.add(
        "blob/path",
        &[],
        Column::Bytes(width, ex.images.iter().map(|&(s, _)| ex.stack_paths[s].clone()).collect()),
    )?;
    b.add("blob/idx", &[], Column::U32(ex.images.iter().map(|&(_, i)| i as u32).collect()))?;
    b.add("blob/shape", &[2], Column::U32(vec![d; 2 * n]))?;
    b.add("blob/psize_A", &[], Column::F32(apix.clone()))?;
    b.add("blob/sign", &[], Column::F32(vec![-1.0; n]))?;
    if let Some(c) = &ex.ctf {
        let col = |k: usize, scale: f64| Column::F32(c.iter().map(|r| (r[k] * scale) as f32).collect());
        let rad = std::f64::consts::PI / 180.0;
        b.add("ctf/type", &[], Column::Bytes(8, vec!["imported".to_string(); n]))?;
        b.add("ctf/accel_kv", &[], col(5, 1.0))?;
        b.add("ctf/cs_mm", &[], col(6, 1.0))?;
        b.add("ctf/amp_contrast", &[], col(7, 1.0))?;
        b.add("ctf/df1_A", &[], col(2, 1.0))?;
        b.add("ctf/df2_A", &[], col(3, 1.0))?;
        b.add("ctf/df_angle_rad", &[], col(4, rad))?;
        b.add("ctf/phase_shift_rad", &[], col(8, rad))?;
        b.add("ctf/scale", &[], Column::F32(vec![1.0; n]))?;
    }
    if let Some(p) = &ex.poses {
        // A float32 matrix from a file is orthogonal only to ~1e-7; near 180° the rotation angle taken
        // from its trace is ill-conditioned (1e-7 becomes 4e-5 rad), so project onto SO(3) first.
        let pose: Vec<f32> = p
            .rot
            .iter()
            .flat_map(|r| cryosparc_from_pose(&best_rotation(&from_f32(r))).map(|v| v as f32))
            .collect();
        let dpx = ex.d as f32;
        let shift: Vec<f32> = p.trans.iter().flatten().flat_map(|t| [t[0] * dpx, t[1] * dpx]).collect();
        b.add("alignments3D/pose", &[3], Column::F32(pose))?;
        b.add("alignments3D/shift", &[2], Column::F32(shift))?;
        b.add("alignments3D/psize_A", &[], Column::F32(apix))?;
    }
    b.write(&args.output)?;
    say!(
        "{}: {n} particles, box {} px{}{}",
        args.output.display(),
        ex.d,
        if ex.ctf.is_some() { ", with CTF" } else { "" },
        if ex.poses.is_some() { ", with poses" } else { "" },
    );
    Ok(())
}
