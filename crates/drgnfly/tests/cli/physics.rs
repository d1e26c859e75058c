//! The physics commands end to end: simulate → backproject → fsc against the ground truth, downsample,
//! phase-flip, map utilities, and their bad-input errors.

use std::path::Path;

use drgnfly_em::ctf::CtfParams;
use drgnfly_em::downsample::Downsampler;
use drgnfly_em::fsc::{fsc, FscCurve};
use drgnfly_em::hartley::HartleyPlan;
use drgnfly_io::mrc::{read_volume, write_volume, MrcDtype, MrcStack, MrcStackWriter};
use drgnfly_io::pickle::{self, NdArray, Poses};
use drgnfly_io::source::{ParticleSource, SourceOptions};

use crate::util::{arrays, drgnfly, fixture, varied_ctf};

/// All images of a stack.
fn images(path: &Path) -> (Vec<f32>, usize, f32) {
    let s = MrcStack::open(path).unwrap();
    let (_, d) = s.image_shape();
    let mut out = vec![0.0; s.len() * d * d];
    s.read_images_into(0, s.len(), &mut out).unwrap();
    (out, d, s.header().apix())
}

/// FSC of a written map against another, both `D³`.
fn fsc_of(a: &Path, b: &Path) -> FscCurve {
    let (a, b) = (read_volume(a).unwrap(), read_volume(b).unwrap());
    fsc(&a.data, &b.data, a.shape[0], None).unwrap()
}

/// Simulates the one-state phantom at D = 32 with CTF and shifts, then backprojects with `mul`.
fn simulate_and_backproject(dir: &Path, snr: &str) -> FscCurve {
    drgnfly(
        dir,
        &[
            "simulate",
            "--phantom",
            "hinge",
            "--states",
            "1",
            "-D",
            "32",
            "-n",
            "2000",
            "--snr",
            snr,
            "--max-shift",
            "3",
            "--defocus-min",
            "5000",
            "--defocus-max",
            "15000",
            "--seed",
            "5",
            "-o",
            "sim",
        ],
    )
    .ok();
    drgnfly(
        dir,
        &[
            "backproject",
            "sim/particles.mrcs",
            "--poses",
            "sim/pose.pkl",
            "--ctf",
            "sim/ctf.pkl",
            "--ctf-alg",
            "mul",
            "-o",
            "bp",
        ],
    )
    .ok();
    fsc_of(&dir.join("bp/backproject.mrc"), &dir.join("sim/gt_volumes/vol_000.mrc"))
}

#[test]
fn noiseless_simulation_backprojects_to_the_ground_truth() {
    let dir = tempfile::tempdir().unwrap();
    let curve = simulate_and_backproject(dir.path(), "inf");
    // Shells up to 0.8 Nyquist (0.4 cycles/px): contrast, shift and CTF conventions agree end to end.
    for (f, c) in curve.freq.iter().zip(&curve.fsc) {
        if *f <= 0.4 + 1e-9 {
            assert!(*c >= 0.9, "FSC {c} at {f} cycles/px: {curve:?}");
        }
    }
    // Files: poses as fractions of D, the CTF, the labels and the headers' pixel size.
    let sim = dir.path().join("sim");
    let poses = pickle::load_poses(sim.join("pose.pkl")).unwrap();
    let t = poses.trans.unwrap();
    assert_eq!(t.len(), 2000);
    let reach = t.iter().flatten().fold(0.0f32, |m, v| m.max(v.abs()));
    assert!(reach <= 3.0 / 32.0 + 1e-6 && reach > 2.5 / 32.0, "max |t| = {reach} (box fractions)");
    let ctf = pickle::load_ctf(sim.join("ctf.pkl")).unwrap();
    assert!(ctf.iter().all(|r| r[0] == 32.0 && r[1] == 3.0 && (5000.0..=15000.0).contains(&r[2])));
    let labels = arrays(&sim.join("labels.pkl"));
    assert_eq!(labels[0].shape, vec![2000]);
    let (_, d, apix) = images(&sim.join("particles.mrcs"));
    assert_eq!((d, apix), (32, 3.0));
    assert_eq!(read_volume(dir.path().join("bp/backproject.mrc")).unwrap().header.apix(), 3.0);
    // The star file holds the same particles and opens as a dataset.
    let src = ParticleSource::open(sim.join("particles.star"), &SourceOptions::default()).unwrap();
    assert_eq!((src.len(), src.box_size()), (2000, 32));
    // Half-map FSC table as cryoDRGN writes it, and the fsc command agrees with the library.
    let text = std::fs::read_to_string(dir.path().join("bp/fsc-vals.txt")).unwrap();
    assert_eq!(text.lines().next(), Some("pixres fsc"));
    assert_eq!(text.lines().count(), 17);
    drgnfly(dir.path(), &["fsc", "bp/backproject.mrc", "sim/gt_volumes/vol_000.mrc", "-o", "fsc.txt"]).ok();
    let got: Vec<f64> = std::fs::read_to_string(dir.path().join("fsc.txt"))
        .unwrap()
        .lines()
        .skip(1)
        .map(|l| l.split(' ').nth(1).unwrap().parse().unwrap())
        .collect();
    assert_eq!(got, curve.fsc);
}

