//! cryoDRGN reads our models: `export-weights` writes PyTorch `weights.N.pkl` files.
//!
//! Always: the exported file is read back by an independent reader (candle's PyTorch loader, through
//! `eval-vol`) and gives the same map as our checkpoint. With cryoDRGN installed (`DRGNFLY_CRYODRGN` = its
//! `cryodrgn` executable; `.ci/run` sets it when `../venv-cryodrgn` exists): `cryodrgn eval_vol` on our
//! weights and config.yaml gives our map.

use std::path::{Path, PathBuf};
use std::process::Command;

use drgnfly_io::mrc::read_volume;

use crate::util::{drgnfly, simulate_phantom};

fn max_rel_diff(a: &Path, b: &Path) -> f64 {
    let (a, b) = (read_volume(a).expect("map"), read_volume(b).expect("map"));
    assert_eq!(a.shape, b.shape);
    let scale = a.data.iter().fold(0f32, |m, v| m.max(v.abs())) as f64;
    let diff = a.data.iter().zip(&b.data).fold(0f64, |m, (x, y)| m.max((x - y).abs() as f64));
    diff / scale
}

/// The cryoDRGN executable named by `DRGNFLY_CRYODRGN`, or `None` with a printed notice.
fn cryodrgn() -> Option<PathBuf> {
    match std::env::var_os("DRGNFLY_CRYODRGN").map(PathBuf::from) {
        Some(p) if p.exists() => Some(p),
        other => {
            eprintln!(
                "SKIPPED: cryoDRGN comparison ({}); set DRGNFLY_CRYODRGN to a cryodrgn 4.3 executable",
                match other {
                    Some(p) => format!("{} does not exist", p.display()),
                    None => "DRGNFLY_CRYODRGN is not set".into(),
                }
            );
            None
        }
    }
}

#[test]
fn exported_weights_give_our_map_in_cryodrgn() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    simulate_phantom(d, (2, 24, 120), &["--snr", "1"]);
    let train = [
        "train-vae",
        "sim/particles.mrcs",
        "--poses",
        "sim/pose.pkl",
        "--ctf",
        "sim/ctf.pkl",
        "--zdim",
        "2",
        "-n",
        "2",
        "--enc-dim",
        "32",
        "--dec-dim",
        "32",
        "--enc-layers",
        "2",
        "--dec-layers",
        "2",
        "--seed",
        "1",
        "--no-analysis",
        "-o",
        "vae",
    ];
    drgnfly(d, &train).ok();
    drgnfly(d, &["export-weights", "vae"]).ok();
    for n in [1, 2] {
        assert!(d.join(format!("vae/weights.{n}.pkl")).is_file(), "weights.{n}.pkl not written");
    }

    let z = ["-z", "0.7", "-0.4"];
    let ours = ["eval-vol", "vae/weights.2.safetensors", "-c", "vae/config.yaml", "-o", "ours.mrc"];
    drgnfly(d, &[&ours[..], &z[..]].concat()).ok();
    let reread = ["eval-vol", "vae/weights.2.pkl", "-c", "vae/config.yaml", "-o", "reread.mrc"];
    drgnfly(d, &[&reread[..], &z[..]].concat()).ok();
    let diff = max_rel_diff(&d.join("ours.mrc"), &d.join("reread.mrc"));
    assert!(diff < 1e-6, "the exported weights read back give another map (max rel diff {diff:.2e})");

    let Some(cryodrgn) = cryodrgn() else { return };
    let out = Command::new(cryodrgn)
        .current_dir(d)
        .args(["eval_vol", "vae/weights.2.pkl", "-c", "vae/config.yaml", "-o", "cryodrgn.mrc"])
        .args(z)
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("cryodrgn runs");
    assert!(out.status.success(), "cryodrgn eval_vol failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let diff = max_rel_diff(&d.join("ours.mrc"), &d.join("cryodrgn.mrc"));
    assert!(diff < 1e-4, "cryoDRGN's map from our weights differs (max rel diff {diff:.2e})");

    // cryoDRGN's analyze on our training directory: its k-means volumes are our maps at its centres.
    let out = Command::new(cryodrgn_path())
        .current_dir(d)
        .args(["analyze", "vae", "2", "--skip-umap", "--ksample", "2", "-o", "cdanalyze"])
        .env("OMP_NUM_THREADS", "1")
        .output()
        .expect("cryodrgn runs");
    assert!(out.status.success(), "cryodrgn analyze failed:\n{}", String::from_utf8_lossy(&out.stderr));
    let zfile = ["--zfile", "cdanalyze/kmeans2/centers.txt", "-o", "ours_kmeans"];
    drgnfly(
        d,
        &[&["eval-vol", "vae/weights.2.safetensors", "-c", "vae/config.yaml"][..], &zfile[..]].concat(),
    )
    .ok();
    for k in 1..=2 {
        let name = format!("vol_{k:03}.mrc");
        let diff = max_rel_diff(&d.join("ours_kmeans").join(&name), &d.join("cdanalyze/kmeans2").join(&name));
        assert!(diff < 1e-4, "cryoDRGN analyze's {name} differs from our map at its centre ({diff:.2e})");
    }
}

fn cryodrgn_path() -> PathBuf {
    std::env::var_os("DRGNFLY_CRYODRGN").map(PathBuf::from).expect("checked by cryodrgn()")
}

/// The example command lines of cryoDRGN 4.3.1's `train_vae` documentation (its module docstring) run
/// unchanged, with the file names it uses; only the epoch counts are smaller (25 → 2, 50 → 3).
#[test]
fn cryodrgn_documented_train_vae_command_lines_run_unchanged() {
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    simulate_phantom(d, (2, 16, 40), &[]);
    for (from, to) in
        [("particles.mrcs", "projections.mrcs"), ("pose.pkl", "angles.pkl"), ("ctf.pkl", "test_ctf.pkl")]
    {
        std::fs::copy(d.join("sim").join(from), d.join(to)).unwrap();
    }
    let first = "train_vae projections.mrcs -o outs/002_trainvae --lr 0.0001 --zdim 8 \
                 --poses angles.pkl --ctf test_ctf.pkl -n 2";
    let restart = "train_vae projections.mrcs -o outs/002_trainvae --lr 0.0001 --zdim 8 \
                   --poses angles.pkl --ctf test_ctf.pkl --load latest -n 3";
    for line in [first, restart] {
        let args: Vec<&str> = line.split_whitespace().filter(|a| *a != "\\").collect();
        drgnfly(d, &args).ok();
    }
    assert!(d.join("outs/002_trainvae/z.3.pkl").is_file(), "the restarted run did not reach epoch 3");
}
