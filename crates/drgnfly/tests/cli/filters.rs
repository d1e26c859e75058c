//! filter-star, filter-cs, filter-mrcs, filter-pkl, select-random, concat-pkls.

use drgnfly_io::cs::CsFile;
use drgnfly_io::mrc::MrcStack;
use drgnfly_io::pickle::{self, ArrayData, DType};
use drgnfly_io::relion::RelionParticles;
use drgnfly_io::selection::Selection;

use crate::util::{arrays, drgnfly, fixture, write_ind};

/// Two optics groups; keeping only particles of group 2 keeps only that group's optics row.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn filter_star_keeps_rows_and_used_optics_groups() {
    let Some(input) = fixture("aspire/sample_particles_relion31.star") else { return };
    let src = RelionParticles::open(&input).unwrap();
    let group2: Vec<usize> =
        (0..src.len()).filter(|&p| src.value(p, "_rlnOpticsGroup") == Some("2")).rev().collect();
    assert!(!group2.is_empty() && group2.len() < src.len(), "the fixture mixes two groups");

    let dir = tempfile::tempdir().unwrap();
    write_ind(&dir.path().join("ind.pkl"), &group2.iter().map(|&p| p as i64).collect::<Vec<_>>());
    drgnfly(dir.path(), &["filter-star", &input, "--ind", "ind.pkl", "-o", "out.star"]).ok();
    let out = RelionParticles::open(dir.path().join("out.star")).unwrap();
    assert_eq!(out.len(), group2.len());
    let optics = out.optics().unwrap();
    assert_eq!(optics.len(), 1, "only the used group is kept");
    assert_eq!(optics.column_i64("_rlnOpticsGroup").unwrap(), vec![2]);
    for (k, &p) in group2.iter().enumerate() {
        assert_eq!(out.value(k, "_rlnImageName"), src.value(p, "_rlnImageName"), "row {k}");
        assert_eq!(out.value(k, "_rlnVoltage"), Some("200.000000"), "group 2's voltage still joins");
    }

    // Both groups used: both kept.
    let group1 = (0..src.len()).find(|&p| src.value(p, "_rlnOpticsGroup") == Some("1")).unwrap();
    write_ind(&dir.path().join("two.pkl"), &[group2[0] as i64, group1 as i64]);
    drgnfly(dir.path(), &["filter-star", &input, "--ind", "two.pkl", "-o", "two.star"]).ok();
    assert_eq!(RelionParticles::open(dir.path().join("two.star")).unwrap().optics().unwrap().len(), 2);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn filter_cs_keeps_selected_rows_unchanged() {
    let Some(input) = fixture("cryodrgn/cryosparc_P12_J24_001_particles.cs") else { return };
    let dir = tempfile::tempdir().unwrap();
    write_ind(&dir.path().join("ind.pkl"), &[2018, 0, 7]);
    drgnfly(dir.path(), &["filter-cs", &input, "--ind", "ind.pkl", "-o", "out.cs"]).ok();
    let (src, out) = (CsFile::open(&input).unwrap(), CsFile::open(dir.path().join("out.cs")).unwrap());
    assert_eq!(out.len(), 3);
    for (k, r) in [2018usize, 0, 7].into_iter().enumerate() {
        assert_eq!(out.array().item(k), src.array().item(r), "row {k} is input row {r}, byte for byte");
    }
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn filter_mrcs_copies_the_selected_images() {
    let Some(input) = fixture("cryodrgn/toy_projections.mrcs") else { return };
    let dir = tempfile::tempdir().unwrap();
    // A selection is a set: a repeated index is refused, naming it.
    write_ind(&dir.path().join("ind.pkl"), &[999, 0, 500, 500, 31]);
    drgnfly(dir.path(), &["filter-mrcs", &input, "--ind", "ind.pkl", "-o", "out.mrcs"])
        .fails_with(&["ind.pkl", "500 at entries 2, 3"]);
    let rows = [999usize, 0, 500, 31];
    write_ind(&dir.path().join("ind.pkl"), &rows.map(|r| r as i64));
    drgnfly(dir.path(), &["filter-mrcs", &input, "--ind", "ind.pkl", "-o", "out.mrcs"]).ok();
    let (src, out) = (MrcStack::open(&input).unwrap(), MrcStack::open(dir.path().join("out.mrcs")).unwrap());
    assert_eq!((out.len(), out.image_shape()), (rows.len(), (30, 30)));
    for (k, &r) in rows.iter().enumerate() {
        assert_eq!(out.read_image(k).unwrap(), src.read_image(r).unwrap(), "image {k} is input image {r}");
    }
    assert_eq!(out.header().known_apix(), src.header().known_apix());
}

/// A pose tuple is filtered as a whole (rot and trans together), with its dtypes kept.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn filter_pkl_on_pose_tuple_and_ctf() {
    let (Some(poses), Some(ctf)) = (fixture("cryodrgn/toy_rot_trans.pkl"), fixture("cryodrgn/test_ctf.pkl"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let rows = [4usize, 999, 3, 0];
    write_ind(&dir.path().join("ind.pkl"), &rows.map(|r| r as i64));
    drgnfly(dir.path(), &["filter-pkl", &poses, "--ind", "ind.pkl", "-o", "p.pkl"]).ok();
    let (src, got) = (arrays(poses.as_ref()), arrays(&dir.path().join("p.pkl")));
    assert_eq!(got.len(), 2, "still a (rot, trans) tuple");
    assert_eq!((got[0].shape.clone(), got[0].dtype()), (vec![4, 3, 3], DType::F32));
    assert_eq!((got[1].shape.clone(), got[1].dtype()), (vec![4, 2], DType::F64));
    let (sr, st, gr, gt) =
        (src[0].as_f64_vec(), src[1].as_f64_vec(), got[0].as_f64_vec(), got[1].as_f64_vec());
    for (k, &r) in rows.iter().enumerate() {
        assert_eq!(gr[9 * k..9 * k + 9], sr[9 * r..9 * r + 9]);
        assert_eq!(gt[2 * k..2 * k + 2], st[2 * r..2 * r + 2]);
    }

    drgnfly(dir.path(), &["filter-pkl", &ctf, "--first", "10", "-o", "c.pkl"]).ok();
    let c = pickle::load_ctf(dir.path().join("c.pkl")).unwrap();
    assert_eq!(c[..], pickle::load_ctf(&ctf).unwrap()[..10]);
    drgnfly(dir.path(), &["filter-pkl", &ctf, "--first", "1001", "-o", "c.pkl"])
        .fails_with(&["--first 1001", "1000 rows"]);
}

#[test]
fn select_random_counts_seed_and_complement() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    drgnfly(p, &["select-random", "1000", "-n", "100", "--seed", "7", "-o", "a.pkl", "-s", "rest.pkl"]).ok();
    drgnfly(p, &["select_random", "1000", "-n", "100", "--seed", "7", "-o", "b.pkl"]).ok();
    drgnfly(p, &["select-random", "1000", "-n", "100", "--seed", "8", "-o", "c.pkl"]).ok();
    drgnfly(p, &["select-random", "1000", "--frac", "0.25", "-o", "f.pkl"]).ok();
    let load = |n: &str| Selection::load(p.join(n)).unwrap().indices().to_vec();
    let (a, rest) = (load("a.pkl"), load("rest.pkl"));
    assert_eq!((a.len(), rest.len(), load("f.pkl").len()), (100, 900, 250));
    assert_eq!(a, load("b.pkl"), "same seed, same selection");
    assert_ne!(a, load("c.pkl"), "another seed, another selection");
    let mut all: Vec<i64> = a.iter().chain(&rest).copied().collect();
    all.sort_unstable();
    assert_eq!(all, (0..1000).collect::<Vec<i64>>(), "selection and complement are disjoint and cover 0..N");
    drgnfly(p, &["select-random", "10", "-n", "11", "-o", "x.pkl"]).fails_with(&["cannot select 11 of 10"]);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn concat_pkls_joins_rows_and_names_mismatches() {
    let (Some(poses), Some(ctf), Some(trans)) = (
        fixture("cryodrgn/toy_rot_trans.pkl"),
        fixture("cryodrgn/test_ctf.100.pkl"),
        fixture("cryodrgn/toy_trans.pkl"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path();
    drgnfly(p, &["filter-pkl", &poses, "--first", "3", "-o", "head.pkl"]).ok();
    drgnfly(p, &["concat-pkls", "head.pkl", &poses, "-o", "joined.pkl"]).ok();
    let (src, got) = (arrays(poses.as_ref()), arrays(&p.join("joined.pkl")));
    assert_eq!((got[0].shape.clone(), got[1].shape.clone()), (vec![1003, 3, 3], vec![1003, 2]));
    assert_eq!(got[0].as_f64_vec()[27..], src[0].as_f64_vec()[..], "the second file follows the first");
    assert_eq!(got[1].as_f64_vec()[..6], src[1].as_f64_vec()[..6]);

    drgnfly(p, &["concat-pkls", &ctf, &ctf, "-o", "ctf.pkl"]).ok();
    let c = arrays(&p.join("ctf.pkl"));
    assert_eq!((c[0].shape.clone(), c[0].dtype()), (vec![200, 9], DType::F32));
    assert!(matches!(&c[0].data, ArrayData::F32(v) if v[..900] == v[900..]));

    drgnfly(p, &["concat-pkls", &ctf, &trans, "-o", "bad.pkl"])
        .fails_with(&["toy_trans.pkl", "does not match (100, 9)"]);
    drgnfly(p, &["concat-pkls", &ctf, &poses, "-o", "bad.pkl"])
        .fails_with(&["toy_rot_trans.pkl", "same kind"]);
}
