//! End-to-end tests of `train-vae`, `train-nn`, `eval-vol` and `eval-images` on small simulated datasets
//! (the hinge phantom of `drgnfly_em::phantom`, projected with CTF and noise by `drgnfly_em::simulate`).
//! Quality is checked against the ground truth: k-means accuracy of the latents and FSC of the maps.

use std::path::{Path, PathBuf};

use drgnfly_em::phantom::HingePhantom;
use drgnfly_em::project::Projector;
use drgnfly_em::rotation::to_f32;
use drgnfly_em::simulate::{simulate, CtfDistribution, CtfSource, SimConfig, States};
use drgnfly_io::mrc::{read_volume, MrcDtype, MrcStackWriter};
use drgnfly_io::pickle::{load_latents, write_ctf, write_poses, Poses};

use crate::util::drgnfly;

const APIX: f32 = 4.0;

/// A simulated dataset on disk and its ground truth.
struct Sim {
    dir: tempfile::TempDir,
    /// State of each particle.
    states: Vec<u32>,
    /// Ground-truth volume of each state (D³).
    volumes: Vec<Vec<f32>>,
}

impl Sim {
    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// `n` particles of the hinge phantom at conformations `thetas` (equal weights), D = `d`, CTF, shifts up
/// to 2 px, white noise at `snr`. Writes particles.mrcs, pose.pkl, ctf.pkl.
fn simulate_hinge(d: usize, n: usize, thetas: &[f64], snr: Option<f64>, seed: u64) -> Sim {
    let dir = tempfile::tempdir().expect("tempdir");
    let phantom = HingePhantom::new(d).expect("phantom");
    let volumes: Vec<Vec<f32>> = thetas.iter().map(|&t| phantom.volume(t).expect("volume")).collect();
    let projectors: Vec<Projector> =
        volumes.iter().map(|v| Projector::new(v, d, 2).expect("projector")).collect();
    let cfg = SimConfig {
        snr,
        ctf: Some(CtfSource::Random(CtfDistribution::default())),
        max_shift_px: 2.0,
        seed,
        ..SimConfig::new(n, APIX)
    };
    let states = States::Projectors { projectors: &projectors, weights: vec![1.0; thetas.len()] };
    let mut writer =
        MrcStackWriter::create(dir.path().join("particles.mrcs"), d, d, APIX, MrcDtype::F32).expect("writer");
    let (mut rot, mut trans, mut ctf, mut truth_states) = (vec![], vec![], vec![], vec![]);
    simulate::<drgnfly_em::Error>(&cfg, &states, |chunk| {
        writer.push_many(chunk.images).expect("write images");
        for t in chunk.truth {
            rot.push(to_f32(&t.rot));
            trans.push([t.shift_px[0] / d as f32, t.shift_px[1] / d as f32]);
            ctf.push(t.ctf_row(d).expect("ctf"));
            truth_states.push(t.state as u32);
        }
        Ok(())
    })
    .expect("simulate");
    writer.finish().expect("finish stack");
    write_poses(dir.path().join("pose.pkl"), &Poses { rot, trans: Some(trans) }).expect("poses");
    write_ctf(dir.path().join("ctf.pkl"), &ctf).expect("ctf");
    Sim { dir, states: truth_states, volumes }
}

fn s(p: &Path) -> String {
    p.to_string_lossy().into_owned()
}

/// Mean FSC over the shells up to `max_freq` cycles/px (DC excluded).
fn mean_fsc(a: &[f32], b: &[f32], d: usize, max_freq: f64) -> f64 {
    let curve = drgnfly_em::fsc::fsc(a, b, d, None).expect("fsc");
    let vals: Vec<f64> =
        curve.freq.iter().zip(&curve.fsc).skip(1).filter(|(f, _)| **f <= max_freq).map(|(_, c)| *c).collect();
    vals.iter().sum::<f64>() / vals.len() as f64
}

/// The small networks the tests train.
const SMALL_NET: [&str; 8] = ["--enc-layers", "2", "--enc-dim", "64", "--dec-layers", "2", "--dec-dim", "64"];

#[test]
fn two_states_separate_in_latent_space_and_decode_to_their_maps() {
    let d = 32;
    let sim = simulate_hinge(d, 1200, &[0.0, 1.0], Some(0.5), 11);
    let out = sim.path("out");
    // One thread: candle's CPU workers spin while waiting, which is slow on a busy test machine; results do
    // not depend on the thread count. 8 epochs reach ≈ 0.99 accuracy (0.95 after 6).
    let mut args: Vec<String> =
        ["--threads", "1", "train-vae", "particles.mrcs", "--poses", "pose.pkl", "--ctf", "ctf.pkl"]
            .map(String::from)
            .to_vec();
    args.extend(
        [
            "--zdim",
            "1",
            "-n",
            "8",
            "-b",
            "8",
            "--lr",
            "3e-3",
            "--checkpoint",
            "4",
            "--seed",
            "3",
            "-o",
            "out",
        ]
        .map(String::from),
    );
    args.extend(SMALL_NET.map(String::from));
    drgnfly(sim.dir.path(), &args).ok();

    assert!(out.join("z.4.pkl").exists() && !out.join("z.5.pkl").exists(), "checkpoints every 4 epochs");
    // As cryoDRGN, training ends with `analyze` of the final epoch: k-means labels for every particle.
    let labels =
        drgnfly_io::pickle::load_array(out.join("analyze.8/kmeans20/labels.pkl")).expect("labels.pkl");
    assert_eq!(labels.shape, [1200]);
    // (f) z.8.pkl: N rows of zdim 1 with log variances, dataset order.
    let (z, zdim, logvar) = load_latents(out.join("z.8.pkl")).expect("z.8.pkl");
    assert_eq!((z.len(), zdim), (1200, 1));
    assert_eq!(logvar.map(|l| l.len()), Some(1200));
    let log = std::fs::read_to_string(out.join("run.log")).expect("run.log");
    let curve = drgnfly_analysis::learning_curve::parse_learning_curve(&log);
    assert_eq!(curve.epochs.len(), 8, "{log}");
    assert!(curve.epochs[7].total_loss < curve.epochs[0].total_loss, "{log}");

    // (a) k-means(2) on z recovers the states.
    let latents = drgnfly_analysis::latents::Latents::new(&z, 1).expect("latents");
    let params = drgnfly_analysis::kmeans::KMeansParams { k: 2, n_init: 3, ..Default::default() };
    let km = drgnfly_analysis::kmeans::kmeans(latents, &params).expect("kmeans");
    let acc = drgnfly_analysis::metrics::best_match_accuracy(&km.labels, &sim.states).expect("accuracy");
    assert!(acc.accuracy >= 0.95, "k-means accuracy {}", acc.accuracy);

    // The map at each state's median z matches that state's ground truth better than the other state's.
    let medians = drgnfly_analysis::metrics::median_z_per_state(latents, &sim.states).expect("medians");
    for m in &medians {
        let vol_path = sim.path(&format!("state{}.mrc", m.state));
        let zarg = m.median[0].to_string();
        drgnfly(
            sim.dir.path(),
            &[
                "--threads",
                "1",
                "eval-vol",
                "out/weights.8.safetensors",
                "-c",
                "out/config.yaml",
                "-z",
                &zarg,
                "-o",
                &s(&vol_path),
            ],
        )
        .ok();
        let vol = read_volume(&vol_path).expect("volume");
        assert_eq!(vol.shape, [d, d, d]);
        let own = mean_fsc(&vol.data, &sim.volumes[m.state as usize], d, 0.25);
        let other = mean_fsc(&vol.data, &sim.volumes[1 - m.state as usize], d, 0.25);
        println!("state {}: median z {:?}, FSC own {own:.3}, other {other:.3}", m.state, m.median);
        // Measured: own ≈ 0.96, other ≈ 0.73 (mean over shells up to 0.25 cycles/px).
        assert!(own > 0.85, "state {}: mean FSC to its ground truth {own}", m.state);
        assert!(own > other + 0.1, "state {}: FSC own {own} vs other {other}", m.state);
    }

    // (e) eval-vol along a path: vol_001… with the pixel size of ctf.pkl (D₀·Apix₀/D = 4 Å), and ×D/d
    // when downsampled.
    drgnfly(
        sim.dir.path(),
        &[
            "--threads",
            "1",
            "eval-vol",
            "out/weights.8.safetensors",
            "-c",
            "out/config.yaml",
            "--z-start",
            "-1",
            "--z-end",
            "1",
            "-n",
            "3",
            "-o",
            "path",
        ],
    )
    .ok();
    for i in 1..=3 {
        let v = read_volume(sim.path(&format!("path/vol_{i:03}.mrc"))).expect("path volume");
        assert_eq!(v.shape, [d, d, d]);
        assert!((v.voxel_size[0] - APIX).abs() < 1e-5, "Apix {:?}", v.voxel_size);
    }
    assert!(!sim.path("path/vol_004.mrc").exists());
    drgnfly(
        sim.dir.path(),
        &[
            "--threads",
            "1",
            "eval-vol",
            "out/weights.8.safetensors",
            "-c",
            "out/config.yaml",
            "-z",
            "0",
            "-o",
            "small.mrc",
            "-d",
            "16",
            "--Apix",
            "2.5",
            "--crop",
            "12",
        ],
    )
    .ok();
    let small = read_volume(sim.path("small.mrc")).expect("small volume");
    assert_eq!(small.shape, [12, 12, 12]);
    assert!((small.voxel_size[0] - 5.0).abs() < 1e-5, "Apix {:?}", small.voxel_size);
    assert!((small.origin[0] - 2.0 * 5.0).abs() < 1e-5, "origin {:?}", small.origin);

    // eval-images: same latents as the checkpoint's z file (both in dataset order, z = μ).
    drgnfly(
        sim.dir.path(),
        &[
            "--threads",
            "1",
            "eval-images",
            "particles.mrcs",
            "out/weights.8.safetensors",
            "-c",
            "out/config.yaml",
            "--poses",
            "pose.pkl",
            "--ctf",
            "ctf.pkl",
            "-o",
            "losses.pkl",
            "--out-z",
            "z.eval.pkl",
        ],
    )
    .ok();
    let (z_eval, _, _) = load_latents(sim.path("z.eval.pkl")).expect("z.eval.pkl");
    let max_diff = z.iter().zip(&z_eval).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
    assert!(max_diff < 1e-4, "eval-images z differs from z.8.pkl by {max_diff}");
}

#[test]
fn resume_from_latest_matches_a_straight_run() {
    let d = 16;
    let sim = simulate_hinge(d, 96, &[0.0, 1.0], Some(1.0), 5);
    let train = |outdir: &str, epochs: &str, load: bool| {
        let mut args: Vec<String> =
            ["--threads", "1", "train-vae", "particles.mrcs", "--poses", "pose.pkl", "--ctf", "ctf.pkl"]
                .map(String::from)
                .to_vec();
        args.extend(
            ["--zdim", "2", "-n", epochs, "-b", "16", "--seed", "9", "-o", outdir, "--no-analysis"]
                .map(String::from),
        );
        args.extend(
            ["--enc-layers", "1", "--enc-dim", "16", "--dec-layers", "1", "--dec-dim", "16"]
                .map(String::from),
        );
        if load {
            args.extend(["--load", "latest"].map(String::from));
        }
        drgnfly(sim.dir.path(), &args).ok();
    };
    train("straight", "3", false);
    train("resumed", "2", false);
    train("resumed", "3", true);
    let log = std::fs::read_to_string(sim.path("resumed/run.log")).expect("run.log");
    assert!(log.contains("after epoch 2"), "{log}");
    assert!(!log.contains("Epoch: 1 ") || log.matches("Epoch: 3 ").count() == 1, "{log}");
    let a =
        drgnfly_nn::read_checkpoint(&sim.path("straight/weights.3.safetensors"), &candle_core::Device::Cpu)
            .expect("straight checkpoint");
    let b =
        drgnfly_nn::read_checkpoint(&sim.path("resumed/weights.3.safetensors"), &candle_core::Device::Cpu)
            .expect("resumed checkpoint");
    assert_eq!(b.epoch, 3);
    assert!(!a.optimizer.is_empty());
    for (name, t) in a.model.iter().chain(a.optimizer.iter()) {
        let other =
            b.model.get(name).or_else(|| b.optimizer.get(name)).unwrap_or_else(|| panic!("{name} missing"));
        let (x, y) = (t.flatten_all().expect("x"), other.flatten_all().expect("y"));
        let (x, y) = (
            x.to_dtype(candle_core::DType::F64).expect("x").to_vec1::<f64>().expect("x"),
            y.to_dtype(candle_core::DType::F64).expect("y").to_vec1::<f64>().expect("y"),
        );
        assert_eq!(x, y, "{name} differs between the straight and the resumed run");
    }
    let (za, _, _) = load_latents(sim.path("straight/z.3.pkl")).expect("z");
    let (zb, _, _) = load_latents(sim.path("resumed/z.3.pkl")).expect("z");
    assert_eq!(za, zb);
}

#[test]
fn no_amp_keeps_float32_and_the_log_says_which_precision_ran() {
    let sim = simulate_hinge(16, 48, &[0.0, 1.0], Some(1.0), 6);
    let train = |outdir: &str, extra: &[&str]| {
        let mut args: Vec<&str> =
            vec!["--threads", "1", "train-vae", "particles.mrcs", "--poses", "pose.pkl"];
        args.extend(["--ctf", "ctf.pkl", "--zdim", "2", "-n", "1", "-b", "16", "--seed", "4", "-o", outdir]);
        args.extend(["--no-analysis", "--enc-dim", "32", "--dec-dim", "32"]);
        args.extend(extra);
        drgnfly(sim.dir.path(), &args).ok();
        let log = std::fs::read_to_string(sim.path(&format!("{outdir}/run.log"))).expect("run.log");
        let (z, _, _) = load_latents(sim.path(&format!("{outdir}/z.1.pkl"))).expect("z");
        (log, z)
    };
    let (mixed_log, mixed_z) = train("mixed", &[]);
    let (f32_log, f32_z) = train("f32", &["--no-amp"]);
    assert!(f32_log.contains("precision float32 (--no-amp)"), "{f32_log}");
    if drgnfly_nn::DecoderConfig::mixed_precision_available() {
        assert!(mixed_log.contains("precision mixed (bfloat16 products, float32 sums)"), "{mixed_log}");
        assert_ne!(mixed_z, f32_z, "bf16 products must change the trained model's latents slightly");
        let diff = mixed_z.iter().zip(&f32_z).map(|(a, b)| (a - b).abs()).fold(0f32, f32::max);
        let scale = f32_z.iter().map(|v| v.abs()).fold(0f32, f32::max);
        assert!(diff < 0.1 * scale, "mixed and full precision latents differ by {diff} (scale {scale})");
    } else {
        assert!(mixed_log.contains("precision float32 (this CPU has no AVX-512 BF16)"), "{mixed_log}");
        assert_eq!(mixed_z, f32_z);
    }
}

#[test]
fn train_nn_reconstructs_the_phantom() {
    let d = 32;
    let sim = simulate_hinge(d, 800, &[0.0, 0.5], None, 21);
    // One state only: keep the θ = 0 particles.
    let ind: Vec<i64> =
        sim.states.iter().enumerate().filter(|(_, &s)| s == 0).map(|(i, _)| i as i64).collect();
    drgnfly_io::selection::write_selection(sim.path("ind.pkl"), &ind).expect("ind");
    drgnfly(
        sim.dir.path(),
        &[
            "--threads",
            "1",
            "train-nn",
            "particles.mrcs",
            "--poses",
            "pose.pkl",
            "--ctf",
            "ctf.pkl",
            "--ind",
            "ind.pkl",
            "-n",
            "4",
            "-b",
            "8",
            "--lr",
            "1e-3",
            "--layers",
            "2",
            "--dim",
            "64",
            "--seed",
            "1",
            "-o",
            "nn",
        ],
    )
    .ok();
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        let mode =
            std::fs::metadata(sim.path("nn/weights.4.safetensors")).expect("weights").permissions().mode();
        assert_eq!(mode & 0o777, 0o644, "checkpoints are readable like every other output");
    }
    let vol = read_volume(sim.path("nn/reconstruct.4.mrc")).expect("reconstruct.4.mrc");
    assert_eq!(vol.shape, [d, d, d]);
    assert!((vol.voxel_size[0] - APIX).abs() < 1e-5);
    let first = read_volume(sim.path("nn/reconstruct.1.mrc")).expect("reconstruct.1.mrc");
    let fsc_last = mean_fsc(&vol.data, &sim.volumes[0], d, 0.25);
    let fsc_first = mean_fsc(&first.data, &sim.volumes[0], d, 0.25);
    println!("train-nn: mean FSC to ground truth (≤ 0.25 cycles/px): epoch 1 {fsc_first:.3}, epoch 4 {fsc_last:.3}");
    // Measured: 0.67 after epoch 1, 0.87 after epoch 4.
    assert!(fsc_last > 0.75, "FSC {fsc_last}");
    assert!(fsc_last > fsc_first, "{fsc_first} → {fsc_last}");
}

