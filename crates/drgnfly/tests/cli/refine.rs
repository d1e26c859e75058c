//! `--do-pose-sgd` end to end: poses knocked a few degrees off the simulation's are brought back toward
//! the truth by `train-nn` and `train-vae`, written as pose.E.pkl, and resumed exactly.

use std::path::Path;

use drgnfly_io::pickle::{load_poses, write_poses, Poses};

use crate::util::{drgnfly, eval_poses, fsc_auc, simulate_phantom};

/// Rotation by `deg` about the unit axis `k` (Rodrigues).
fn axis_angle(k: [f64; 3], deg: f64) -> [[f64; 3]; 3] {
    let (s, c) = deg.to_radians().sin_cos();
    let [x, y, z] = k;
    [
        [c + x * x * (1.0 - c), x * y * (1.0 - c) - z * s, x * z * (1.0 - c) + y * s],
        [y * x * (1.0 - c) + z * s, c + y * y * (1.0 - c), y * z * (1.0 - c) - x * s],
        [z * x * (1.0 - c) - y * s, z * y * (1.0 - c) + x * s, c + z * z * (1.0 - c)],
    ]
}

/// The simulation's poses, each rotated by `deg` about an axis and shifted by `px` pixels in a direction
/// that vary from particle to particle (box `d`).
fn perturb(truth: &Path, out: &Path, (deg, px): (f64, f64), d: usize) {
    let mut poses: Poses = load_poses(truth).expect("pose.pkl");
    if let Some(trans) = poses.trans.as_mut() {
        for (i, t) in trans.iter_mut().enumerate() {
            let a = i as f64 * 1.1;
            t[0] += (px * a.cos() / d as f64) as f32;
            t[1] += (px * a.sin() / d as f64) as f32;
        }
    }
    for (i, r) in poses.rot.iter_mut().enumerate() {
        let (a, b) = (i as f64 * 2.399_963, (i as f64 * 0.618_034).fract() * 2.0 - 1.0);
        let k = [(1.0 - b * b).sqrt() * a.cos(), (1.0 - b * b).sqrt() * a.sin(), b];
        let p = axis_angle(k, deg);
        let old = *r;
        for row in 0..3 {
            for col in 0..3 {
                r[row][col] = (0..3).map(|j| f64::from(old[row][j]) * p[j][col]).sum::<f64>() as f32;
            }
        }
    }
    write_poses(out, &poses).expect("write poses");
}

/// Median angular error (degrees) and shift RMSE (pixels) of `poses` against the simulation (box `d`).
fn errors(dir: &Path, poses: &str, d: usize) -> (f64, f64) {
    let m = eval_poses(dir, poses, d, &[]);
    (m["median_angle_deg"].as_f64().expect("angle"), m["shift_rmse_px"].as_f64().expect("shift"))
}

/// FSC-AUC of a map against the simulation's volume.
fn auc(dir: &Path, map: &str) -> f64 {
    fsc_auc(&dir.join(map), &dir.join("sim/gt_volumes/vol_000.mrc"))
}

