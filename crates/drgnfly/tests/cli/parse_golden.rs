//! The parsers reproduce cryoDRGN's golden outputs (shared/data/cryodrgn, cryoDRGN 4.3.0 tests/data).

use drgnfly_io::pickle::{self, DType};

use crate::util::{arrays, assert_ctf_close, drgnfly, fixture, max_abs_diff};

/// `parse_pose_star FinalRefinement-OriginalParticles-PfCRT.star -D 300` → pose.star.pkl (float64).
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn parse_pose_star_matches_pose_star_pkl() {
    let (Some(star), Some(golden)) =
        (fixture("cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star"), fixture("cryodrgn/pose.star.pkl"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    // The underscore spelling is accepted as an alias.
    let run = drgnfly(dir.path(), &["parse_pose_star", &star, "-D", "300", "-o", "pose.pkl"]).ok();
    assert!(run.stderr.contains("5 particles, box 300 px"), "{}", run.stderr);
    let got = arrays(&dir.path().join("pose.pkl"));
    let want = arrays(golden.as_ref());
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.shape.as_slice(), g.dtype()), (w.shape.as_slice(), DType::F64));
        let d = max_abs_diff(&g.as_f64_vec(), &w.as_f64_vec());
        assert!(d < 1e-5, "max |Δ| = {d}");
    }
}

/// `parse_ctf_star … -D 300 --Apix 1.035 -w 0.1` → ctf1.pkl; `parse-star` writes the same two files.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn parse_ctf_star_matches_ctf1_pkl_and_parse_star_agrees() {
    let (Some(star), Some(golden), Some(golden_pose)) = (
        fixture("cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star"),
        fixture("cryodrgn/ctf1.pkl"),
        fixture("cryodrgn/pose.star.pkl"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let flags = ["-D", "300", "--Apix", "1.035", "-w", "0.1"];
    drgnfly(dir.path(), &[&["parse-ctf-star", &star, "-o", "ctf.pkl"][..], &flags].concat()).ok();
    let got = pickle::load_ctf(dir.path().join("ctf.pkl")).unwrap();
    assert_ctf_close(&got, &pickle::load_ctf(&golden).unwrap(), 1e-6);
    assert_eq!(arrays(&dir.path().join("ctf.pkl"))[0].dtype(), DType::F32);

    drgnfly(dir.path(), &[&["parse-star", &star, "--ctf", "c.pkl", "--poses", "p.pkl"][..], &flags].concat())
        .ok();
    let read = |name: &str| std::fs::read(dir.path().join(name)).unwrap();
    assert_eq!(read("c.pkl"), read("ctf.pkl"), "parse-star --ctf = parse-ctf-star");
    let d = max_abs_diff(
        &arrays(&dir.path().join("p.pkl"))[0].as_f64_vec(),
        &arrays(golden_pose.as_ref())[0].as_f64_vec(),
    );
    assert!(d < 1e-5, "parse-star --poses rotations: max |Δ| = {d}");

    drgnfly(dir.path(), &["parse-star", &star]).fails_with(&["nothing to do", "--ctf", "--poses"]);
}

/// `parse_ctf_csparc cryosparc_P12_J24_001_particles.cs` → ctf2.pkl.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn parse_ctf_csparc_matches_ctf2_pkl() {
    let (Some(cs), Some(golden)) =
        (fixture("cryodrgn/cryosparc_P12_J24_001_particles.cs"), fixture("cryodrgn/ctf2.pkl"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    drgnfly(dir.path(), &["parse-ctf-csparc", &cs, "-o", "ctf.pkl"]).ok();
    let got = pickle::load_ctf(dir.path().join("ctf.pkl")).unwrap();
    assert_eq!(got.len(), 2019);
    assert_ctf_close(&got, &pickle::load_ctf(&golden).unwrap(), 1e-6);
}

/// `parse_pose_csparc cryosparc_P12_J24_001_particles.cs -D 180` → pose.cs.pkl (float32).
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn parse_pose_csparc_matches_pose_cs_pkl() {
    let (Some(cs), Some(golden)) =
        (fixture("cryodrgn/cryosparc_P12_J24_001_particles.cs"), fixture("cryodrgn/pose.cs.pkl"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    drgnfly(dir.path(), &["parse-pose-csparc", &cs, "-D", "180", "-o", "pose.pkl"]).ok();
    let got = arrays(&dir.path().join("pose.pkl"));
    let want = arrays(golden.as_ref());
    assert_eq!(got.len(), 2);
    for (g, w) in got.iter().zip(&want) {
        assert_eq!((g.shape.as_slice(), g.dtype()), (w.shape.as_slice(), DType::F32));
        let d = max_abs_diff(&g.as_f64_vec(), &w.as_f64_vec());
        assert!(d < 1e-5, "max |Δ| = {d}");
    }
}