#[test]
fn nan_images_are_reported_with_their_particle_and_batch() {
    let d = 16;
    let sim = simulate_hinge(d, 40, &[0.0], None, 2);
    // Rewrite the stack with a NaN in particle 21.
    let stack = drgnfly_io::mrc::MrcStack::open(sim.path("particles.mrcs")).expect("stack");
    let mut w = MrcStackWriter::create(sim.path("bad.mrcs"), d, d, APIX, MrcDtype::F32).expect("writer");
    for i in 0..40 {
        let mut img = stack.read_image(i).expect("image");
        if i == 21 {
            img[3 * d + 5] = f32::NAN;
        }
        w.push(&img).expect("push");
    }
    w.finish().expect("finish");
    let base = [
        "train-vae",
        "bad.mrcs",
        "--poses",
        "pose.pkl",
        "--ctf",
        "ctf.pkl",
        "--zdim",
        "1",
        "-n",
        "1",
        "-o",
        "out",
    ];
    let small = ["--enc-dim", "8", "--dec-dim", "8", "--enc-layers", "1", "--dec-layers", "1"];
    // The normalization estimate reads every image of a small dataset first.
    let args: Vec<&str> = base.iter().chain(&small).copied().collect();
    drgnfly(sim.dir.path(), &args).fails_with(&[
        "bad.mrcs",
        "particle 21",
        "pixel (x 5, y 3) = NaN",
        "--norm",
    ]);
    // With --norm the bad image is met in training: the batch is named.
    let args: Vec<&str> =
        base.iter().chain(&small).chain(&["--norm", "0", "1", "--seed", "0"]).copied().collect();
    drgnfly(sim.dir.path(), &args).fails_with(&["epoch 1, batch", "particle 21", "NaN"]);
}