#[test]
fn pose_sgd_halves_the_error_of_perturbed_poses_and_resumes_exactly() {
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    simulate_phantom(p, (1, 32, 400), &["--snr", "inf", "--no-ctf", "--max-shift", "1"]);
    // The test: true poses knocked 5° and 1 px off.
    perturb(&p.join("sim/pose.pkl"), &p.join("noisy.pkl"), (5.0, 1.0), 32);
    let before = errors(p, "noisy.pkl", 32);

    let run = |cmd: &str, out: &str, extra: &[&str]| {
        let mut args = vec!["--threads", "2", cmd, "sim/particles.mrcs", "--poses", "noisy.pkl", "-o", out];
        args.extend(["-n", "16", "-b", "16", "--lr", "1e-3", "--seed", "1", "--checkpoint", "8"]);
        args.extend(extra);
        drgnfly(p, &args).ok()
    };
    let nn = ["--layers", "2", "--dim", "128"];
    let sgd = ["--do-pose-sgd", "--pretrain", "2"];
    run("train-nn", "fixed", &nn);
    run("train-nn", "nn", &[&nn[..], &sgd[..]].concat());
    let after = errors(p, "nn/pose.16.pkl", 32);
    let (map_fixed, map_refined) = (auc(p, "fixed/reconstruct.16.mrc"), auc(p, "nn/reconstruct.16.mrc"));
    println!(
        "train-nn --do-pose-sgd: median angle {:.2}° → {:.2}°, shift RMSE {:.2} → {:.2} px; FSC-AUC {map_fixed:.4} → {map_refined:.4}",
        before.0, after.0, before.1, after.1
    );
    // Measured: 5.0° → 2.0°, 1.0 → 0.24 px.
    assert!(after.0 < 0.5 * before.0, "pose SGD should halve the angular error: {before:?} → {after:?}");
    assert!(after.1 < 0.5 * before.1, "and the shift error: {before:?} → {after:?}");
    assert!(map_refined > map_fixed, "and improve the map: FSC-AUC {map_fixed:.4} → {map_refined:.4}");
    let config = std::fs::read_to_string(p.join("nn/config.yaml")).expect("config");
    assert!(config.contains("do_pose_sgd: true"), "{config}");

    // train-vae refines too (its z from the refined poses).
    let vae =
        ["--zdim", "1", "--enc-layers", "1", "--enc-dim", "64", "--dec-layers", "2", "--dec-dim", "128"];
    let vae: Vec<&str> = [&vae[..], &sgd[..], &["--no-analysis"]].concat();
    run("train-vae", "vae", &vae);
    let vae_after = errors(p, "vae/pose.16.pkl", 32);
    println!("train-vae --do-pose-sgd: median angle {:.2}° → {:.2}°", before.0, vae_after.0);
    assert!(vae_after.0 < 0.5 * before.0, "pose SGD in train-vae: {before:?} → {vae_after:?}");
    assert!(p.join("vae/z.16.pkl").is_file());
    // analyze shows where the refined poses look from.
    drgnfly(p, &["analyze", "vae", "16", "--skip-vol", "--ksample", "2"]).ok();
    assert!(p.join("vae/analyze.16/viewing_directions.png").is_file());
    let report = std::fs::read_to_string(p.join("vae/analyze.16/report.html")).expect("report");
    assert!(report.contains("Viewing directions"), "the report should show the pose distribution");

    // Resume from epoch 8: the same poses at epoch 16, byte for byte.
    std::fs::create_dir_all(p.join("resumed")).expect("mkdir");
    std::fs::copy(p.join("vae/weights.8.safetensors"), p.join("resumed/weights.8.safetensors"))
        .expect("copy");
    run("train-vae", "resumed", &[&vae[..], &["--load", "latest"]].concat());
    let read = |f: &str| std::fs::read(p.join(f)).expect("read");
    assert!(
        read("vae/pose.16.pkl") == read("resumed/pose.16.pkl"),
        "a resumed run must refine the same poses"
    );
}

/// The benchmark of BENCHMARKS.md ("Pose SGD"): adk at D = 64, SNR 0.1, CTF, 2000 images, poses 5° and 1 px
/// off; `train-nn` with and without `--do-pose-sgd`, errors and FSC-AUC per checkpoint. Minutes in release:
/// `cargo test --release -p drgnfly --test cli refine::pose_sgd_benchmark -- --ignored --nocapture`.
#[test]
#[ignore = "benchmark: minutes in release mode"]
fn pose_sgd_benchmark() {
    let closed = drgnfly_io::fixture_or_skip!("mdanalysis_adk/adk_closed.pdb");
    let dir = tempfile::tempdir().expect("tempdir");
    let p = dir.path();
    let closed = closed.to_string_lossy();
    let sim = ["simulate", "--pdb", &closed, "-D", "64", "--Apix", "1.5", "-n", "2000", "--snr", "0.1"];
    drgnfly(p, &[&sim[..], &["--max-shift", "6", "--seed", "3", "-o", "sim"]].concat()).ok();
    perturb(&p.join("sim/pose.pkl"), &p.join("noisy.pkl"), (5.0, 1.0), 64);
    let eval = |poses: &str| errors(p, poses, 64);
    let before = eval("noisy.pkl");
    println!("perturbed poses: median angle {:.2}°, shift RMSE {:.2} px", before.0, before.1);
    let epochs = 12;
    for (out, extra) in [("fixed", &[][..]), ("sgd", &["--do-pose-sgd", "--pretrain", "2"][..])] {
        let mut args = vec!["--threads", "2", "train-nn", "sim/particles.mrcs", "--poses", "noisy.pkl"];
        args.extend(["--ctf", "sim/ctf.pkl", "-o", out, "-n", "12", "--layers", "3", "--dim", "256"]);
        args.extend(["--lr", "1e-3", "--seed", "1", "--checkpoint", "3"]);
        args.extend(extra);
        let t0 = std::time::Instant::now();
        drgnfly(p, &args).ok();
        let secs = t0.elapsed().as_secs_f64();
        for e in (3..=epochs).step_by(3) {
            let auc = auc(p, &format!("{out}/reconstruct.{e}.mrc"));
            let err = if out == "sgd" { eval(&format!("{out}/pose.{e}.pkl")) } else { before };
            println!(
                "{out} epoch {e}: median angle {:.2}°, shift RMSE {:.2} px, FSC-AUC {auc:.4}",
                err.0, err.1
            );
        }
        println!("{out}: {epochs} epochs in {secs:.1} s");
    }
}