#[test]
fn noisy_simulation_still_gives_a_meaningful_map() {
    let dir = tempfile::tempdir().unwrap();
    let curve = simulate_and_backproject(dir.path(), "0.1");
    // Measured: FSC 0.5 at ≈0.34 cycles/px (8.9 Å at 3 Å/px); noiseless stays above 0.9 to Nyquist.
    let at_half = curve.crossing(0.5);
    assert!(at_half > 0.25 && at_half < 0.45, "FSC=0.5 at {at_half} cycles/px: {curve:?}");
    let json: String = std::fs::read_to_string(dir.path().join("sim/simulate.json")).unwrap();
    assert!(json.contains("\"snr\": 0.1"), "{json}");
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn simulate_from_a_pdb_file() {
    let Some(pdb) = fixture("cryojax/1uao.pdb") else { return };
    let dir = tempfile::tempdir().unwrap();
    drgnfly(
        dir.path(),
        &[
            "simulate", "--pdb", &pdb, "-D", "32", "--Apix", "1.0", "-n", "20", "--snr", "inf", "--no-ctf",
            "-o", "sim",
        ],
    )
    .ok();
    let sim = dir.path().join("sim");
    let vol = read_volume(sim.join("gt_volumes/vol_000.mrc")).unwrap();
    let mass: f64 = vol.data.iter().map(|&v| f64::from(v)).sum();
    assert!(mass > 10.0, "rendered mass {mass}");
    // Without CTF the image is −projection: every image sums to −(the map's sum) (the DC term).
    let (imgs, d, _) = images(&sim.join("particles.mrcs"));
    assert_eq!(d, 32);
    for img in imgs.chunks_exact(d * d) {
        let s: f64 = img.iter().map(|&v| f64::from(v)).sum();
        assert!((s + mass).abs() < 1e-3 * mass, "image sum {s} vs −{mass}");
    }
    assert!(!sim.join("ctf.pkl").exists());
}

#[test]
fn given_poses_are_used_and_round_trip() {
    let dir = tempfile::tempdir().unwrap();
    drgnfly(
        dir.path(),
        &[
            "simulate",
            "--phantom",
            "hinge",
            "--states",
            "1",
            "-D",
            "16",
            "-n",
            "30",
            "--max-shift",
            "2",
            "--snr",
            "inf",
            "-o",
            "a",
        ],
    )
    .ok();
    drgnfly(
        dir.path(),
        &[
            "simulate",
            "--phantom",
            "hinge",
            "--states",
            "1",
            "-D",
            "16",
            "--poses",
            "a/pose.pkl",
            "--snr",
            "inf",
            "--seed",
            "1",
            "-o",
            "b",
        ],
    )
    .ok();
    let (pa, pb) = (
        pickle::load_poses(dir.path().join("a/pose.pkl")).unwrap(),
        pickle::load_poses(dir.path().join("b/pose.pkl")).unwrap(),
    );
    assert_eq!(pa, pb);
    // Same poses and CTF parameters drawn per seed differ, so compare without CTF: identical images.
    drgnfly(
        dir.path(),
        &[
            "simulate",
            "--phantom",
            "hinge",
            "--states",
            "1",
            "-D",
            "16",
            "-n",
            "30",
            "--max-shift",
            "2",
            "--snr",
            "inf",
            "--no-ctf",
            "-o",
            "c",
        ],
    )
    .ok();
    drgnfly(
        dir.path(),
        &[
            "simulate",
            "--phantom",
            "hinge",
            "--states",
            "1",
            "-D",
            "16",
            "--poses",
            "c/pose.pkl",
            "--snr",
            "inf",
            "--no-ctf",
            "--seed",
            "9",
            "-o",
            "e",
        ],
    )
    .ok();
    let (c, _, _) = images(&dir.path().join("c/particles.mrcs"));
    let (e, _, _) = images(&dir.path().join("e/particles.mrcs"));
    let scale = c.iter().fold(0.0f32, |m, v| m.max(v.abs()));
    let diff = c.iter().zip(&e).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
    assert!(diff < 1e-4 * scale, "max difference {diff} (scale {scale})");
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn bad_simulation_and_backprojection_inputs_fail_cleanly() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    write_volume(p.join("a.mrc"), &vec![0.5; 16 * 16 * 16], [16, 16, 16], 1.0, [0.0; 3], MrcDtype::F32)
        .unwrap();
    write_volume(p.join("b.mrc"), &vec![0.5; 18 * 18 * 18], [18, 18, 18], 1.0, [0.0; 3], MrcDtype::F32)
        .unwrap();
    drgnfly(p, &["simulate", "--vol", "a.mrc", "b.mrc", "-n", "10", "-o", "x"])
        .fails_with(&["b.mrc", "same box"]);
    if let Some(s50) = fixture("cryodrgn/50S-vol.mrc") {
        drgnfly(p, &["simulate", "--vol", &s50, "-n", "10", "-o", "x"])
            .fails_with(&["50S-vol.mrc", "not a cube"]);
    }
    drgnfly(p, &["simulate", "--phantom", "hinge", "-D", "16", "--snr", "0", "-o", "x"])
        .fails_with(&["--snr 0", "> 0"]);
    drgnfly(p, &["simulate", "--phantom", "hinge", "-D", "16", "--snr", "-1", "-o", "x"])
        .fails_with(&["--snr -1"]);
    drgnfly(p, &["simulate", "--vol", "a.mrc", "--weights", "1", "2", "-n", "10", "-o", "x"])
        .fails_with(&["--weights", "one weight per state"]);

    drgnfly(
        p,
        &[
            "simulate",
            "--phantom",
            "hinge",
            "--states",
            "1",
            "-D",
            "16",
            "-n",
            "10",
            "--snr",
            "inf",
            "-o",
            "s",
        ],
    )
    .ok();
    let short = Poses {
        rot: vec![[[1.0, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]]; 9],
        trans: Some(vec![[0.0; 2]; 9]),
    };
    pickle::write_poses(p.join("short.pkl"), &short).unwrap();
    drgnfly(p, &["backproject", "s/particles.mrcs", "--poses", "short.pkl", "-o", "bp"]).fails_with(&[
        "short.pkl",
        "poses for 9 particles",
        "has 10",
    ]);
    drgnfly(
        p,
        &["simulate", "--phantom", "hinge", "-D", "16", "-n", "10", "--poses", "short.pkl", "-o", "y"],
    )
    .fails_with(&["short.pkl", "9 poses", "-n asks for 10"]);
    drgnfly(
        p,
        &["backproject", "s/particles.mrcs", "--poses", "s/pose.pkl", "--ctf", "short.pkl", "-o", "bp"],
    )
    .fails_with(&["short.pkl"]);
}

#[test]
fn simulate_takes_ctf_rows_from_a_datasets_ctf_pkl() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let rows = varied_ctf(6, 256.0);
    pickle::write_ctf(p.join("real_ctf.pkl"), &rows).unwrap();
    let sim = |n: &str, out: &str| {
        drgnfly(
            p,
            &["simulate", "--phantom", "hinge", "-D", "16", "-n", n, "--ctf", "real_ctf.pkl", "-o", out],
        )
        .ok();
        pickle::load_ctf(p.join(out).join("ctf.pkl")).unwrap()
    };
    // One row per particle: row i for particle i, with the simulation's box and pixel size (3 Å for the phantom).
    let same = sim("6", "a");
    for (got, want) in same.iter().zip(&rows) {
        assert_eq!(got[..2], [16.0, 3.0]);
        assert_eq!(got[2..], want[2..]);
    }
    // More particles than rows: each particle gets one of the dataset's rows.
    let drawn = sim("40", "b");
    assert!(drawn.iter().all(|r| rows.iter().any(|w| w[2..] == r[2..])));
    assert!(rows.iter().all(|w| drawn.iter().any(|r| w[2..] == r[2..])), "all rows are used");
    drgnfly(p, &["simulate", "--phantom", "hinge", "-D", "16", "--ctf", "missing.pkl", "-o", "c"])
        .fails_with(&["missing.pkl"]);
}

