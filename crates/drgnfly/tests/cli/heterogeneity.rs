//! Small versions of issue 5's heterogeneity benchmarks (the full ones are `bench/heterogeneity.sh`):
//! adenylate kinase from the shared data, simulated by `drgnfly simulate` at D = 32, trained with
//! `train-vae`, and scored with `eval-simulation` against the simulation's labels.
//!
//! - Two discrete states (closed 1AKE, open 4AKE): k-means(2) accuracy on z, and the map decoded at each
//!   state's median z against that state's ground-truth map.
//! - The continuous DIMS closed→open trajectory (98 frames, drawn uniformly): |Spearman(PC1 of z, frame)|.
//!
//! Every run uses `--threads 1` (see train.rs) and constant seeds, so the measured values in the comments
//! are reproducible; the thresholds leave a margin below them.

use std::path::Path;

use drgnfly_io::mrc::read_volume;
use drgnfly_io::pickle::load_latents;
use drgnfly_io::selection::Selection;

use crate::util::drgnfly;

/// Box size and pixel size of the small versions: 96 Å holds AdK (atoms reach 35 Å from the centre).
const D: usize = 32;
const APIX: &str = "3.0";

/// The network of both tests: small, so an epoch of 2000 images takes seconds with one thread.
const NET: [&str; 8] = ["--enc-layers", "2", "--enc-dim", "128", "--dec-layers", "2", "--dec-dim", "128"];

/// `drgnfly --threads 1 ARGS…` in `dir`, which must succeed.
fn run(dir: &Path, args: &[&str]) {
    let mut all = vec!["--threads", "1"];
    all.extend(args);
    drgnfly(dir, &all).ok();
}

/// `train-vae` on `sim/` into `out/` with the shared settings and `extra` (epochs, zdim, …).
fn train(dir: &Path, extra: &[&str]) {
    let mut args = vec![
        "train-vae",
        "sim/particles.mrcs",
        "--poses",
        "sim/pose.pkl",
        "--ctf",
        "sim/ctf.pkl",
        "-b",
        "8",
        "--lr",
        "1e-3",
        "--seed",
        "1",
        "-o",
        "out",
        "--no-analysis",
    ];
    args.extend(extra);
    args.extend(NET);
    run(dir, &args);
}

/// `eval-simulation` of epoch `epoch` against the state labels `labels` (and the frame indices `frames`):
/// its metrics.json.
fn eval_simulation(dir: &Path, epoch: &str, labels: &str, frames: Option<&str>) -> serde_json::Value {
    let mut args = vec!["eval-simulation", "out", epoch, "--labels", labels, "-o", "metrics.json"];
    if let Some(f) = frames {
        args.extend(["--frames", f]);
    }
    run(dir, &args);
    let text = std::fs::read_to_string(dir.join("metrics.json")).expect("metrics.json");
    serde_json::from_str(&text).expect("metrics.json is JSON")
}

/// The state (or frame) of each particle, from simulate's labels.pkl.
fn read_labels(path: &Path) -> Vec<u32> {
    let sel = Selection::load(path).expect("labels.pkl");
    sel.indices().iter().map(|&l| u32::try_from(l).expect("label ≥ 0")).collect()
}

/// One two-model PDB: MODEL 1 = closed (label 0), MODEL 2 = open (label 1).
fn write_closed_open(closed: &Path, open: &Path, out: &Path) {
    let mut text = String::new();
    for (k, p) in [closed, open].iter().enumerate() {
        let pdb = std::fs::read_to_string(p).expect("adk pdb");
        text.push_str(&format!("MODEL     {:>4}\n", k + 1));
        pdb.lines().filter(|l| l.starts_with("ATOM")).for_each(|l| {
            text.push_str(l);
            text.push('\n');
        });
        text.push_str("ENDMDL\n");
    }
    text.push_str("END\n");
    std::fs::write(out, text).expect("write two-model pdb");
}

