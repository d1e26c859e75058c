use super::*;
use crate::fixture_or_skip;
use crate::npy::{Column, StructuredBuilder};

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn ctf_of_p12_equals_cryodrgn_ctf2_pkl() {
    let cs = CsFile::open(fixture_or_skip!("cryodrgn/cryosparc_P12_J24_001_particles.cs")).unwrap();
    let want = crate::pickle::load_ctf(fixture_or_skip!("cryodrgn/ctf2.pkl")).unwrap();
    let got = cs.ctf_params(None, None).unwrap();
    assert_eq!(got.len(), 2019);
    assert_eq!(want.len(), 2019);
    for (i, (a, b)) in got.iter().zip(&want).enumerate() {
        for k in 0..9 {
            let tol = 1e-5 * (b[k] as f64).abs().max(1.0);
            assert!((a[k] - b[k] as f64).abs() <= tol, "row {i} col {k}: {} vs {}", a[k], b[k]);
        }
    }
    assert_eq!(cs.box_size(None).unwrap(), Some(180.0));
    assert_eq!(cs.ctf_params(Some(90.0), Some(5.9)).unwrap()[3][..2], [90.0, 5.9]);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn poses_and_shifts_of_p12_match_pose_cs_pkl_translations() {
    let cs = CsFile::open(fixture_or_skip!("cryodrgn/cryosparc_P12_J24_001_particles.cs")).unwrap();
    let golden = crate::pickle::load_poses(fixture_or_skip!("cryodrgn/pose.cs.pkl")).unwrap();
    let shifts = cs.shifts_px(false, false).unwrap();
    let trans = golden.trans.unwrap();
    // parse_pose_csparc -D 180 stores shift / D.
    for (s, t) in shifts.iter().zip(&trans) {
        assert!((s[0] / 180.0 - t[0] as f64).abs() < 1e-6 && (s[1] / 180.0 - t[1] as f64).abs() < 1e-6);
    }
    assert_eq!(cs.shifts_px(false, true).unwrap()[0], [2.0 * shifts[0][0], 2.0 * shifts[0][1]]);
    let poses = cs.pose_vectors(false).unwrap();
    assert_eq!(poses[3], [-0.8239668f32 as f64, -1.609365f32 as f64, 1.8968768f32 as f64]);
    let e = cs.pose_vectors(true).unwrap_err().to_string();
    assert!(e.contains("alignments_class_0/pose") && e.contains("ab-initio"), "{e}");

    let refs = cs.image_refs().unwrap();
    assert_eq!(refs.index[..3], [0, 1, 2]);
    assert!(refs.paths.len() > 1 && refs.paths.iter().all(|p| p.starts_with("J19/extract/")));
    assert_eq!(cs.blob_paths().unwrap()[2018], refs.paths[refs.file[2018] as usize]);

    let d = cs.describe();
    assert!(d.contains("2019 rows, 34 fields"), "{d}");
    assert!(
        d.lines().any(|l| l.contains("blob/shape") && l.contains("<u4 (2,)") && l.contains("[180, 180]")),
        "{d}"
    );
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn zero_row_file_works() {
    let cs = CsFile::open(fixture_or_skip!("cryosparc_tools/4k_dataset.cs")).unwrap();
    assert_eq!(cs.len(), 0);
    assert!(cs.ctf_params(None, None).unwrap().is_empty());
    assert!(cs.pose_vectors(false).unwrap().is_empty());
    assert!(cs.shifts_px(true, false).unwrap().is_empty());
    assert!(cs.describe().contains("0 rows, 106 fields"));
    let dir = tempfile::tempdir().unwrap();
    cs.filter_rows(&[], dir.path().join("e.cs")).unwrap();
    assert_eq!(CsFile::open(dir.path().join("e.cs")).unwrap().array().fields().count(), 106);
}

fn synthetic(dir: &Path, with_shape: bool, phase: f32) -> std::path::PathBuf {
    let p = dir.join(if with_shape { "s.cs" } else { "noshape.cs" });
    let mut b = StructuredBuilder::new(2);
    b.add("blob/path", &[], Column::Bytes(16, vec![">J1/a.mrc".into(), "J1/b.mrc".into()])).unwrap();
    b.add("blob/idx", &[], Column::U32(vec![4, 0])).unwrap();
    if with_shape {
        b.add("blob/shape", &[2], Column::U32(vec![64, 64, 64, 64])).unwrap();
    }
    b.add("blob/psize_A", &[], Column::F32(vec![1.5, 1.5])).unwrap();
    for (name, v) in [
        ("ctf/df1_A", 10000.0),
        ("ctf/df2_A", 9000.0),
        ("ctf/df_angle_rad", std::f32::consts::FRAC_PI_2),
        ("ctf/accel_kv", 300.0),
        ("ctf/cs_mm", 2.7),
        ("ctf/amp_contrast", 0.1),
    ] {
        b.add(name, &[], Column::F32(vec![v, v])).unwrap();
    }
    b.add("ctf/phase_shift_rad", &[], Column::F32(vec![0.0, phase])).unwrap();
    b.write(&p).unwrap();
    p
}

#[test]
fn synthetic_cs_semantics_and_errors() {
    let dir = tempfile::tempdir().unwrap();
    let cs = CsFile::open(synthetic(dir.path(), true, std::f32::consts::PI)).unwrap();
    assert_eq!(cs.blob_paths().unwrap(), ["J1/a.mrc", "J1/b.mrc"]);
    assert_eq!(cs.blob_idx().unwrap(), [4, 0]);
    let ctf = cs.ctf_params(None, None).unwrap();
    assert!((ctf[1][4] - 90.0).abs() < 1e-4 && (ctf[1][8] - 180.0).abs() < 1e-4);
    assert_eq!(ctf[0][..2], [64.0, 1.5]);
    let e = cs.pose_vectors(false).unwrap_err().to_string();
    assert!(e.contains("field alignments3D/pose") && e.contains("3D refinement"), "{e}");

    let no_shape = CsFile::open(synthetic(dir.path(), false, 0.0)).unwrap();
    let e = no_shape.ctf_params(None, None).unwrap_err().to_string();
    assert!(e.contains("a .cs without blob/shape: pass -D"), "{e}");
    assert_eq!(no_shape.ctf_params(Some(64.0), None).unwrap()[1][0], 64.0);

    let nan = CsFile::open(synthetic(dir.path(), true, f32::NAN)).unwrap();
    let e = nan.ctf_params(None, None).unwrap_err().to_string();
    assert!(e.contains("row 1 (0-based), field ctf/phase_shift_rad"), "{e}");

    // filter_rows keeps bytes; a plain array is not a .cs.
    let out = dir.path().join("f.cs");
    cs.filter_rows(&[1], &out).unwrap();
    let f = CsFile::open(&out).unwrap();
    assert_eq!((f.len(), f.blob_idx().unwrap()), (1, vec![0]));
    let plain = dir.path().join("p.npy");
    crate::npy::write_npy_f32(&plain, &[2], &[1.0, 2.0]).unwrap();
    assert!(CsFile::open(&plain).unwrap_err().to_string().contains("not a cryoSPARC particle file"));
}
