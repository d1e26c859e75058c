use super::*;
use crate::fixture_or_skip;

fn star(text: &str) -> RelionParticles {
    RelionParticles::from_star(StarFile::parse("t.star", text.to_string()).unwrap()).unwrap()
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn ctf_of_pfcrt_equals_cryodrgn_ctf1_pkl() {
    let p = fixture_or_skip!("cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star");
    let golden = fixture_or_skip!("cryodrgn/ctf1.pkl");
    let r = RelionParticles::open(&p).unwrap();
    assert_eq!(r.version(), RelionVersion::Relion30);
    let o = CtfOverrides { d: Some(300.0), apix: Some(1.035), w: Some(0.1), ..Default::default() };
    let ctf = r.ctf_params(&o).unwrap();
    let want = crate::pickle::load_ctf(&golden).unwrap();
    assert_eq!(ctf.len(), want.len());
    for (a, b) in ctf.iter().zip(&want) {
        for k in 0..9 {
            assert!((a[k] - b[k] as f64).abs() <= 1e-5 * (b[k] as f64).abs().max(1.0), "{a:?} vs {b:?}");
        }
    }
    // Without -w the file has no amplitude contrast: the error names the column and the flag.
    let e = r.ctf_params(&CtfOverrides { d: Some(300.0), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("_rlnAmplitudeContrast") && e.contains("-w"), "{e}");
    // Without --Apix, RELION 3.0's detector pixel (µm) × 10⁴ / magnification gives 1.035 Å as well.
    assert!((r.pixel_size(None).unwrap()[0] - 1.035).abs() < 1e-12);
    // Without -D, RELION 3.0 has no box size.
    let e = r.box_size(None).unwrap_err().to_string();
    assert!(e.contains("_rlnImageSize") && e.contains("-D"), "{e}");
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn poses_of_pfcrt() {
    let p = fixture_or_skip!("cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star");
    let r = RelionParticles::open(&p).unwrap();
    let e = r.euler_deg().unwrap();
    assert_eq!(e[0], [16.093530, 86.352776, 98.225690]);
    assert_eq!(e[4], [-115.40303, 84.934080, 154.973890]);
    let o = r.origin_px(None).unwrap().unwrap();
    assert_eq!(o[1], [-0.14062, 0.046875]);
    let names = r.image_refs().unwrap();
    assert_eq!(names.paths, ["Extract/job012/FinalRefinement-OriginalParticles-PfCRT.mrcs"]);
    assert_eq!(names.index, [0, 1, 2, 3, 4]);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn optics_block_order_does_not_matter() {
    let a = fixture_or_skip!("cryodrgn/relion31.star");
    let b = fixture_or_skip!("cryodrgn/relion31.v2.star");
    let (a, b) = (RelionParticles::open(a).unwrap(), RelionParticles::open(b).unwrap());
    assert_eq!(a.version(), RelionVersion::Relion31);
    assert_eq!(b.version(), RelionVersion::Relion31);
    assert_eq!(a.len(), 5);
    let o = CtfOverrides::default();
    let ca = a.ctf_params(&o).unwrap();
    assert_eq!(ca, b.ctf_params(&o).unwrap());
    assert_eq!(&ca[0][..2], &[256.0, 2.806]);
    assert_eq!((ca[3][5], ca[3][6], ca[3][7]), (300.0, 0.01, 0.1));
    assert_eq!(a.euler_deg().unwrap(), b.euler_deg().unwrap());
    let (oa, ob) = (a.origin_px(None).unwrap().unwrap(), b.origin_px(None).unwrap().unwrap());
    assert_eq!(oa, ob);
    let x_angst = a.column_f64("_rlnOriginXAngst").unwrap().unwrap();
    assert!((oa[2][0] - x_angst[2] / 2.806).abs() < 1e-12);
    assert_eq!(a.image_refs().unwrap(), b.image_refs().unwrap());
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn two_optics_groups_join_per_particle_and_match_relion30() {
    let p31 = fixture_or_skip!("aspire/sample_particles_relion31.star");
    let p30 = fixture_or_skip!("aspire/sample_particles_relion30.star");
    let r31 = RelionParticles::open(p31).unwrap();
    let r30 = RelionParticles::open(p30).unwrap();
    let kv31 = r31.column_f64("_rlnVoltage").unwrap().unwrap();
    let kv30 = r30.column_f64("_rlnVoltage").unwrap().unwrap();
    assert_eq!(kv31.len(), 17);
    assert_eq!(kv31, kv30);
    // Particles 1–8 are in group 1 (300 kV), 9–17 in group 2 (200 kV).
    assert_eq!(kv31.iter().filter(|&&v| v == 300.0).count(), 8);
    assert_eq!(kv31[8], 200.0);
    assert_eq!(r31.optics_row(8), Some(1));
    assert_eq!(r31.value(8, "_rlnMtfFileName"), Some("mtf_k2_200kV.star"));
    assert_eq!(r30.version(), RelionVersion::Relion30);
    // 3.0: pixel size from detector pixel and magnification (5 µm × 10⁴ / 37369.207031).
    assert!((r30.pixel_size(None).unwrap()[0] - 1.338).abs() < 1e-3);
    assert_eq!(r31.pixel_size(None).unwrap()[16], 1.4);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn optics_table_after_particles_with_integer_box() {
    let p = fixture_or_skip!("cryojax/test_starfile.star");
    let r = RelionParticles::open(p).unwrap();
    let ctf = r.ctf_params(&CtfOverrides::default()).unwrap();
    assert_eq!(ctf.len(), 3);
    assert_eq!(ctf[2], [16.0, 12.0, 13190.399414, 13141.893555, 1.707081, 300.0, 2.7, 0.1, 0.0]);
    let o = r.origin_px(None).unwrap().unwrap();
    assert!((o[0][0] - 32.056030 / 12.0).abs() < 1e-12);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn incomplete_ctf_names_the_missing_column_and_flag() {
    let p = fixture_or_skip!("aspire/sample_incomplete_ctf_params.star");
    let r = RelionParticles::open(p).unwrap();
    let e = r.ctf_params(&CtfOverrides { d: Some(200.0), ..Default::default() }).unwrap_err().to_string();
    assert!(e.contains("_rlnVoltage") && e.contains("--kv"), "{e}");
    let ok = r.ctf_params(&CtfOverrides { d: Some(200.0), kv: Some(300.0), ..Default::default() }).unwrap();
    assert_eq!(ok[0][5], 300.0);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn tilt_series_star_with_empty_block_name() {
    let p = fixture_or_skip!("cryodrgn/sta_testing_bin8.star");
    let r = RelionParticles::open(p).unwrap();
    assert_eq!(r.len(), 219);
    let ctf = r.ctf_params(&CtfOverrides { d: Some(512.0), apix: Some(1.82), ..Default::default() }).unwrap();
    assert_eq!(ctf[1][2..5], [20607.9, 20178.6, 3.8]);
    assert_eq!(r.image_name(218).unwrap().index, 218);
}

#[test]
fn image_name_errors() {
    assert_eq!(parse_image_name("000002@a/b.mrcs").unwrap(), ImageName { index: 1, path: "a/b.mrcs" });
    assert!(parse_image_name("0@a.mrcs").unwrap_err().contains("from 1"));
    assert!(parse_image_name("x@a.mrcs").unwrap_err().contains("not a whole number"));
    assert!(parse_image_name("a.mrcs").unwrap_err().contains("no `@`"));
    assert!(parse_image_name("3@").unwrap_err().contains("no stack path"));
    assert_eq!(format_image_name(0, "s.mrcs"), "000001@s.mrcs");

    let r = star("data_\nloop_\n_rlnImageName\n1@a.mrcs\n0@a.mrcs\n");
    let e = r.image_refs().unwrap_err().to_string();
    assert!(e.contains("row 2 (line 5), column _rlnImageName") && e.contains("from 1"), "{e}");
    let r = star("data_\nloop_\n_rlnImageName\nfirst@a.mrcs\n");
    assert!(r.image_name(0).unwrap_err().to_string().contains("`first`"));
}

#[test]
fn nan_in_a_used_column_is_an_error() {
    let r = star("data_\nloop_\n_rlnAngleRot\n_rlnAngleTilt\n_rlnAnglePsi\n1 2 3\n4 nan 6\n");
    let e = r.euler_deg().unwrap_err().to_string();
    assert!(e.contains("row 2 (line 7), column _rlnAngleTilt") && e.contains("not a finite"), "{e}");
    let r = star("data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 inf\ndata_particles\nloop_\n_rlnOpticsGroup\n1\n");
    let e = r.column_f64("_rlnVoltage").unwrap_err().to_string();
    assert!(e.contains("data_optics row 1 (line 5), column _rlnVoltage"), "{e}");
}

#[test]
fn missing_optics_group_names_the_row() {
    let text = "data_optics\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 300\n2 200\n\
                data_particles\nloop_\n_rlnOpticsGroup\n_rlnVoltage\n1 100\n3 300\n";
    let e =
        RelionParticles::from_star(StarFile::parse("t.star", text.into()).unwrap()).unwrap_err().to_string();
    assert!(e.contains("row 2 (line 12)") && e.contains("optics group 3"), "{e}");
    // A particle value wins over its group's.
    let r = star(&text.replace("3 300", "2 300"));
    assert_eq!(r.column_f64("_rlnVoltage").unwrap().unwrap(), [100.0, 300.0]);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn filter_keeps_only_used_optics_groups() {
    let p = fixture_or_skip!("aspire/sample_particles_relion31.star");
    let r = RelionParticles::open(p).unwrap();
    let kept = r.filter_particles(&[10, 9]).unwrap();
    let f = RelionParticles::from_star(kept.clone()).unwrap();
    assert_eq!(f.len(), 2);
    assert_eq!(f.optics().unwrap().len(), 1);
    assert_eq!(f.column_f64("_rlnVoltage").unwrap().unwrap(), [200.0, 200.0]);
    assert_eq!(f.image_name(0).unwrap().index, 10);
    // It survives a write/read cycle.
    let dir = tempfile::tempdir().unwrap();
    let out = dir.path().join("f.star");
    write_star(&out, &kept).unwrap();
    let back = RelionParticles::open(&out).unwrap();
    assert_eq!(
        back.ctf_params(&CtfOverrides { d: Some(200.0), ..Default::default() }).unwrap(),
        f.ctf_params(&CtfOverrides { d: Some(200.0), ..Default::default() }).unwrap()
    );
    assert!(r.filter_particles(&[17]).is_err());
}

fn records() -> ParticleRecords {
    ParticleRecords {
        image_names: (0..3).map(|i| format_image_name(i, "stack with space.mrcs")).collect(),
        ctf: Some(vec![
            [64.0, 2.0, 10000.0, 9000.0, 45.0, 300.0, 2.7, 0.1, 0.0],
            [64.0, 2.0, 11000.0, 9500.0, 40.0, 300.0, 2.7, 0.1, 90.0],
            [64.0, 2.0, 12000.0, 9900.0, 30.0, 200.0, 2.7, 0.1, 0.0],
        ]),
        euler_deg: Some(vec![[1.0, 2.0, 3.0], [4.0, 5.0, 6.0], [-7.0, 8.0, -9.0]]),
        origin_px: Some(vec![[0.5, -1.0], [2.0, 0.0], [0.0, 3.25]]),
        image_size: None,
        apix: None,
    }
}

#[test]
fn written_relion_files_read_back() {
    let rec = records();
    let dir = tempfile::tempdir().unwrap();
    for version in [RelionVersion::Relion31, RelionVersion::Relion30] {
        let path = dir.path().join("w.star");
        write_relion(&path, &rec, version).unwrap();
        let r = RelionParticles::open(&path).unwrap();
        assert_eq!(r.version(), version);
        let o =
            CtfOverrides { d: (version == RelionVersion::Relion30).then_some(64.0), ..Default::default() };
        assert_eq!(r.ctf_params(&o).unwrap(), rec.ctf.clone().unwrap());
        assert_eq!(r.euler_deg().unwrap(), rec.euler_deg.clone().unwrap());
        assert_eq!(r.origin_px(None).unwrap().unwrap(), rec.origin_px.clone().unwrap());
        assert_eq!(r.image_name(2).unwrap(), ImageName { index: 2, path: "stack with space.mrcs" });
        if version == RelionVersion::Relion31 {
            assert_eq!(r.optics().unwrap().len(), 2, "300 kV and 200 kV groups");
            assert!(r.particles().has_column("_rlnOriginXAngst"));
        }
    }
    let mut bad = records();
    bad.euler_deg = Some(vec![[0.0; 3]]);
    assert!(relion_star("x.star", &bad, RelionVersion::Relion31)
        .unwrap_err()
        .to_string()
        .contains("rotations"));
    let no_ctf = ParticleRecords { image_names: vec!["1@a.mrcs".into()], ..Default::default() };
    assert!(relion_star("x.star", &no_ctf, RelionVersion::Relion31).is_err());
    let with_size = ParticleRecords { image_size: Some(64.0), apix: Some(1.5), ..no_ctf };
    let s = relion_star("x.star", &with_size, RelionVersion::Relion31).unwrap();
    let r = RelionParticles::from_star(s).unwrap();
    assert_eq!(r.box_size(None).unwrap(), [64.0]);
    assert_eq!(r.pixel_size(None).unwrap(), [1.5]);
}