/// FSC of two D³ maps: (mean over the shells up to 0.25 cycles/px without DC, resolution at 0.5 in px).
fn fsc_summary(a: &[f32], b: &[f32]) -> (f64, f64) {
    let curve = drgnfly_em::fsc::fsc(a, b, D, None).expect("fsc");
    let low: Vec<f64> =
        curve.freq.iter().zip(&curve.fsc).skip(1).filter(|(f, _)| **f <= 0.25).map(|(_, c)| *c).collect();
    (low.iter().sum::<f64>() / low.len() as f64, curve.resolution_px(0.5))
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn adk_closed_and_open_separate_in_latent_space_and_decode_to_their_maps() {
    let closed = drgnfly_io::fixture_or_skip!("mdanalysis_adk/adk_closed.pdb");
    let open = drgnfly_io::fixture_or_skip!("mdanalysis_adk/adk_open.pdb");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    write_closed_open(&closed, &open, &dir.join("adk2.pdb"));
    let sim = format!(
        "simulate --pdb adk2.pdb -D {D} --Apix {APIX} -n 2000 --snr 0.1 --max-shift 2 --seed 7 -o sim"
    );
    run(dir, &sim.split_whitespace().collect::<Vec<_>>());
    train(dir, &["--zdim", "8", "-n", "6", "--checkpoint", "6"]);

    let metrics = eval_simulation(dir, "6", "sim/labels.pkl", None);
    let acc = metrics["kmeans_accuracy"].as_f64().expect("kmeans_accuracy");
    println!("adk closed/open: k-means(2) accuracy {acc:.4}");
    // Measured: 0.991 after 6 epochs (0.943, 0.974, 0.983, 0.987 after epochs 2–5): the states separate
    // at SNR 0.1 already in this small run; the bar of the full benchmark (D = 64, 5000 images) is 0.995.
    assert!(acc >= 0.97, "k-means accuracy {acc}");

    // The map at each state's median z is closer to its own ground truth than to the other state's.
    let (z, zdim, _) = load_latents(dir.join("out/z.6.pkl")).expect("z.6.pkl");
    let labels = read_labels(&dir.join("sim/labels.pkl"));
    let latents = drgnfly_analysis::latents::Latents::new(&z, zdim).expect("latents");
    let medians = drgnfly_analysis::metrics::median_z_per_state(latents, &labels).expect("medians");
    assert_eq!(medians.len(), 2);
    let truth: Vec<Vec<f32>> = (0..2)
        .map(|k| read_volume(dir.join(format!("sim/gt_volumes/vol_{k:03}.mrc"))).expect("gt map").data)
        .collect();
    for m in &medians {
        let out = format!("state{}.mrc", m.state);
        let zs: Vec<String> = m.median.iter().map(|v| v.to_string()).collect();
        let mut args =
            vec!["eval-vol", "out/weights.6.safetensors", "-c", "out/config.yaml", "-o", out.as_str(), "-z"];
        args.extend(zs.iter().map(String::as_str));
        run(dir, &args);
        let vol = read_volume(dir.join(&out)).expect("decoded map");
        let s = m.state as usize;
        let (own, own_px) = fsc_summary(&vol.data, &truth[s]);
        let (other, other_px) = fsc_summary(&vol.data, &truth[1 - s]);
        println!(
            "state {s}: mean FSC (≤ 0.25/px) own {own:.3}, other {other:.3}; FSC=0.5 own {own_px:.2} px, other {other_px:.2} px"
        );
        // Measured: mean FSC own 0.967 (closed) and 0.939 (open), other 0.62–0.64; FSC=0.5 at 2.13 px
        // (the last shell: beyond Nyquist at D = 32) against its own state, 8.9 px against the other.
        assert!(own > 0.85, "state {s}: mean FSC to its ground truth {own}");
        assert!(own > other + 0.15, "state {s}: FSC own {own} vs other {other}");
        assert!(
            own_px < 3.0 && other_px > 2.0 * own_px,
            "state {s}: FSC=0.5 at {own_px} px, other {other_px} px"
        );
    }
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn adk_dims_trajectory_is_ordered_along_the_first_principal_component() {
    let traj = drgnfly_io::fixture_or_skip!("mdanalysis_adk/adk_dims_heavy_xyz.npy");
    let elements = drgnfly_io::fixture_or_skip!("mdanalysis_adk/adk_heavy_atoms.tsv");
    let tmp = tempfile::tempdir().expect("tempdir");
    let dir = tmp.path();
    let (traj, elements) = (traj.to_string_lossy().into_owned(), elements.to_string_lossy().into_owned());
    let mut sim = vec!["simulate", "--traj", &traj, "--elements", &elements];
    let rest = format!("-D {D} --Apix {APIX} -n 2000 --snr 1 --max-shift 2 --seed 8 -o sim");
    sim.extend(rest.split_whitespace());
    run(dir, &sim);
    train(dir, &["--zdim", "8", "-n", "8", "--checkpoint", "8"]);
    // States for eval-simulation's k-means: the closed half of the path (frames 0–48) and the open half;
    // the frames themselves are what PC1 must order.
    let halves: Vec<i64> =
        read_labels(&dir.join("sim/labels.pkl")).iter().map(|&f| i64::from(f >= 49)).collect();
    drgnfly_io::selection::write_selection(dir.join("halves.pkl"), &halves).expect("halves.pkl");
    let metrics = eval_simulation(dir, "8", "halves.pkl", Some("sim/labels.pkl"));
    assert_eq!(metrics["spearman_against"], "frames");
    println!(
        "adk DIMS trajectory: k-means(2) accuracy for the closed and open halves {}",
        metrics["kmeans_accuracy"]
    );
    let rho = metrics["spearman_pc1"].as_f64().expect("spearman_pc1").abs();
    println!("adk DIMS trajectory: |Spearman(PC1, frame)| {rho:.4}");
    // Measured: 0.956 (k-means accuracy of the halves 0.91). The bar of 0.9 is kept; to reach it in
    // a CI-sized run (2000 images, 8 epochs) the SNR is 1 instead of the benchmark's 0.1. Measured with
    // the same settings otherwise (|Spearman| after epochs 2, 4, 6, 8): SNR 0.1 → 0.38, 0.65, 0.77, 0.82
    // with zdim 1 and 0.83 after 6 epochs with zdim 8; SNR 0.3 → 0.76, 0.88, 0.91, 0.93; SNR 0.5 → 0.79,
    // 0.89, 0.93, 0.94; SNR 1 → 0.82, 0.91, 0.94, 0.96.
    assert!(rho >= 0.9, "|Spearman(PC1, frame)| {rho}");
}