#[test]
fn downsample_halves_the_box_and_keeps_low_frequencies() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    drgnfly(p, &["simulate", "--phantom", "hinge", "-D", "32", "-n", "50", "--snr", "inf", "-o", "sim"]).ok();
    // Small batches and chunks, so batch and stack boundaries fall inside each other.
    drgnfly(p, &["downsample", "sim/particles.mrcs", "-D", "16", "-b", "7", "-o", "ds/p16.mrcs"]).ok();
    drgnfly(
        p,
        &["downsample", "sim/particles.star", "-D", "16", "-b", "7", "--chunk", "20", "-o", "ds/p16.star"],
    )
    .ok();
    let (orig, _, _) = images(&p.join("sim/particles.mrcs"));
    let (small, d, apix) = images(&p.join("ds/p16.mrcs"));
    assert_eq!((d, apix), (16, 6.0), "box halves, pixel size doubles");
    let mut want = vec![0.0f32; 50 * 16 * 16];
    Downsampler::new(32, 16).unwrap().images(&orig, &mut want).unwrap();
    assert_eq!(small, want, "the Fourier-cropped reference");
    // Low frequencies are kept: pixels scale by (D₀/D)² (cryoDRGN's convention) on a box with (D/D₀)² as many
    // pixels, so the DC term (pixel sum) is unchanged.
    for (a, b) in orig.chunks_exact(32 * 32).zip(small.chunks_exact(16 * 16)) {
        let (sa, sb): (f64, f64) =
            (a.iter().map(|&v| f64::from(v)).sum(), b.iter().map(|&v| f64::from(v)).sum());
        assert!((sb - sa).abs() <= 1e-4 * sa.abs().max(1.0), "{sb} vs {sa}");
    }
    // The .star output opens as a dataset over the chunked stacks, with the same images and pixel size.
    let src = ParticleSource::open(p.join("ds/p16.star"), &SourceOptions::default()).unwrap();
    assert_eq!((src.len(), src.box_size()), (50, 16));
    let mut via_star = vec![0.0f32; 50 * 256];
    src.read_many_into(&(0..50).collect::<Vec<_>>(), &mut via_star).unwrap();
    assert_eq!(via_star, small);
    assert!(p.join("ds/p16.2.mrcs").exists() && !p.join("ds/p16.3.mrcs").exists());
    let star = drgnfly_io::relion::RelionParticles::open(p.join("ds/p16.star")).unwrap();
    assert_eq!(star.pixel_size(None).unwrap()[0], 6.0);

    drgnfly(p, &["downsample", "sim/particles.mrcs", "-D", "32", "-o", "x.mrcs"])
        .fails_with(&["-D 32", "smaller than 32"]);
    drgnfly(p, &["downsample", "sim/particles.mrcs", "-D", "15", "-o", "x.mrcs"])
        .fails_with(&["-D 15", "even"]);
    drgnfly(p, &["downsample", "sim/particles.mrcs", "-D", "16", "-o", "x.star"])
        .fails_with(&["needs a .star input"]);
}

