//! Data-parallel training across processes (`mpirun -np 2`, a build with the `mpi` feature): the same
//! losses, latents and poses as one process with the same global batch; a checkpoint of one process
//! resumes on two; commands that do not train across processes refuse to start.
//!
//! Needs `--features mpi` and `mpirun` (Open MPI): otherwise skipped with a notice, unless
//! `DRGNFLY_REQUIRE_MPI=1` (set by `.ci/run` when it installs MPI) makes that a failure.

use std::path::Path;
use std::process::Command;

use drgnfly_io::pickle::{load_latents, load_poses};

use crate::util::{drgnfly, max_abs_diff, simulate_phantom, Output};

/// Whether this build and machine can run the test (else why not).
fn mpi_available() -> Result<(), String> {
    if !cfg!(feature = "mpi") {
        return Err("drgnfly was built without the `mpi` feature".into());
    }
    match Command::new("mpirun").arg("--version").output() {
        Ok(out) if out.status.success() => Ok(()),
        _ => Err("mpirun is not installed (Debian: openmpi-bin libopenmpi-dev)".into()),
    }
}

fn skip_unless_mpi(test: &str) -> bool {
    match mpi_available() {
        Ok(()) => false,
        Err(why) if std::env::var("DRGNFLY_REQUIRE_MPI").is_ok_and(|v| v == "1") => {
            panic!("{test}: DRGNFLY_REQUIRE_MPI=1 but {why}")
        }
        Err(why) => {
            eprintln!("skipping {test}: {why}");
            true
        }
    }
}

/// `mpirun -np N drgnfly args…` in `dir` (Open MPI, allowed to run as root as CI does).
fn mpirun(dir: &Path, n: usize, args: &[&str]) -> Output {
    let out = Command::new("mpirun")
        .args(["-np", &n.to_string(), "--oversubscribe", env!("CARGO_BIN_EXE_drgnfly")])
        .args(args)
        .current_dir(dir)
        .env("OMPI_ALLOW_RUN_AS_ROOT", "1")
        .env("OMPI_ALLOW_RUN_AS_ROOT_CONFIRM", "1")
        .env_remove("RUST_LOG")
        .output()
        .expect("mpirun runs");
    Output {
        code: out.status.code().unwrap_or(-1),
        stderr: String::from_utf8_lossy(&out.stderr).into_owned(),
    }
}

/// The per-epoch loss terms of a run.log.
fn epoch_losses(dir: &Path) -> Vec<Vec<f64>> {
    let log = std::fs::read_to_string(dir.join("run.log")).unwrap();
    log.lines()
        .filter(|l| l.contains("=====> Epoch"))
        .map(|l| {
            l.split(" = ").skip(1).map(|v| v.split([',', ';']).next().unwrap().parse().unwrap()).collect()
        })
        .collect()
}

fn latents(path: &Path) -> Vec<f64> {
    let (mu, _, logvar) = load_latents(path).unwrap();
    mu.iter().chain(logvar.as_deref().unwrap_or(&[])).map(|&v| f64::from(v)).collect()
}

fn poses(path: &Path) -> Vec<f64> {
    let p = load_poses(path).unwrap();
    let rot = p.rot.iter().flatten().flatten().copied();
    rot.chain(p.trans.unwrap().iter().flatten().copied()).map(f64::from).collect()
}

fn assert_same_losses(a: &Path, b: &Path) {
    let (la, lb) = (epoch_losses(a), epoch_losses(b));
    assert!(!la.is_empty() && la.len() == lb.len(), "{la:?} vs {lb:?}");
    for (x, y) in la.iter().flatten().zip(lb.iter().flatten()) {
        assert!((x - y).abs() <= 1e-5 * x.abs().max(1e-3), "losses differ: {la:?} vs {lb:?}");
    }
}

const DATA: [&str; 6] = ["sim/particles.mrcs", "--poses", "sim/pose.pkl", "--ctf", "sim/ctf.pkl", "--no-amp"];

fn vae_args<'a>(out: &'a str, epochs: &'a str) -> Vec<&'a str> {
    let mut args = vec!["--threads", "1", "train-vae"];
    args.extend(DATA);
    args.extend(["--zdim", "2", "-n", epochs, "--enc-layers", "2", "--enc-dim", "32", "--dec-layers", "2"]);
    args.extend(["--dec-dim", "32", "-b", "7", "--seed", "3", "--do-pose-sgd", "--no-analysis", "-o", out]);
    args
}

