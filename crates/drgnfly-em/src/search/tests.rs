use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

use super::*;
use crate::ctf::{compute_batch, CtfParams};
use crate::density::{render_blobs, GaussianBlob};
use crate::hartley::HartleyPlan;
use crate::project::Projector;
use crate::rotation::random::random_rotations;
use crate::rotation::{angle_between_deg, transpose};
use crate::translate::translate_ht;

/// A smooth asymmetric volume: random Gaussian blobs inside the central half of the box.
fn blob_volume(d: usize, seed: u64) -> Vec<f32> {
    let mut rng = ChaCha8Rng::seed_from_u64(seed);
    let r = d as f64 / 4.0;
    let blobs: Vec<GaussianBlob> = (0..8)
        .map(|_| GaussianBlob {
            center: [0; 3].map(|_| rng.random_range(-r..r)),
            sigma: rng.random_range(1.2..2.5) * d as f64 / 32.0,
            amplitude: rng.random_range(2.0..8.0),
        })
        .collect();
    render_blobs(&blobs, d, 1.0).unwrap()
}

/// The centred 3D Hartley transform of `vol` (`D³`, zero frequency at D/2): `eval_volume`'s layout.
fn hartley_table(vol: &[f32], d: usize) -> Vec<f32> {
    let mut t = vol.to_vec();
    HartleyPlan::new(d).unwrap().ht3_center(&mut t).unwrap();
    t
}

/// `D³ → (D+1)³`: index 0 copied to index D on each axis (the 3D analogue of `symmetrize_ht`).
fn symmetrize3(t: &[f32], d: usize) -> Vec<f32> {
    let e = d + 1;
    let mut out = vec![0.0f32; e * e * e];
    for z in 0..e {
        for y in 0..e {
            for x in 0..e {
                out[(z * e + y) * e + x] = t[((z % d) * d + y % d) * d + x % d];
            }
        }
    }
    out
}

/// Normalized-looking images: symmetrized HT slices × CTF, translated by −t (so +t centres them).
struct Data {
    images: Vec<f32>,
    ctf: Option<Vec<f32>>,
    rots: Vec<Mat3>,
    shifts: Vec<Shift>,
}