#[test]
fn invert_contrast_and_flip_hand_are_exact() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let (nz, ny, nx) = (3, 4, 5);
    let data: Vec<f32> = (0..nz * ny * nx).map(|i| i as f32 * 0.5 - 7.0).collect();
    write_volume(p.join("v.mrc"), &data, [nz, ny, nx], 1.7, [0.0; 3], MrcDtype::F32).unwrap();
    drgnfly(p, &["invert-contrast", "v.mrc", "inv.mrc"]).ok();
    drgnfly(p, &["flip_hand", "v.mrc", "flip.mrc"]).ok();
    let inv = read_volume(p.join("inv.mrc")).unwrap();
    assert_eq!(inv.data, data.iter().map(|v| -v).collect::<Vec<_>>());
    assert_eq!(inv.header.apix(), 1.7);
    let flip = read_volume(p.join("flip.mrc")).unwrap();
    assert_eq!(flip.shape, [nz, ny, nx]);
    for z in 0..nz {
        for i in 0..ny * nx {
            assert_eq!(flip.data[z * ny * nx + i], data[(nz - 1 - z) * ny * nx + i]);
        }
    }
}

#[test]
fn phase_flip_matches_a_hand_computation() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let d = 16;
    let imgs: Vec<f32> = (0..3 * d * d).map(|i| ((i * 37 % 101) as f32 - 50.0) / 10.0).collect();
    let mut w = MrcStackWriter::create(p.join("in.mrcs"), d, d, 2.0, MrcDtype::F32).unwrap();
    w.push_many(&imgs).unwrap();
    w.finish().unwrap();
    // Image 0: w = 1, no defocus, no Cs: CTF ≡ −1, so the output is exactly −image. Images 1, 2: real CTFs.
    let rows = [
        [16.0, 2.0, 0.0, 0.0, 0.0, 300.0, 0.0, 1.0, 0.0],
        [16.0, 2.0, 15000.0, 14000.0, 30.0, 300.0, 2.7, 0.1, 0.0],
        [16.0, 2.0, 8000.0, 8000.0, 0.0, 200.0, 2.0, 0.07, 0.0],
    ];
    pickle::write_array(
        p.join("ctf.pkl"),
        &NdArray::new(vec![3, 9], pickle::ArrayData::F32(rows.iter().flatten().copied().collect())),
    )
    .unwrap();
    drgnfly(p, &["phase-flip", "in.mrcs", "ctf.pkl", "-o", "out.mrcs", "-b", "2"]).ok();
    let (out, _, apix) = images(&p.join("out.mrcs"));
    assert_eq!(apix, 2.0);
    for (a, b) in out[..d * d].iter().zip(&imgs[..d * d]) {
        assert!((a + b).abs() < 1e-4, "{a} vs −{b}");
    }
    // By hand: DFT as the centred Hartley transform, times sign(CTF) on the D×D grid, inverse.
    let plan = HartleyPlan::new(d).unwrap();
    let h = (d / 2) as f32;
    let freqs: Vec<f32> =
        (0..d * d).flat_map(|i| [((i % d) as f32 - h) / 16.0, ((i / d) as f32 - h) / 16.0]).collect();
    for k in 1..3 {
        let mut img = imgs[k * d * d..(k + 1) * d * d].to_vec();
        let mut s = plan.make_scratch();
        plan.ht2_center(&mut img, &mut s).unwrap();
        let mut c = vec![0.0f32; d * d];
        CtfParams::from_pkl_row(rows[k], d, k).unwrap().compute(&freqs, &mut c).unwrap();
        img.iter_mut().zip(&c).for_each(|(v, c)| *v *= c.signum());
        plan.iht2_center(&mut img, &mut s).unwrap();
        let got = &out[k * d * d..(k + 1) * d * d];
        let diff = got.iter().zip(&img).fold(0.0f32, |m, (a, b)| m.max((a - b).abs()));
        assert!(diff < 1e-4, "image {k}: max difference {diff}");
        assert!(got.iter().zip(&imgs[k * d * d..]).any(|(a, b)| (a - b).abs() > 0.1), "image {k} changed");
    }
    pickle::write_array(
        p.join("ctf2.pkl"),
        &NdArray::new(vec![2, 9], pickle::ArrayData::F32(rows[..2].iter().flatten().copied().collect())),
    )
    .unwrap();
    drgnfly(p, &["phase-flip", "in.mrcs", "ctf2.pkl", "-o", "x.mrcs"]).fails_with(&[
        "ctf2.pkl",
        "CTF rows for 2 particles",
        "has 3",
    ]);
}