#[test]
fn mismatched_inputs_are_clear_errors() {
    let d = 16;
    let sim = simulate_hinge(d, 20, &[0.0], None, 4);
    let poses = drgnfly_io::pickle::load_poses(sim.path("pose.pkl")).expect("poses");
    let short = Poses { rot: poses.rot[..19].to_vec(), trans: poses.trans.map(|t| t[..19].to_vec()) };
    write_poses(sim.path("short.pkl"), &short).expect("short poses");
    let common = ["particles.mrcs", "--ctf", "ctf.pkl", "-o", "out"];
    let run = |extra: &[&str]| {
        let args: Vec<&str> = ["train-vae"].iter().chain(&common).chain(extra).copied().collect();
        drgnfly(sim.dir.path(), &args)
    };
    run(&["--poses", "short.pkl", "--zdim", "1"]).fails_with(&["short.pkl has 19 poses", "20 particles"]);
    run(&["--poses", "pose.pkl", "--zdim", "0"]).fails_with(&["--zdim 0"]);
    run(&["--poses", "pose.pkl", "--zdim", "1", "--beta", "a"]).fails_with(&["schedule", "--beta-control"]);
    // A value clap cannot parse is a usage error (exit 2) that says what is accepted.
    let out = run(&["--poses", "pose.pkl", "--zdim", "1", "--beta", "e"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    assert!(
        out.stderr.contains("`e` is neither a number ≥ 0 nor a schedule name a, b, c or d"),
        "{}",
        out.stderr
    );
    let ctf = drgnfly_io::pickle::load_ctf(sim.path("ctf.pkl")).expect("ctf");
    write_ctf(sim.path("ctf21.pkl"), &[ctf.clone(), ctf[..1].to_vec()].concat()).expect("ctf21");
    drgnfly(
        sim.dir.path(),
        &["train-nn", "particles.mrcs", "--poses", "pose.pkl", "--ctf", "ctf21.pkl", "-o", "out"],
    )
    .fails_with(&["ctf21.pkl has 21 CTF rows", "20 particles"]);
    run(&["--poses", "pose.pkl", "--zdim", "1", "--load", "latest"])
        .fails_with(&["--load latest", "no weights"]);
}

/// cryoDRGN 4.3.1 `eval_vol het_weights.pkl -c het_config.yaml -z 0.5 -1 0.25 0 0.3 -0.2 1 -0.7 --Apix 2`
/// (CPU, torch 2.15): values at [z, y, x] and the sum of squares of the 64³ map.
const CRYODRGN_VOL_PROBES: [((usize, usize, usize), f64); 6] = [
    ((32, 32, 32), -5.682858467e+00),
    ((0, 0, 0), -1.182004344e-04),
    ((10, 20, 30), 3.771096934e-03),
    ((40, 33, 2), 1.602877676e-02),
    ((63, 1, 47), -1.349069760e-03),
    ((31, 32, 33), -2.598778963e+00),
];
const CRYODRGN_VOL_SUMSQ: f64 = 1.075312835e+03;

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn eval_vol_on_cryodrgn_weights_matches_cryodrgn() {
    let (Some(weights), Some(config)) =
        (crate::util::fixture("cryodrgn/het_weights.pkl"), crate::util::fixture("cryodrgn/het_config.yaml"))
    else {
        return;
    };
    let dir = tempfile::tempdir().expect("tempdir");
    let z = ["-z", "0.5", "-1", "0.25", "0", "0.3", "-0.2", "1", "-0.7"];
    let run = |out: &str, extra: &[&str]| {
        let mut args = vec!["--threads", "1", "eval-vol", &weights, "-c", &config, "-o", out, "--Apix", "2"];
        args.extend(z);
        args.extend(extra);
        drgnfly(dir.path(), &args).ok();
        read_volume(dir.path().join(out)).expect("volume")
    };
    let vol = run("vol.mrc", &[]);
    assert_eq!(vol.shape, [64, 64, 64]);
    assert_eq!(vol.voxel_size, [2.0; 3]);
    let at = |v: &[f32], (z, y, x): (usize, usize, usize)| v[(z * 64 + y) * 64 + x] as f64;
    for (p, want) in CRYODRGN_VOL_PROBES {
        assert!((at(&vol.data, p) - want).abs() < 1e-5 * 5.68, "voxel {p:?}: {} vs {want}", at(&vol.data, p));
    }
    let sumsq: f64 = vol.data.iter().map(|&v| (v as f64).powi(2)).sum();
    assert!((sumsq / CRYODRGN_VOL_SUMSQ - 1.0).abs() < 1e-5, "Σv² {sumsq}");
    // --flip reverses z, --invert negates.
    let flipped = run("flip.mrc", &["--flip", "--invert"]);
    for p in [(0, 3, 5), (20, 40, 9), (63, 63, 0)] {
        assert_eq!(at(&flipped.data, p), -at(&vol.data, (63 - p.0, p.1, p.2)));
    }
}