fn make_data(vol: &[f32], d: usize, n: usize, max_shift: f32, with_ctf: bool, seed: u64) -> Data {
    let e2 = (d + 1) * (d + 1);
    let proj = Projector::new(vol, d, 1).unwrap();
    let rots = random_rotations(n, seed);
    let mut slices = vec![0.0f32; n * e2];
    proj.project_ht_sym(&rots, &mut slices).unwrap();
    // Normalized images: the model's scale (see `scaled_model`).
    let scale = model_scale(vol, d);
    slices.iter_mut().for_each(|v| *v /= scale);
    let mut rng = ChaCha8Rng::seed_from_u64(seed + 1000);
    let shifts: Vec<Shift> =
        (0..n).map(|_| [0; 2].map(|_| rng.random_range(-max_shift..=max_shift))).collect();
    let lat = Lattice::new(d + 1, 0.5).unwrap();
    let ctf = with_ctf.then(|| {
        let params: Vec<CtfParams> = (0..n)
            .map(|_| CtfParams {
                angpix: 2.0,
                defocus_u_a: rng.random_range(6000.0..9000.0),
                defocus_v_a: rng.random_range(5000.0..6000.0),
                defocus_angle_deg: rng.random_range(0.0..180.0),
                voltage_kv: 300.0,
                cs_mm: 2.7,
                amp_contrast: 0.1,
                phase_shift_deg: 0.0,
                bfactor: None,
                scale: 1.0,
            })
            .collect();
        let mut c = vec![0.0f32; n * e2];
        compute_batch(&params, lat.freqs2d(), &mut c).unwrap();
        c
    });
    let mut images = vec![0.0f32; n * e2];
    for b in 0..n {
        let mut centred = slices[b * e2..(b + 1) * e2].to_vec();
        if let Some(c) = &ctf {
            centred.iter_mut().zip(&c[b * e2..(b + 1) * e2]).for_each(|(v, c)| *v *= c);
        }
        let t = shifts[b];
        translate_ht(&lat, &centred, [-t[0], -t[1]], &mut images[b * e2..(b + 1) * e2]).unwrap();
    }
    Data { images, ctf, rots, shifts }
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

/// Angle and shift errors against the truth.
fn errors(res: &[SearchResult], data: &Data) -> (Vec<f64>, Vec<f64>) {
    let angles = res.iter().zip(&data.rots).map(|(r, t)| angle_between_deg(&r.pose.rot, t)).collect();
    let shifts = res
        .iter()
        .zip(&data.shifts)
        .map(|(r, t)| {
            let (dx, dy) = (r.pose.shift_px[0] - t[0], r.pose.shift_px[1] - t[1]);
            f64::from(dx.abs().max(dy.abs()))
        })
        .collect();
    (angles, shifts)
}

/// The normalisation of the test data: the rms of the symmetrized slices over 64 fixed random poses.
fn model_scale(vol: &[f32], d: usize) -> f32 {
    let e2 = (d + 1) * (d + 1);
    let proj = Projector::new(vol, d, 1).unwrap();
    let mut s = vec![0.0f32; 64 * e2];
    proj.project_ht_sym(&random_rotations(64, 999), &mut s).unwrap();
    (s.iter().map(|v| (v * v) as f64).sum::<f64>() / s.len() as f64).sqrt() as f32
}

/// The model of the test data: the volume's Hartley table in the images' normalisation.
fn scaled_model(vol: &[f32], d: usize) -> HartleyVolumeSlicer {
    let scale = model_scale(vol, d);
    let t: Vec<f32> = hartley_table(vol, d).iter().map(|v| v / scale).collect();
    HartleyVolumeSlicer::new(t, d + 1).unwrap()
}

#[test]
fn slicer_matches_projector_slices() {
    let d = 32;
    let e = d + 1;
    let vol = blob_volume(d, 3);
    let table = hartley_table(&vol, d);
    let slicer = HartleyVolumeSlicer::new(symmetrize3(&table, d), e).unwrap();
    let from_d3 = HartleyVolumeSlicer::new(table.clone(), e).unwrap();
    assert_eq!(slicer.lattice_side(), e);
    let proj = Projector::new(&vol, d, 1).unwrap();
    let rots = random_rotations(6, 21);
    let mut want = vec![0.0f32; rots.len() * e * e];
    proj.project_ht_sym(&rots, &mut want).unwrap();
    let lat = Lattice::new(e, 0.5).unwrap();
    let disc = lat.circular_mask((d / 2) as f32, false);
    let mut got = vec![0.0f32; rots.len() * disc.len()];
    slicer.predict(&rots, &disc, &mut got).unwrap();
    let mut got2 = vec![0.0f32; got.len()];
    from_d3.predict(&rots, &disc, &mut got2).unwrap();
    assert_eq!(got, got2, "a D³ table is padded like the (D+1)³ one");
    let scale = want.iter().map(|v| v.abs()).fold(0.0f32, f32::max);
    let mut worst = 0.0f32;
    for (r, g) in got.chunks_exact(disc.len()).enumerate() {
        for (&i, &v) in disc.iter().zip(g) {
            worst = worst.max((v - want[r * e * e + i]).abs());
        }
    }
    assert!(worst <= 1e-3 * scale, "max |Δ| {worst} vs scale {scale}");
    // The pose convention matters: the transposed rotations give other slices.
    let tr: Vec<Mat3> = rots.iter().map(transpose).collect();
    slicer.predict(&tr, &disc, &mut got).unwrap();
    let wrong = got
        .chunks_exact(disc.len())
        .enumerate()
        .flat_map(|(r, g)| disc.iter().zip(g).map(move |(&i, &v)| (r, i, v)))
        .map(|(r, i, v)| (v - want[r * e * e + i]).abs())
        .fold(0.0f32, f32::max);
    assert!(wrong > 0.05 * scale, "transposed poses agree too well: {wrong}");
    // Bad shapes are errors.
    assert!(matches!(HartleyVolumeSlicer::new(vec![0.0; 10], e), Err(Error::Shape { .. })));
    assert!(matches!(HartleyVolumeSlicer::new(vec![0.0; 8], 2), Err(Error::Param { .. })));
    assert!(matches!(slicer.predict(&rots, &disc, &mut got[1..]), Err(Error::Shape { .. })));
    assert!(matches!(slicer.predict(&rots[..1], &[e * e], &mut [0.0]), Err(Error::Param { .. })));
}

fn config_32() -> SearchConfig {
    SearchConfig { base_resolution: 2, niter: 4, l_min: 10, l_max: 16, ..SearchConfig::default() }
}

/// In-plane step of the SO(3) grid at resolution `r`, degrees (the HEALPix pixel scale is ≈ the same).
/// The recovery tests allow two steps: the nearest grid point is up to ~0.6 step away (measured at r = 6:
/// 0.62°), and the search may end on a neighbour of it.
fn grid_step_deg(r: u32) -> f64 {
    60.0 / f64::from(1u32 << r)
}

fn check_recovery(
    res: &[SearchResult],
    data: &Data,
    s: &PoseSearch,
    model: &impl SlicePredictor,
    steps: f64,
    what: &str,
) {
    let truth: Vec<Pose> =
        data.rots.iter().zip(&data.shifts).map(|(&rot, &shift_px)| Pose { rot, shift_px }).collect();
    let true_loss = s.loss_at(model, &data.images, data.ctf.as_deref(), &truth).unwrap();
    let (mut ang, mut sh) = errors(res, data);
    let r = s.config().base_resolution + s.config().niter as u32;
    let tol_deg = steps * grid_step_deg(r);
    let spacing = s.shift_offsets(s.config().niter).map_or(0.0, |o| {
        let xs: Vec<f32> = o.iter().map(|p| p[0]).collect();
        2.0 * f64::from((xs[1] - xs[0]).abs())
    });
    let (amax, smax) = (ang.iter().cloned().fold(0.0, f64::max), sh.iter().cloned().fold(0.0, f64::max));
    let msg = format!(
        "{what}: angle error median {:.3}° max {amax:.3}° (tolerance {steps} final grid steps, {tol_deg:.3}°); shift error median \
         {:.3} px max {smax:.3} px (tolerance 2 final spacings, {spacing:.3} px)",
        median(&mut ang),
        median(&mut sh)
    );
    eprintln!("{msg}");
    for (i, (a, t)) in errors(res, data).0.iter().zip(errors(res, data).1).enumerate() {
        if *a > tol_deg || t > spacing {
            eprintln!(
                "  image {i}: angle {a:.2}°, shift error {t:.2} px, loss {} (at the truth {})",
                res[i].loss, true_loss[i]
            );
        }
    }
    assert!(amax <= tol_deg && smax <= spacing, "{msg}");
}

#[test]
fn search_recovers_noise_free_poses() {
    let d = 32;
    let vol = blob_volume(d, 7);
    let data = make_data(&vol, d, 20, 3.0, false, 42);
    let model = scaled_model(&vol, d);
    let s = PoseSearch::new(d, config_32()).unwrap();
    let res = s.search(&model, &data.images, None).unwrap();
    assert_eq!(res.len(), 20);
    check_recovery(&res, &data, &s, &model, 2.0, "noise-free D=32");
    // Chunking does not change the answer.
    let small = PoseSearch::new(d, SearchConfig { chunk_images: 3, ..config_32() }).unwrap();
    assert_eq!(small.search(&model, &data.images, None).unwrap(), res);
}

#[test]
fn search_recovers_poses_with_ctf() {
    let d = 32;
    let vol = blob_volume(d, 8);
    let data = make_data(&vol, d, 12, 3.0, true, 77);
    let model = scaled_model(&vol, d);
    let s = PoseSearch::new(d, config_32()).unwrap();
    let res = s.search(&model, &data.images, data.ctf.as_deref()).unwrap();
    // CTF zeros flatten the loss along some directions: one image of 12 ends 3.5° off (its loss within 0.5%
    // of the truth's), so this test allows 4 final grid steps (3.75°); the median stays ≈ 0.6°.
    check_recovery(&res, &data, &s, &model, 4.0, "noise-free D=32 with CTF");
}

#[test]
fn mixed_precision_base_step_finds_the_float32_poses() {
    if !crate::cpu::bf16::available() {
        eprintln!("mixed_precision_base_step_finds_the_float32_poses: skipped, this CPU has no AVX-512 BF16");
        return;
    }
    let d = 32;
    let vol = blob_volume(d, 8);
    let data = make_data(&vol, d, 24, 3.0, true, 91);
    let model = scaled_model(&vol, d);
    let f32_search = PoseSearch::new(d, config_32()).unwrap();
    let mixed = PoseSearch::new(d, SearchConfig { mixed_precision: true, ..config_32() }).unwrap();
    let want = f32_search.search(&model, &data.images, data.ctf.as_deref()).unwrap();
    let got = mixed.search(&model, &data.images, data.ctf.as_deref()).unwrap();
    // bf16 rounding moves the base step's dots by ~2⁻⁹ of their terms: it may swap near-tied candidates,
    // never the refined answer of a well-posed image.
    let same = got.iter().zip(&want).filter(|(g, w)| g.pose == w.pose).count();
    assert!(same >= 22, "{same} of 24 poses as in float32");
    // As accurate as float32 (with CTF zeros an image or two end a few grid steps off in both).
    let (mut angles, _) = errors(&got, &data);
    let med = median(&mut angles);
    assert!(med < 1.5, "median angle error {med:.2}°");
}

#[test]
fn search_maps_finds_each_image_its_map_and_pose() {
    // Two conformations: images of each, searched against both maps at once.
    let d = 32;
    let vols = [blob_volume(d, 8), blob_volume(d, 11)];
    let models = vols.each_ref().map(|v| scaled_model(v, d));
    let s = PoseSearch::new(d, config_32()).unwrap();
    let bases = models.each_ref().map(|m| s.base_slices(m).unwrap());
    let maps = [(&models[0], &bases[0]), (&models[1], &bases[1])];
    for (truth, vol) in vols.iter().enumerate() {
        let data = make_data(vol, d, 8, 3.0, true, 50 + truth as u64);
        let found = s.search_maps(&maps, &data.images, data.ctf.as_deref()).unwrap();
        assert!(found.iter().all(|&(m, _)| m == truth), "map {truth}'s images matched {found:?}");
        // The same poses as a search against the right map alone: the other map costs no accuracy.
        let alone = s.search_with(&models[truth], &bases[truth], &data.images, data.ctf.as_deref()).unwrap();
        let both: Vec<SearchResult> = found.iter().map(|&(_, r)| r).collect();
        assert_eq!(both, alone, "map {truth}");
        // With CTF zeros a few images end a few grid steps off (see search_recovers_poses_with_ctf).
        let (mut angles, _) = errors(&both, &data);
        let med = median(&mut angles);
        assert!(med < 1.5, "map {truth}: median angle error {med:.2}°");
    }
    // The same map twice: the first wins every tie, with the one map's answer.
    let data = make_data(&vols[0], d, 6, 3.0, false, 60);
    let twice = s.search_maps(&[maps[0], maps[0]], &data.images, None).unwrap();
    let once = s.search(&models[0], &data.images, None).unwrap();
    assert_eq!(twice, once.into_iter().map(|r| (0, r)).collect::<Vec<_>>());
    // No map, or a base from another search, is an error.
    assert!(matches!(
        s.search_maps::<HartleyVolumeSlicer>(&[], &data.images, None),
        Err(Error::Param { .. })
    ));
    let other = PoseSearch::new(d, SearchConfig { l_min: 8, ..config_32() }).unwrap();
    let wrong = other.base_slices(&models[1]).unwrap();
    assert!(matches!(
        s.search_maps(&[maps[0], (&models[1], &wrong)], &data.images, None),
        Err(Error::Shape { .. })
    ));
}

#[test]
fn hierarchical_matches_exhaustive() {
    let d = 16;
    let vol = blob_volume(d, 5);
    let model = scaled_model(&vol, d);
    let base = SearchConfig {
        base_resolution: 2,
        niter: 1,
        l_min: 5,
        l_max: 8,
        t_extent: 2.0,
        t_ngrid: 2,
        ..SearchConfig::default()
    };
    for translate in [false, true] {
        let data = make_data(&vol, d, 4, if translate { 1.5 } else { 0.0 }, false, 9);
        let s = PoseSearch::new(d, SearchConfig { translate, ..base.clone() }).unwrap();
        let hier = s.search(&model, &data.images, None).unwrap();
        // Every shift the hierarchy can reach after one refinement: base shift + one offset.
        let mut shifts: Vec<Shift> = s
            .base_shifts()
            .iter()
            .flat_map(|c| s.shift_offsets(1).unwrap().iter().map(move |o| [c[0] + o[0], c[1] + o[1]]))
            .collect();
        shifts.sort_by(|a, b| a[0].total_cmp(&b[0]).then(a[1].total_cmp(&b[1])));
        shifts.dedup();
        let ex = s.exhaustive(&model, &data.images, None, 3, &shifts).unwrap();
        for (i, (h, e)) in hier.iter().zip(&ex).enumerate() {
            let angle = angle_between_deg(&h.pose.rot, &e.pose.rot);
            eprintln!(
                "translate {translate} image {i}: hierarchical loss {} vs exhaustive {} ({} shifts); poses {angle:.3}° \
                 apart, shifts {:?} vs {:?}",
                h.loss,
                e.loss,
                shifts.len(),
                h.pose.shift_px,
                e.pose.shift_px
            );
            assert!(
                h.loss <= e.loss + 1e-4 * e.loss.abs(),
                "image {i}: hierarchical {} > exhaustive {} (angle {angle}°)",
                h.loss,
                e.loss
            );
        }
    }
}

#[test]
fn bad_inputs_are_errors() {
    let d = 16;
    let model = HartleyVolumeSlicer::new(vec![0.0; 17 * 17 * 17], 17).unwrap();
    let bad = |c: SearchConfig| PoseSearch::new(d, c).is_err();
    assert!(bad(SearchConfig { base_resolution: 6, niter: 3, ..SearchConfig::default() }));
    assert!(bad(SearchConfig { l_min: 0, ..SearchConfig::default() }));
    assert!(bad(SearchConfig { l_min: 20, l_max: 10, ..SearchConfig::default() }));
    assert!(bad(SearchConfig { nkeptposes: 0, ..SearchConfig::default() }));
    assert!(bad(SearchConfig { chunk_images: 0, ..SearchConfig::default() }));
    assert!(bad(SearchConfig { t_extent: f64::NAN, ..SearchConfig::default() }));
    assert!(PoseSearch::new(15, SearchConfig::default()).is_err());
    let s =
        PoseSearch::new(d, SearchConfig { base_resolution: 0, niter: 1, ..SearchConfig::default() }).unwrap();
    assert_eq!(s.band_limit(0), 8); // capped at D/2
    let imgs = vec![0.0f32; 2 * 17 * 17];
    assert!(matches!(s.search(&model, &imgs[1..], None), Err(Error::Shape { .. })));
    assert!(matches!(s.search(&model, &imgs, Some(&imgs[..17 * 17])), Err(Error::Shape { .. })));
    assert!(matches!(s.exhaustive(&model, &imgs, None, 1, &[]), Err(Error::Param { .. })));
    assert!(matches!(s.exhaustive(&model, &imgs, None, 9, &[[0.0; 2]]), Err(Error::Param { .. })));
    assert!(s.search(&model, &[], None).unwrap().is_empty());
    // A model that fails: the error comes through.
    struct Failing;
    impl SlicePredictor for Failing {
        fn predict(&self, _: &[Mat3], _: &[usize], _: &mut [f32]) -> Result<()> {
            Err(Error::Param { name: "model", value: "x".into(), why: "fails".into() })
        }
    }
    assert!(s.search(&Failing, &imgs, None).is_err());
    // Defaults and the schedule of band limits.
    let s = PoseSearch::new(64, SearchConfig::default()).unwrap();
    assert_eq!((0..=4).map(|i| s.band_limit(i)).collect::<Vec<_>>(), [12, 17, 22, 27, 32]);
    assert_eq!(s.base_shifts().len(), 196);
}

/// `cargo test --release -p drgnfly-em search::tests::throughput -- --ignored --nocapture`
#[test]
#[ignore]
fn throughput_d64_defaults() {
    let d = 64;
    let n = 128;
    let vol = blob_volume(d, 11);
    let data = make_data(&vol, d, n, 5.0, false, 5);
    let model = scaled_model(&vol, d);
    for mixed_precision in [false, true] {
        let s = PoseSearch::new(d, SearchConfig { mixed_precision, ..SearchConfig::default() }).unwrap();
        let _ = s.search(&model, &data.images[..(d + 1) * (d + 1) * 4], None).unwrap(); // warm-up
        let t0 = std::time::Instant::now();
        let res = s.search(&model, &data.images, None).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        let (mut ang, _) = errors(&res, &data);
        eprintln!(
            "D=64 defaults, mixed precision {mixed_precision}: {n} images in {dt:.2} s = {:.1} images/s on {} \
             threads; median angle error {:.2}°; tables {:.1} MB",
            n as f64 / dt,
            rayon::current_num_threads(),
            median(&mut ang),
            s.table_bytes() as f64 / 1e6
        );
        // Four maps at once (an every-map search of four conformations): four base steps, one refinement.
        let base = s.base_slices(&model).unwrap();
        let maps = [(&model, &base); 4];
        let t0 = std::time::Instant::now();
        let found = s.search_maps(&maps, &data.images, None).unwrap();
        let dt = t0.elapsed().as_secs_f64();
        assert_eq!(found.len(), n);
        eprintln!("  4 maps at once: {:.1} images/s", n as f64 / dt);
    }
}
