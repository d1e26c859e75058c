//! `eval-poses`: how close estimated poses (ab initio, refinement) are to the ground truth of a simulation,
//! measured as the papers do.
//!
//! Rotations are compared after the best global rotation, trying both hands (an ab initio map may be the
//! mirror image): median and mean `‖ΔR‖²_F` (the metric of the cryoDRGN2 and HetACUMN tables) and angles in
//! degrees. Translations are compared directly, in pixels (RMSE and median), and again after removing the
//! map's own offset from the centre (an ab initio map's centre is arbitrary; the least-squares 3D offset
//! its shift errors imply). With `--map`, the estimated map is rotated (and mirrored if needed) into the
//! ground-truth frame, moved back by that offset and written to `--out-map`, ready for `drgnfly fsc`
//! against the true volume. Prints a summary and writes `-o` (JSON).
//!
//! Example usage:
//!   drgnfly eval-poses out/pose.30.pkl --truth sim/pose.pkl -D 64 --map out/reconstruct.30.mrc \
//!       --out-map out/aligned.30.mrc -o pose_metrics.json

use std::io::Write;
use std::path::PathBuf;

use anyhow::{bail, Context, Result};
use clap::Args as ClapArgs;
use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::accuracy::{median, PoseAccuracy};
use drgnfly_em::rotation::align::align_volume;
use drgnfly_io::mrc::{read_volume, write_volume, MrcDtype};
use drgnfly_io::pickle::load_poses;

/// Compare estimated poses with the ground truth.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly eval-poses out/pose.30.pkl --truth sim/pose.pkl -D 64\n  \
                  drgnfly eval-poses out/pose.30.pkl --truth sim/pose.pkl -D 64 --map out/reconstruct.30.mrc \
                  --out-map aligned.mrc")]
pub struct Args {
    /// Estimated poses (pose.pkl).
    pub poses: PathBuf,
    /// Ground-truth poses (pose.pkl of the simulation), one row per estimated pose.
    #[arg(long)]
    pub truth: PathBuf,
    /// Box size of the particles in pixels (pose.pkl stores translations as fractions of it).
    #[arg(short = 'D', long = "box")]
    pub d: usize,
    /// Estimated map to bring into the ground-truth frame.
    #[arg(long, requires = "out_map")]
    pub map: Option<PathBuf>,
    /// Where to write the aligned map.
    #[arg(long, requires = "map")]
    pub out_map: Option<PathBuf>,
    /// Write the metrics as JSON here.
    #[arg(short = 'o', long)]
    pub output: Option<PathBuf>,
    /// Write each particle's errors here (text: a header, then `angle_deg shift_error_px` per particle, in
    /// the order of the pose files), e.g. to find the particles whose poses are wrong.
    #[arg(long, value_name = "FILE")]
    pub per_particle: Option<PathBuf>,
}

/// Evaluate.
pub fn run(args: Args) -> Result<()> {
    if args.d == 0 {
        bail!("-D 0: give the particles' box size in pixels");
    }
    let (est, truth) = (load_poses(&args.poses)?, load_poses(&args.truth)?);
    if est.len() != truth.len() || est.is_empty() {
        bail!(
            "{} has {} poses and {} has {}; they must describe the same particles in the same order",
            args.poses.display(),
            est.len(),
            args.truth.display(),
            truth.len()
        );
    }
    let pose = |p: &drgnfly_io::pickle::Poses, i: usize| {
        Pose::from_pkl(&p.rot[i], p.trans.as_ref().map(|t| t[i]), args.d)
    };
    let (a, b): (Vec<Pose>, Vec<Pose>) = (0..est.len()).map(|i| (pose(&est, i), pose(&truth, i))).unzip();
    let acc = PoseAccuracy::measure(&a, &b)?;
    let (err, angles, frob) = (&acc.rotation, &acc.angles_deg, &acc.frobenius_sq);
    let (shifts, centred, offset) = (&acc.shift_errors_px, &acc.centred_shift_errors_px, acc.map_offset_px);
    let n = angles.len() as f64;
    let mean = |v: &[f64]| v.iter().sum::<f64>() / n;
    let rms = |v: &[f64]| (v.iter().map(|s| s * s).sum::<f64>() / n).sqrt();
    let (rmse, rmse_centred) = (rms(shifts), rms(centred));
    let metrics = serde_json::json!({
        "particles": angles.len(),
        "hand_flipped": err.flipped,
        "median_frobenius_sq": median(frob),
        "mean_frobenius_sq": mean(frob),
        "median_angle_deg": median(angles),
        "mean_angle_deg": mean(angles),
        "shift_rmse_px": rmse,
        "median_shift_error_px": median(shifts),
        "median_shift_sq_px_map_centred": acc.median_shift_sq_px(),
        "map_offset_px": offset,
        "shift_rmse_px_map_centred": rmse_centred,
        "alignment": err.alignment,
    });
    writeln!(
        std::io::stdout().lock(),
        "{} poses ({} hand): ‖ΔR‖²_F median {:.4}, mean {:.4}; angle median {:.2}°, mean {:.2}°; shift error \
         RMSE {:.2} px, median {:.2} px; map off-centre by ({:.2}, {:.2}, {:.2}) px, shift RMSE {:.2} px without it",
        angles.len(),
        if err.flipped { "mirrored" } else { "same" },
        median(frob),
        mean(frob),
        median(angles),
        mean(angles),
        rmse,
        median(shifts),
        offset[0],
        offset[1],
        offset[2],
        rmse_centred
    )?;
    if let (Some(map), Some(out)) = (&args.map, &args.out_map) {
        let v = read_volume(map)?;
        let d = v.shape[0];
        if v.shape != [d, d, d] {
            bail!("{}: a {:?} map is not cubic", map.display(), v.shape);
        }
        let aligned = align_volume(&v.data, d, err, offset).with_context(|| map.display().to_string())?;
        write_volume(out, &aligned, [d; 3], v.voxel_size[0], [0.0; 3], MrcDtype::F32)?;
        say!("aligned map → {} (compare with `drgnfly fsc {} TRUTH.mrc`)", out.display(), out.display());
    }
    if let Some(path) = &args.output {
        let text = serde_json::to_string_pretty(&metrics)?;
        drgnfly_io::atomic::write_atomic(path, text.as_bytes())?;
    }
    if let Some(path) = &args.per_particle {
        let mut text = String::from("angle_deg shift_error_px\n");
        for (a, s) in angles.iter().zip(shifts) {
            text.push_str(&format!("{a:.4} {s:.4}\n"));
        }
        drgnfly_io::atomic::write_atomic(path, text.as_bytes())?;
    }
    Ok(())
}