#[test]
fn gen_mask_thresholds_and_fsc_of_a_map_with_itself() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    let d = 16;
    let data: Vec<f32> = (0..d * d * d)
        .map(|i| {
            let (x, y, z) = ((i % d) as f32 - 8.0, ((i / d) % d) as f32 - 8.0, (i / (d * d)) as f32 - 8.0);
            (-(x * x + y * y + z * z) / 8.0).exp()
        })
        .collect();
    write_volume(p.join("v.mrc"), &data, [d, d, d], 2.0, [0.0; 3], MrcDtype::F32).unwrap();
    drgnfly(p, &["gen-mask", "v.mrc", "m.mrc", "--thresh", "0.3", "--dilate", "0", "--dist", "0"]).ok();
    let m = read_volume(p.join("m.mrc")).unwrap();
    assert_eq!(m.data, data.iter().map(|&v| f32::from(u8::from(v >= 0.3))).collect::<Vec<_>>());
    assert_eq!(m.header.apix(), 2.0);
    // Defaults: 25 Å dilation and a 15 Å edge at 2 Å/px reach the whole 32 Å box, so the mask is ≥ 0.5 near
    // the blob and falls off towards the corners.
    drgnfly(p, &["gen_mask", "v.mrc", "soft.mrc"]).ok();
    let soft = read_volume(p.join("soft.mrc")).unwrap();
    assert_eq!(soft.data[(8 * d + 8) * d + 8], 1.0);
    assert!(soft.data.iter().all(|v| (0.0..=1.0).contains(v)));
    drgnfly(p, &["fsc", "v.mrc", "v.mrc", "--mask", "soft.mrc", "-o", "f.txt", "--plot", "f.png"]).ok();
    let text = std::fs::read_to_string(p.join("f.txt")).unwrap();
    assert!(text
        .lines()
        .skip(1)
        .all(|l| (l.split(' ').nth(1).unwrap().parse::<f64>().unwrap() - 1.0).abs() < 1e-6));
    assert!(std::fs::metadata(p.join("f.png")).unwrap().len() > 1000);
}

#[test]
fn physics_commands_have_help_with_examples_and_cryodrgn_names() {
    let dir = tempfile::tempdir().unwrap();
    let cmds = [
        "simulate",
        "backproject",
        "fsc",
        "gen-mask",
        "phase-flip",
        "downsample",
        "invert-contrast",
        "flip-hand",
    ];
    for cmd in cmds {
        for name in [cmd.to_string(), cmd.replace('-', "_")] {
            let out = std::process::Command::new(env!("CARGO_BIN_EXE_drgnfly"))
                .current_dir(dir.path())
                .args([name.as_str(), "--help"])
                .output()
                .unwrap();
            let text = String::from_utf8_lossy(&out.stdout);
            assert!(out.status.success(), "{name} --help: {}", String::from_utf8_lossy(&out.stderr));
            assert!(text.contains("Examples:") && text.contains(&format!("drgnfly {cmd}")), "{name}: {text}");
        }
    }
    assert_eq!(drgnfly(dir.path(), &["backproject_voxel", "--help"]).code, 0);
}