#[test]
fn two_processes_train_a_vae_as_one_and_resume_across_process_counts() {
    if skip_unless_mpi("two_processes_train_a_vae_as_one") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    // 201 images in batches of 7: the last batch has 5 images, shared 2 + 3.
    simulate_phantom(d, (2, 16, 201), &["--snr", "1", "--max-shift", "2"]);

    drgnfly(d, &vae_args("one", "3")).ok();
    mpirun(d, 2, &vae_args("two", "3")).ok();
    assert_same_losses(&d.join("one"), &d.join("two"));
    for epoch in 1..=3 {
        let (za, zb) =
            (latents(&d.join(format!("one/z.{epoch}.pkl"))), latents(&d.join(format!("two/z.{epoch}.pkl"))));
        assert_eq!(za.len(), 201 * 4);
        assert!(max_abs_diff(&za, &zb) < 1e-4, "z.{epoch}.pkl differs by {}", max_abs_diff(&za, &zb));
    }
    // Pose SGD ran from epoch 2 and moved the poses alike on both.
    let (given, pa, pb) =
        (poses(&d.join("sim/pose.pkl")), poses(&d.join("one/pose.3.pkl")), poses(&d.join("two/pose.3.pkl")));
    assert!(max_abs_diff(&given, &pa) > 1e-4, "the poses were refined");
    assert!(max_abs_diff(&pa, &pb) < 1e-4, "pose.3.pkl differs by {}", max_abs_diff(&pa, &pb));

    // A one-process checkpoint (epoch 2 of a 2-epoch run) resumed on two processes for epoch 3.
    drgnfly(d, &vae_args("resumed", "2")).ok();
    let mut resume = vae_args("resumed", "3");
    resume.extend(["--load", "latest"]);
    mpirun(d, 2, &resume).ok();
    assert_same_losses(&d.join("one"), &d.join("resumed"));
    let (za, zr) = (latents(&d.join("one/z.3.pkl")), latents(&d.join("resumed/z.3.pkl")));
    assert!(max_abs_diff(&za, &zr) < 1e-4, "resumed z.3.pkl differs by {}", max_abs_diff(&za, &zr));
}

#[test]
fn two_processes_train_a_homogeneous_map_as_one() {
    if skip_unless_mpi("two_processes_train_a_homogeneous_map_as_one") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    simulate_phantom(d, (1, 16, 120), &["--snr", "1"]);
    let args = |out: &'static str| {
        let mut a = vec!["--threads", "1", "train-nn"];
        a.extend(DATA);
        a.extend(["-n", "2", "--layers", "2", "--dim", "32", "-b", "16", "--seed", "1", "-o", out]);
        a
    };
    drgnfly(d, &args("one")).ok();
    mpirun(d, 2, &args("two")).ok();
    assert_same_losses(&d.join("one"), &d.join("two"));
    let (a, b) = (
        crate::util::volume(&d.join("one/reconstruct.2.mrc")),
        crate::util::volume(&d.join("two/reconstruct.2.mrc")),
    );
    assert!(max_abs_diff(&a, &b) < 1e-3 * a.iter().fold(0.0f64, |m, v| m.max(v.abs())), "maps differ");
}

/// An ab initio `command` (with `extra` flags) on one process and on two: same losses and poses, and
/// `searches` search epochs logged.
fn ab_initio_on_two_processes(command: &'static str, extra: &[&'static str], searches: usize) {
    if skip_unless_mpi(command) {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let d = dir.path();
    simulate_phantom(d, (2, 16, 150), &["--snr", "10", "--max-shift", "1"]);
    let args = |out: &'static str| {
        let mut a = vec!["--threads", "1", command, "sim/particles.mrcs", "-o", out, "-n", "3", "-b", "9"];
        a.extend(["--l-start", "4", "--l-end", "6", "--base-healpy", "1", "--niter", "2", "--t-extent", "1"]);
        a.extend(["--t-ngrid", "3", "--seed", "2", "--no-amp"]);
        a.extend(extra);
        a
    };
    drgnfly(d, &args("one")).ok();
    mpirun(d, 2, &args("two")).ok();
    assert_same_losses(&d.join("one"), &d.join("two"));
    let (pa, pb) = (poses(&d.join("one/pose.3.pkl")), poses(&d.join("two/pose.3.pkl")));
    assert!(max_abs_diff(&pa, &pb) < 1e-4, "{command}: pose.3.pkl differs by {}", max_abs_diff(&pa, &pb));
    let log = std::fs::read_to_string(d.join("two/run.log")).unwrap();
    assert_eq!(log.matches("# pose search in epoch").count(), searches, "{log}");
}

/// Epochs 1 and 3 search, each process its share of every batch.
const CRYODRGN2: [&str; 4] = ["--pretrain", "40", "--ps-freq", "2"];

#[test]
fn two_processes_run_homogeneous_ab_initio_as_one() {
    ab_initio_on_two_processes(
        "abinit-homo",
        &[&CRYODRGN2[..], &["--layers", "2", "--dim", "32"]].concat(),
        2,
    );
}

#[test]
fn two_processes_run_heterogeneous_ab_initio_as_one() {
    let net = ["--zdim", "2", "--enc-layers", "1", "--enc-dim", "32", "--dec-layers", "2", "--dec-dim", "32"];
    ab_initio_on_two_processes("abinit-het", &[&CRYODRGN2[..], &net, &["--no-analysis"]].concat(), 2);
}

/// cryoDRGN-AI: one search epoch, then SGD of the pose and conformation tables.
#[test]
fn two_processes_run_cryodrgn_ai_as_one() {
    let flags = ["--n-imgs-pretrain", "40", "--epochs-pose-search", "1", "--zdim", "2", "--layers", "2"];
    let more = ["--dim", "32", "--batch-size-sgd", "9", "--lr-pose-table", "1e-2", "--no-analysis"];
    ab_initio_on_two_processes("abinit", &[&flags[..], &more].concat(), 1);
}

#[test]
fn commands_that_do_not_train_across_processes_refuse_to_start() {
    if skip_unless_mpi("commands_that_do_not_train_across_processes_refuse_to_start") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let out = mpirun(dir.path(), 2, &["simulate", "--phantom", "hinge", "-D", "16", "-n", "10", "-o", "sim"]);
    assert_ne!(out.code, 0);
    assert!(out.stderr.contains("runs on one process"), "{}", out.stderr);
    assert!(!out.stderr.contains("panicked"), "{}", out.stderr);
    assert!(!dir.path().join("sim").exists(), "nothing was written");
}
