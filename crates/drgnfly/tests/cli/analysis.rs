//! analyze, the traversals, analyze-convergence, select-clusters, select-particles and
//! eval-simulation on fake training directories built from synthetic latents.

use std::path::{Path, PathBuf};

use drgnfly_analysis::metrics::best_match_accuracy;
use drgnfly_analysis::pca::Pca;
use drgnfly_analysis::plot::RgbImage;
use drgnfly_analysis::traversal::parse_z_text;
use drgnfly_analysis::Latents;
use drgnfly_io::pickle;
use drgnfly_io::relion::RelionParticles;
use drgnfly_io::selection::Selection;

use crate::util::{drgnfly, fixture, write_ind};

/// Deterministic standard normals (LCG + Box–Muller); tests need no RNG crate.
struct Normal(u64);

impl Normal {
    fn uniform(&mut self) -> f64 {
        self.0 = self.0.wrapping_mul(6364136223846793005).wrapping_add(1442695040888963407);
        ((self.0 >> 11) as f64 + 0.5) / (1u64 << 53) as f64
    }
    fn next(&mut self) -> f32 {
        let (u, v) = (self.uniform(), self.uniform());
        ((-2.0 * u.ln()).sqrt() * (2.0 * std::f64::consts::PI * v).cos()) as f32
    }
}

/// `n` particles in 3 clusters (label i % 3) of σ 0.5 whose centres lie 10 apart on the line
/// (t, t, 0, …)/√2, so PC1 orders the clusters.
fn clustered(n: usize, zdim: usize, seed: u64) -> (Vec<f32>, Vec<u32>) {
    let mut rng = Normal(seed);
    let mut z = Vec::with_capacity(n * zdim);
    let labels: Vec<u32> = (0..n).map(|i| (i % 3) as u32).collect();
    for &l in &labels {
        let t = 10.0 * l as f32 / 2f32.sqrt();
        for d in 0..zdim {
            let centre = if d < 2 { t } else { 0.0 };
            z.push(centre + 0.5 * rng.next());
        }
    }
    (z, labels)
}

/// A training directory: z.1.pkl … z.E.pkl from `epochs`, a run.log with a NaN epoch, a config.yaml
/// (with `ind` as dataset_args.ind when given).
fn workdir(root: &Path, epochs: &[Vec<f32>], zdim: usize, ind: Option<&Path>) -> PathBuf {
    let wd = root.join("run");
    std::fs::create_dir_all(&wd).unwrap();
    let mut log = String::from("starting\n");
    for (e, z) in epochs.iter().enumerate() {
        let logvar = vec![-2.0f32; z.len()];
        pickle::write_latents(wd.join(format!("z.{}.pkl", e + 1)), z, zdim, Some(&logvar)).unwrap();
        let total = if e == 1 { "nan".to_string() } else { format!("{:.4e}", 1.0 / (e + 1) as f64) };
        log.push_str(&format!(
            "2026-01-01 00:00:0{e} # =====> Epoch: {} Average gen loss = {total}, KLD = 2.5, total loss = {total}; Finished in 0:00:01.5\n",
            e + 1
        ));
    }
    std::fs::write(wd.join("run.log"), log).unwrap();
    let ind = ind.map_or("null".to_string(), |p| p.display().to_string());
    std::fs::write(
        wd.join("config.yaml"),
        format!(
            "dataset_args:\n  ctf: null\n  ind: {ind}\n  norm: [0.0, 1.0]\n  particles: p.mrcs\nlattice_args:\n  D: 33\n  \
             extent: 0.5\nmodel_args:\n  zdim: {zdim}\n"
        ),
    )
    .unwrap();
    wd
}

fn png(path: &Path) -> RgbImage {
    let bytes = std::fs::read(path).unwrap_or_else(|e| panic!("{}: {e}", path.display()));
    RgbImage::decode_png(&bytes).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

fn z_text(path: &Path) -> (Vec<f32>, usize) {
    parse_z_text(&std::fs::read_to_string(path).unwrap()).unwrap()
}

fn labels_of(path: &Path) -> Vec<u32> {
    Selection::load(path).unwrap().indices().iter().map(|&l| l as u32).collect()
}

#[test]
fn analyze_writes_the_cryodrgn_layout_and_recovers_the_clusters() {
    let dir = tempfile::tempdir().unwrap();
    let (z, truth) = clustered(300, 4, 1);
    let epochs: Vec<Vec<f32>> = (0..5).map(|_| z.clone()).collect();
    let wd = workdir(dir.path(), &epochs, 4, None);
    let out = drgnfly(dir.path(), &["analyze", "run", "5", "--skip-vol", "--ksample", "3"]).ok();
    assert!(out.stderr.contains("--skip-vol"), "the summary says volumes were skipped:\n{}", out.stderr);
    let a = wd.join("analyze.5");

    // k-means: one int64 label per particle, the synthetic clusters recovered exactly.
    let labels_pkl = pickle::load_array(a.join("kmeans3/labels.pkl")).unwrap();
    assert_eq!(labels_pkl.dtype(), pickle::DType::I64);
    let labels = labels_of(&a.join("kmeans3/labels.pkl"));
    assert_eq!(labels.len(), 300);
    assert_eq!(best_match_accuracy(&labels, &truth).unwrap().accuracy, 1.0);
    // Centres are particles of three different clusters, and their z rows are in centers.txt.
    let centres: Vec<usize> = std::fs::read_to_string(a.join("kmeans3/centers_ind.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    assert_eq!(centres.len(), 3);
    let mut classes: Vec<u32> = centres.iter().map(|&i| truth[i]).collect();
    classes.sort_unstable();
    assert_eq!(classes, vec![0, 1, 2]);
    let (cz, cdim) = z_text(&a.join("kmeans3/centers.txt"));
    assert_eq!(cdim, 4);
    for (k, &i) in centres.iter().enumerate() {
        assert_eq!(&cz[4 * k..4 * k + 4], &z[4 * i..4 * i + 4], "centre {k} is particle {i}");
    }
    // UMAP cache and PC traversals.
    assert_eq!(pickle::load_array(a.join("umap.pkl")).unwrap().shape, vec![300, 2]);
    for pc in ["pc1", "pc2"] {
        let (tz, d) = z_text(&a.join(pc).join("z_values.txt"));
        assert_eq!((tz.len() / d, d), (10, 4), "{pc}");
    }
    // Pictures decode.
    for name in [
        "z_pca.png",
        "z_pca_hexbin.png",
        "z_pca_marginals.png",
        "umap.png",
        "umap_hexbin.png",
        "umap_marginals.png",
        "learning_curve_epoch5.png",
        "kmeans3/z_pca.png",
        "kmeans3/umap.png",
        "pc1/pca_traversal.png",
        "pc2/umap_traversal.png",
    ] {
        let img = png(&a.join(name));
        assert!(img.width() > 100 && img.height() > 100, "{name}");
    }
    // A self-contained report that lists what was written and notes the NaN epoch.
    let html = std::fs::read_to_string(a.join("report.html")).unwrap();
    assert!(!html.contains("http"), "the report must not reference the network");
    assert!(html.contains("kmeans3/labels.pkl") && html.contains("umap.pkl"));
    assert!(html.contains("non-finite total loss at epoch(s) [2]"), "NaN epoch noted");
}

#[test]
fn analyze_handles_zdim_1_constant_latents_and_fewer_particles_than_k() {
    let dir = tempfile::tempdir().unwrap();
    // zdim 1: z.png, z_hist.png and the percentile series, increasing.
    let z1: Vec<f32> = (0..200).map(|i| (i as f32 * 0.37).sin() * 3.0).collect();
    let wd = workdir(&dir.path().join("z1"), std::slice::from_ref(&z1), 1, None);
    drgnfly(dir.path(), &["analyze", wd.to_str().unwrap(), "1", "--skip-vol"]).ok();
    let a = wd.join("analyze.1");
    assert!(png(&a.join("z.png")).width() > 100 && png(&a.join("z_hist.png")).width() > 100);
    let (zs, d) = z_text(&a.join("z_values.txt"));
    assert_eq!((zs.len(), d), (10, 1));
    assert!(zs.windows(2).all(|w| w[0] <= w[1]), "percentiles increase: {zs:?}");
    let (lo, hi) = z1.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    assert!(zs[0] > lo && zs[9] < hi, "5th–95th percentiles lie inside the data");

    // All latents equal.
    let flat = vec![0.5f32; 50 * 3];
    let wd = workdir(&dir.path().join("flat"), &[flat], 3, None);
    drgnfly(dir.path(), &["analyze", wd.to_str().unwrap(), "1", "--skip-vol", "--ksample", "4"]).ok();
    assert_eq!(labels_of(&wd.join("analyze.1/kmeans4/labels.pkl")).len(), 50);

    // Five particles, K = 20 asked: K drops to 5 with a warning.
    let (few, _) = clustered(5, 3, 2);
    let wd = workdir(&dir.path().join("few"), &[few], 3, None);
    let out = drgnfly(dir.path(), &["analyze", wd.to_str().unwrap(), "-1", "--skip-vol"]).ok();
    assert!(out.stderr.contains("using K = 5"), "{}", out.stderr);
    let labels = labels_of(&wd.join("analyze.1/kmeans5/labels.pkl"));
    let mut sorted = labels.clone();
    sorted.sort_unstable();
    assert_eq!(sorted, vec![0, 1, 2, 3, 4], "five particles, five classes");
}

#[test]
fn traversals_parse_back_with_the_right_shapes_and_endpoints() {
    let dir = tempfile::tempdir().unwrap();
    let (z, _) = clustered(300, 4, 3);
    let wd = workdir(dir.path(), std::slice::from_ref(&z), 4, None);
    let zfile = wd.join("z.1.pkl");
    let zf = zfile.to_str().unwrap();

    drgnfly(dir.path(), &["pc-traversal", zf, "--pc", "1", "-n", "7", "-o", "pcs"]).ok();
    let (path, d) = z_text(&dir.path().join("pcs/pc1.txt"));
    assert_eq!((path.len() / d, d), (7, 4));
    // The end points sit at the 5th and 95th percentiles of PC1, the other PCs at 0.
    let lat = Latents::new(&z, 4).unwrap();
    let pca = Pca::fit(lat).unwrap();
    let pc1 = pca.transform(lat, 1).unwrap();
    let ends = pca.transform(Latents::new(&path, 4).unwrap(), 4).unwrap();
    let p5 = drgnfly_analysis::linalg::percentile(&pc1, 5.0).unwrap();
    let p95 = drgnfly_analysis::linalg::percentile(&pc1, 95.0).unwrap();
    assert!((f64::from(ends[0]) - p5).abs() < 1e-3, "{} vs {p5}", ends[0]);
    assert!((f64::from(ends[24]) - p95).abs() < 1e-3, "{} vs {p95}", ends[24]);
    assert!(ends[1..4].iter().all(|v| v.abs() < 1e-3), "PC2–4 at 0: {:?}", &ends[1..4]);
    // Without --pc: one file per component.
    drgnfly(dir.path(), &["pc_traversal", zf, "-o", "all"]).ok();
    assert!((1..=4).all(|k| dir.path().join(format!("all/pc{k}.txt")).is_file()));

    drgnfly(dir.path(), &["direct-traversal", zf, "--anchors", "0", "150", "7", "-n", "4", "-o", "line.txt"])
        .ok();
    let (line, d) = z_text(&dir.path().join("line.txt"));
    assert_eq!((line.len() / d, d), (9, 4));
    assert_eq!(&line[..4], &z[..4]);
    assert_eq!(&line[16..20], &z[600..604], "the middle anchor is reached after 4 points");
    assert_eq!(&line[32..], &z[28..32]);

    // Graph traversal on a curve (given as text): the path runs along it from one end to the other.
    let mut rng = Normal(11);
    let curve: Vec<f32> = (0..200)
        .flat_map(|i| {
            let t = i as f32 / 20.0;
            [t, t.sin(), 0.02 * rng.next(), 0.02 * rng.next()]
        })
        .collect();
    let text: String = curve.chunks(4).map(|r| format!("{} {} {} {}\n", r[0], r[1], r[2], r[3])).collect();
    std::fs::write(dir.path().join("curve.txt"), text).unwrap();
    let (curve, _) = z_text(&dir.path().join("curve.txt"));
    drgnfly(
        dir.path(),
        &["graph-traversal", "curve.txt", "--anchors", "0", "199", "-o", "gz.txt", "--outind", "gi.txt"],
    )
    .ok();
    let idx: Vec<usize> = std::fs::read_to_string(dir.path().join("gi.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    let (gz, d) = z_text(&dir.path().join("gz.txt"));
    assert_eq!((idx[0], idx[idx.len() - 1]), (0, 199));
    assert_eq!(gz.len() / d, idx.len());
    assert!(idx.windows(2).all(|w| w[0] < w[1]), "the path follows the curve: {idx:?}");
    for (k, &i) in idx.iter().enumerate() {
        assert_eq!(&gz[4 * k..4 * k + 4], &curve[4 * i..4 * i + 4], "path point {k} is particle {i}");
    }

    // The clusters are far apart: no path between particles of different clusters.
    drgnfly(dir.path(), &["graph-traversal", zf, "--anchors", "0", "299"])
        .fails_with(&["no path", "--avg-neighbors"]);
    drgnfly(dir.path(), &["direct-traversal", zf, "--anchors", "0", "300"]).fails_with(&["--anchors", "300"]);
}

/// Epoch latents: clusters plus a per-particle offset that shrinks to 0 by epoch `settle` (or keeps
/// growing when `settle` is `None`), plus small jitter.
fn drifting(epochs: usize, settle: Option<usize>) -> Vec<Vec<f32>> {
    let (base, _) = clustered(300, 3, 4);
    let mut rng = Normal(5);
    let offset: Vec<f32> = (0..base.len()).map(|_| 3.0 * rng.next()).collect();
    (1..=epochs)
        .map(|e| {
            let w = match settle {
                Some(s) => (s as f32 - e as f32).max(0.0) / s as f32,
                None => e as f32,
            };
            base.iter().zip(&offset).map(|(b, o)| b + w * o + 0.01 * rng.next()).collect()
        })
        .collect()
}

#[test]
fn convergence_verdict_follows_the_latents() {
    let dir = tempfile::tempdir().unwrap();
    let settled = workdir(&dir.path().join("a"), &drifting(10, Some(4)), 3, None);
    let out = drgnfly(
        dir.path(),
        &["analyze-convergence", settled.to_str().unwrap(), "10", "--epoch-interval", "1", "--skip-vol"],
    )
    .ok();
    let verdict = std::fs::read_to_string(settled.join("convergence.10/verdict.txt")).unwrap();
    assert!(verdict.starts_with("settled"), "{verdict}\n{}", out.stderr);
    let shifts = png(&settled.join("convergence.10/plots/02_encoder_latent_vector_shifts.png"));
    assert!(shifts.height() > shifts.width(), "two stacked panels");
    assert!(settled.join("convergence.10/plots/03_decoder_UMAP-sketching.png").is_file());

    let moving = workdir(&dir.path().join("b"), &drifting(10, None), 3, None);
    drgnfly(
        dir.path(),
        &["analyze_convergence", moving.to_str().unwrap(), "-1", "--epoch-interval", "2", "--skip-umap"],
    )
    .ok();
    let verdict = std::fs::read_to_string(moving.join("convergence.10/verdict.txt")).unwrap();
    assert!(verdict.starts_with("not settled"), "{verdict}");
    let json: serde_json::Value = serde_json::from_str(
        &std::fs::read_to_string(moving.join("convergence.10/convergence.json")).unwrap(),
    )
    .unwrap();
    assert_eq!(json["epochs"], serde_json::json!([2, 4, 6, 8, 10]));
    assert_eq!(json["shifts"].as_array().unwrap().len(), 4);
}

#[test]
fn select_clusters_writes_the_chosen_classes() {
    let dir = tempfile::tempdir().unwrap();
    let labels: Vec<i64> = (0..12).map(|i| i % 4).collect();
    write_ind(&dir.path().join("labels.pkl"), &labels);
    drgnfly(dir.path(), &["select_clusters", "labels.pkl", "--sel", "1", "3", "-o", "sel.pkl"]).ok();
    assert_eq!(Selection::load(dir.path().join("sel.pkl")).unwrap().indices(), &[1, 3, 5, 7, 9, 11]);
    // Mapped through a parent --ind.
    let parent: Vec<i64> = (0..12).map(|i| 100 + 2 * i).collect();
    write_ind(&dir.path().join("parent.pkl"), &parent);
    drgnfly(
        dir.path(),
        &["select-clusters", "labels.pkl", "--sel", "0", "--parent-ind", "parent.pkl", "-o", "p.pkl"],
    )
    .ok();
    assert_eq!(Selection::load(dir.path().join("p.pkl")).unwrap().indices(), &[100, 108, 116]);
    drgnfly(dir.path(), &["select-clusters", "labels.pkl", "--sel", "7", "-o", "x.pkl"]).fails_with(&["7"]);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn select_particles_exports_star_rows_of_the_original_particles() {
    let Some(star) = fixture("cryodrgn/toy_projections.star") else { return };
    let src = RelionParticles::open(&star).unwrap();
    assert_eq!(src.len(), 1000);
    let dir = tempfile::tempdir().unwrap();

    // Trained on all 1000 particles; classes i % 4 written as an analyze would.
    let (z, _) = clustered(1000, 3, 6);
    let wd = workdir(&dir.path().join("all"), &[z], 3, None);
    std::fs::create_dir_all(wd.join("analyze.1/kmeans4")).unwrap();
    write_ind(&wd.join("analyze.1/kmeans4/labels.pkl"), &(0..1000).map(|i| i % 4).collect::<Vec<_>>());
    let w = wd.to_str().unwrap();
    drgnfly(
        dir.path(),
        &[
            "select-particles",
            w,
            "1",
            "--kmeans",
            "4",
            "--clusters",
            "1",
            "3",
            "-o",
            "s.pkl",
            "--inverse",
            "inv.pkl",
        ],
    )
    .ok();
    let sel: Vec<usize> = Selection::load(dir.path().join("s.pkl")).unwrap().resolve(1000).unwrap();
    assert_eq!(sel, (0..1000).filter(|i| i % 2 == 1).collect::<Vec<_>>());
    let inv = Selection::load(dir.path().join("inv.pkl")).unwrap().resolve(1000).unwrap();
    assert_eq!(inv, (0..1000).filter(|i| i % 2 == 0).collect::<Vec<_>>());

    // Trained with --ind on the even particles: z row r is original particle 2r.
    let even: Vec<i64> = (0..500).map(|i| 2 * i).collect();
    let ind = dir.path().join("even.pkl");
    write_ind(&ind, &even);
    let (z, _) = clustered(500, 3, 7);
    let wd = workdir(&dir.path().join("even"), &[z], 3, Some(&ind));
    std::fs::create_dir_all(wd.join("analyze.1/kmeans4")).unwrap();
    write_ind(&wd.join("analyze.1/kmeans4/labels.pkl"), &(0..500).map(|i| i % 4).collect::<Vec<_>>());
    let w = wd.to_str().unwrap();
    drgnfly(
        dir.path(),
        &[
            "filter",
            w,
            "1",
            "--kmeans",
            "4",
            "--clusters",
            "1",
            "-o",
            "e.pkl",
            "--star",
            &star,
            "--o-star",
            "e.star",
        ],
    )
    .ok();
    let want: Vec<usize> = (0..500).filter(|r| r % 4 == 1).map(|r| 2 * r).collect();
    assert_eq!(Selection::load(dir.path().join("e.pkl")).unwrap().resolve(1000).unwrap(), want);
    let out = RelionParticles::open(dir.path().join("e.star")).unwrap();
    assert_eq!(out.len(), want.len());
    for (k, &p) in want.iter().enumerate() {
        assert_eq!(out.value(k, "_rlnImageName"), src.value(p, "_rlnImageName"), "row {k} is particle {p}");
    }

    // A PC box: PC1 separates the three clusters, so a box around the middle one selects it.
    let (z, truth) = clustered(1000, 3, 8);
    let wd = workdir(&dir.path().join("box"), std::slice::from_ref(&z), 3, None);
    let lat = Latents::new(&z, 3).unwrap();
    let pcs = Pca::fit(lat).unwrap().transform(lat, 2).unwrap();
    let mid: Vec<f32> = (0..1000).filter(|&i| truth[i] == 1).map(|i| pcs[2 * i]).collect();
    let (lo, hi) = mid.iter().fold((f32::MAX, f32::MIN), |(l, h), &v| (l.min(v), h.max(v)));
    let (lo, hi) = (format!("{}", lo - 0.1), format!("{}", hi + 0.1));
    drgnfly(
        dir.path(),
        &["select-particles", wd.to_str().unwrap(), "1", "--pc-box", &lo, &hi, "-100", "100", "-o", "b.pkl"],
    )
    .ok();
    let b = Selection::load(dir.path().join("b.pkl")).unwrap().resolve(1000).unwrap();
    assert_eq!(b, (0..1000).filter(|&i| truth[i] == 1).collect::<Vec<_>>());

    // A .star that does not hold the trained particles is refused.
    drgnfly(
        dir.path(),
        &["select-particles", wd.to_str().unwrap(), "1", "--pc-box", &lo, &hi, "-100", "100", "-o", "c.pkl"]
            .into_iter()
            .chain(["--star", &star, "--o-star", "c.star"])
            .collect::<Vec<_>>(),
    )
    .ok();
    let few = workdir(&dir.path().join("few"), &[clustered(30, 3, 9).0], 3, None);
    drgnfly(
        dir.path(),
        &[
            "select-particles",
            few.to_str().unwrap(),
            "1",
            "--pc-box",
            "-100",
            "100",
            "-100",
            "100",
            "-o",
            "f.pkl",
        ]
        .into_iter()
        .chain(["--star", &star, "--o-star", "f.star"])
        .collect::<Vec<_>>(),
    )
    .fails_with(&["1000 particles", "trained on 30"]);
}

#[test]
fn eval_simulation_scores_known_labels() {
    let dir = tempfile::tempdir().unwrap();
    let (z, truth) = clustered(300, 4, 10);
    let wd = workdir(dir.path(), &[z], 4, None);
    write_ind(&dir.path().join("truth.pkl"), &truth.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    drgnfly(
        dir.path(),
        &["eval-simulation", wd.to_str().unwrap(), "1", "--labels", "truth.pkl", "-o", "m.json"],
    )
    .ok();
    let m: serde_json::Value =
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap();
    assert_eq!(m["kmeans_accuracy"].as_f64(), Some(1.0));
    assert_eq!(m["states"].as_u64(), Some(3));
    // Clusters 10 apart with σ 0.5: E_z = exp(−100/0.25)·… ≈ 0; PC1 orders the clusters.
    assert!(m["entanglement_z"].as_f64().unwrap() < 1e-6, "{m}");
    assert!(m["spearman_pc1"].as_f64().unwrap().abs() > 0.9, "{m}");
}

/// The pose terms of HetACUMN's entanglement score: estimated poses that differ from the truth by a global
/// rotation cost nothing; a 2 px shift error on every particle gives E_trans = 4/D² (D = 32 here); the total
/// is E_rot + E_trans + E_z.
#[test]
fn eval_simulation_adds_the_pose_terms_of_the_entanglement_score() {
    use drgnfly_em::pose::Pose;
    use drgnfly_em::rotation::{mul, random::random_rotations};
    let dir = tempfile::tempdir().unwrap();
    let (z, truth) = clustered(300, 4, 10);
    let wd = workdir(dir.path(), &[z], 4, None);
    write_ind(&dir.path().join("truth.pkl"), &truth.iter().map(|&l| i64::from(l)).collect::<Vec<_>>());
    let d = 32;
    let q = random_rotations(1, 5)[0];
    let write = |name: &str, poses: &[Pose]| {
        let file = pickle::Poses {
            rot: poses.iter().map(Pose::pkl_rot).collect(),
            trans: Some(poses.iter().map(|p| p.pkl_trans(d)).collect()),
        };
        pickle::write_poses(dir.path().join(name), &file).unwrap();
    };
    let true_poses: Vec<Pose> = random_rotations(300, 4)
        .into_iter()
        .enumerate()
        .map(|(i, rot)| Pose { rot, shift_px: [(i % 7) as f32 - 3.0, (i % 4) as f32 - 1.5] })
        .collect();
    write("true.pkl", &true_poses);
    let turned: Vec<Pose> = true_poses.iter().map(|p| Pose { rot: mul(&p.rot, &q), ..*p }).collect();
    write(&format!("{}/pose.1.pkl", wd.display()), &turned);
    let shifted: Vec<Pose> =
        turned.iter().map(|p| Pose { shift_px: [p.shift_px[0] + 2.0, p.shift_px[1]], ..*p }).collect();
    write("shifted.pkl", &shifted);
    let score = |extra: &[&str]| -> serde_json::Value {
        let mut args = vec!["eval-simulation", wd.to_str().unwrap(), "1", "--labels", "truth.pkl"];
        args.extend(["--true-poses", "true.pkl", "-o", "m.json"]);
        args.extend(extra);
        drgnfly(dir.path(), &args).ok();
        serde_json::from_str(&std::fs::read_to_string(dir.path().join("m.json")).unwrap()).unwrap()
    };
    let m = score(&[]);
    let f = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("{k}: {m}"));
    assert!(f("entanglement_rot") < 1e-8 && f("entanglement_trans") < 1e-8, "{m}");
    assert!((f("entanglement") - f("entanglement_z")).abs() < 1e-8, "{m}");
    let m = score(&["--poses", "shifted.pkl"]);
    let f = |k: &str| m[k].as_f64().unwrap_or_else(|| panic!("{k}: {m}"));
    let e_trans = f("entanglement_trans") * (d * d) as f64;
    assert!((3.6..4.4).contains(&e_trans), "a 2 px error everywhere: {e_trans} px², {m}");
    assert!(
        (f("entanglement") - f("entanglement_rot") - f("entanglement_trans") - f("entanglement_z")).abs()
            < 1e-12
    );
    // Poses for other particles than the latents' are refused, naming the file.
    write("short.pkl", &true_poses[..200]);
    let args =
        ["eval-simulation", wd.to_str().unwrap(), "1", "--labels", "truth.pkl", "--true-poses", "short.pkl"];
    drgnfly(dir.path(), &args).fails_with(&["short.pkl", "200 entries"]);
}

/// With cryoDRGN's small test model (zdim 8, D = 64, decoded at -d 32 to stay fast): volumes at the k-means centres and along PC1,
/// their contact sheets, and volume agreement across epochs in analyze-convergence.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn analyze_and_convergence_generate_volumes_with_a_checkpoint() {
    let (Some(weights), Some(config)) =
        (fixture("cryodrgn/het_weights.pkl"), fixture("cryodrgn/het_config.yaml"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let (z, _) = clustered(150, 8, 12);
    let mut rng = Normal(13);
    let epochs: Vec<Vec<f32>> = (0..4).map(|_| z.iter().map(|v| v + 1e-3 * rng.next()).collect()).collect();
    let wd = workdir(dir.path(), &epochs, 8, None);
    std::fs::copy(&config, wd.join("config.yaml")).unwrap();
    for e in 1..=4 {
        std::fs::copy(&weights, wd.join(format!("weights.{e}.pkl"))).unwrap();
    }
    let w = wd.to_str().unwrap();
    drgnfly(
        dir.path(),
        &["analyze", w, "4", "--ksample", "3", "--pc", "1", "--n-per-pc", "3", "--skip-umap", "-d", "32"],
    )
    .ok();
    let a = wd.join("analyze.4");
    let (centres, _) = z_text(&a.join("kmeans3/centers.txt"));
    for k in 1..=3 {
        let vol = drgnfly_io::mrc::read_volume(a.join(format!("kmeans3/vol_{k:03}.mrc"))).unwrap();
        assert_eq!(vol.shape, [32, 32, 32], "-d 32");
        assert!(vol.data.iter().all(|v| v.is_finite()));
        assert!(a.join(format!("pc1/vol_{k:03}.mrc")).is_file());
    }
    assert_eq!(centres.len(), 3 * 8);
    // Different centres decode to different maps.
    let v1 = drgnfly_io::mrc::read_volume(a.join("kmeans3/vol_001.mrc")).unwrap().data;
    let v2 = drgnfly_io::mrc::read_volume(a.join("kmeans3/vol_002.mrc")).unwrap().data;
    assert!(v1.iter().zip(&v2).any(|(x, y)| (x - y).abs() > 1e-4));
    for sheet in ["kmeans3/vol_renders.png", "kmeans3/vol_slices.png", "pc1/vol_renders.png"] {
        let img = png(&a.join(sheet));
        let inked = img.as_bytes().chunks_exact(3).filter(|p| p.iter().any(|&c| c < 200)).count();
        assert!(inked > 1000, "{sheet} shows the maps ({inked} dark pixels)");
    }
    assert!(std::fs::read_to_string(a.join("report.html")).unwrap().contains("kmeans3/vol_001.mrc"));
    // Classes are numbered in dendrogram order: the written centres are already in that order, and
    // each centre particle carries its own class.
    assert_eq!(drgnfly_analysis::hierarchy::dendrogram_order(&centres, 8), [0, 1, 2]);
    let labels = labels_of(&a.join("kmeans3/labels.pkl"));
    let centre_ind: Vec<usize> = std::fs::read_to_string(a.join("kmeans3/centers_ind.txt"))
        .unwrap()
        .lines()
        .map(|l| l.parse().unwrap())
        .collect();
    for (k, &i) in centre_ind.iter().enumerate() {
        assert_eq!(labels[i], k as u32, "centre particle {i} is in class {k}");
    }

    // eval-vol's post-processing: --low-pass zeroes the shells beyond Apix/res and equals filtering
    // the plain map; --crop gives the centre box with the origin moved to its corner.
    let base =
        &["analyze", w, "4", "--ksample", "3", "--pc", "1", "--n-per-pc", "2", "--skip-umap", "-d", "32"];
    drgnfly(dir.path(), &[&base[..], &["-o", "lp", "--low-pass", "8"]].concat()).ok();
    drgnfly(dir.path(), &[&base[..], &["-o", "crop", "--crop", "20"]].concat()).ok();
    let plain = drgnfly_io::mrc::read_volume(a.join("kmeans3/vol_001.mrc")).unwrap();
    let apix = plain.header.known_apix().unwrap();
    let lp = drgnfly_io::mrc::read_volume(dir.path().join("lp/kmeans3/vol_001.mrc")).unwrap();
    let mut expected = plain.data.clone();
    drgnfly_em::filter::low_pass(&mut expected, 32, f64::from(apix) / 8.0).unwrap();
    let peak = expected.iter().fold(0f32, |m, v| m.max(v.abs()));
    assert!(lp.data.iter().zip(&expected).all(|(a, b)| (a - b).abs() <= 1e-4 * peak));
    let mut ht = lp.data.clone();
    drgnfly_em::hartley::HartleyPlan::new(32).unwrap().ht3_center(&mut ht).unwrap();
    let cutoff_px = 32.0 * f64::from(apix) / 8.0;
    let (mut inside, mut outside) = (0f64, 0f64);
    for (i, v) in ht.iter().enumerate() {
        let (z, y, x) = (i / 1024, (i / 32) % 32, i % 32);
        let r = [x, y, z].iter().map(|&c| (c as f64 - 16.0).powi(2)).sum::<f64>().sqrt();
        if r > cutoff_px + 0.5 {
            outside += f64::from(*v).powi(2)
        } else {
            inside += f64::from(*v).powi(2)
        }
    }
    assert!(outside < 1e-8 * inside, "power beyond {cutoff_px} px: {outside} (inside {inside})");
    let crop = drgnfly_io::mrc::read_volume(dir.path().join("crop/kmeans3/vol_001.mrc")).unwrap();
    assert_eq!(crop.shape, [20, 20, 20]);
    assert_eq!(crop.origin, [6.0 * apix; 3], "origin at the crop corner, 6 px in");
    for (i, v) in crop.data.iter().enumerate() {
        let (z, y, x) = (i / 400 + 6, (i / 20) % 20 + 6, i % 20 + 6);
        assert_eq!(*v, plain.data[(z * 32 + y) * 32 + x]);
    }

    // Same weights every epoch and latents that only jitter: the volumes at the maxima agree.
    drgnfly(
        dir.path(),
        &[
            "analyze-convergence",
            w,
            "4",
            "--epoch-interval",
            "1",
            "--skip-umap",
            "--final-maxima",
            "3",
            "-d",
            "32",
        ],
    )
    .ok();
    let c = wd.join("convergence.4");
    let verdict = std::fs::read_to_string(c.join("verdict.txt")).unwrap();
    assert!(verdict.starts_with("settled") && verdict.contains("volumes agree"), "{verdict}");
    assert!(c.join("vols.1/vol_001.mrc").is_file() && c.join("plots/05_decoder_CC.png").is_file());
    assert!(c.join("plots/06_decoder_FSC.png").is_file());
}

#[test]
fn analysis_commands_have_help_with_examples_and_underscore_aliases() {
    let dir = tempfile::tempdir().unwrap();
    for cmd in [
        "analyze",
        "pc-traversal",
        "graph-traversal",
        "direct-traversal",
        "analyze-convergence",
        "select-clusters",
        "select-particles",
        "eval-simulation",
    ] {
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
    // Exactly one way of choosing particles (clap usage error: exit code 2).
    let out = drgnfly(dir.path(), &["select-particles", "w", "1", "-o", "x.pkl"]);
    assert_eq!(out.code, 2, "{}", out.stderr);
    let out = drgnfly(
        dir.path(),
        &[
            "filter",
            "w",
            "1",
            "--kmeans",
            "4",
            "--clusters",
            "0",
            "--pc-box",
            "0",
            "1",
            "0",
            "1",
            "-o",
            "x.pkl",
        ],
    );
    assert_eq!(out.code, 2, "{}", out.stderr);
    // A missing training directory is a clean error.
    drgnfly(dir.path(), &["analyze", "nowhere", "3"]).fails_with(&["nowhere", "not a directory"]);
}
