//! write-star / write-cs followed by the parsers give back the poses and CTF that went in.

use drgnfly_em::rotation::{angle_between_deg, from_f32};
use drgnfly_io::cs::CsFile;
use drgnfly_io::pickle::{self, Poses};
use drgnfly_io::relion::RelionParticles;

use crate::util::{assert_ctf_close, drgnfly, fixture, varied_ctf, write_ind};

/// Rotations agree to 1e-5 entry-wise (after the Euler or axis-angle round trip) and translations to `tol_t`.
fn assert_poses_close(got: &Poses, want: &Poses, rows: &[usize], tol_t: f64) {
    assert_eq!(got.len(), rows.len(), "number of poses");
    let (gt, wt) = (got.trans.as_ref().unwrap(), want.trans.as_ref().unwrap());
    for (k, &r) in rows.iter().enumerate() {
        for i in 0..3 {
            for j in 0..3 {
                let d = (got.rot[k][i][j] - want.rot[r][i][j]).abs();
                assert!(d < 1e-5, "pose {k} (input row {r}) R[{i}][{j}]: |Δ| = {d}");
            }
        }
        assert!(angle_between_deg(&from_f32(&got.rot[k]), &from_f32(&want.rot[r])) < 1e-3);
        for c in 0..2 {
            let d = f64::from((gt[k][c] - wt[r][c]).abs());
            assert!(d < tol_t, "pose {k} (input row {r}) t[{c}]: |Δ| = {d}");
        }
    }
}

/// RELION 3.1 (default): toy_projections.mrcs + test_ctf.pkl + toy_rot_trans.pkl → .star → parsers.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn write_star_then_parse_gives_back_poses_and_ctf() {
    let (Some(mrcs), Some(ctf), Some(poses)) = (
        fixture("cryodrgn/toy_projections.mrcs"),
        fixture("cryodrgn/test_ctf.pkl"),
        fixture("cryodrgn/toy_rot_trans.pkl"),
    ) else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    drgnfly(dir.path(), &["write-star", &mrcs, "--ctf", &ctf, "--poses", &poses, "-o", "out.star"]).ok();
    let star = RelionParticles::open(dir.path().join("out.star")).unwrap();
    assert_eq!(star.len(), 1000);
    assert_eq!(star.optics().map(|o| o.len()), Some(1), "test_ctf.pkl has one optics group");
    let name = star.image_name(999).unwrap();
    assert_eq!((name.index, name.path), (999, mrcs.as_str()), "image names are 1-based N@path");
    assert!(star.particles().has_column("_rlnOriginXAngst"), "RELION 3.1 origins are in Å");

    drgnfly(dir.path(), &["parse-pose-star", "out.star", "-o", "pose.pkl"]).ok();
    drgnfly(dir.path(), &["parse-ctf-star", "out.star", "-o", "ctf.pkl"]).ok();
    let want = pickle::load_poses(&poses).unwrap();
    let got = pickle::load_poses(dir.path().join("pose.pkl")).unwrap();
    let all: Vec<usize> = (0..1000).collect();
    // Origins are written with 6 decimals in Å (1 Å/px, D = 30): t is exact to ~1e-6/30.
    assert_poses_close(&got, &want, &all, 1e-6);
    assert_ctf_close(
        &pickle::load_ctf(dir.path().join("ctf.pkl")).unwrap(),
        &pickle::load_ctf(&ctf).unwrap(),
        1e-6,
    );
}

/// RELION 3.0 with `--ind`: rows are selected from images, CTF and poses together; origins in px.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn write_star_relion30_with_selection() {
    let (Some(mrcs), Some(poses)) =
        (fixture("cryodrgn/toy_projections.mrcs"), fixture("cryodrgn/toy_rot_trans.pkl"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ctf = varied_ctf(1000, 30.0);
    pickle::write_ctf(dir.path().join("ctf.pkl"), &ctf).unwrap();
    let rows = [17usize, 3, 999, 500];
    write_ind(&dir.path().join("ind.pkl"), &rows.map(|r| r as i64));
    let args = [
        "write-star",
        &mrcs,
        "--ctf",
        "ctf.pkl",
        "--poses",
        &poses,
        "--ind",
        "ind.pkl",
        "--relion30",
        "-o",
        "o.star",
    ];
    drgnfly(dir.path(), &args).ok();
    let star = RelionParticles::open(dir.path().join("o.star")).unwrap();
    assert!(star.optics().is_none() && star.particles().has_column("_rlnOriginX"));
    let idx: Vec<u64> = (0..4).map(|p| star.image_name(p).unwrap().index).collect();
    assert_eq!(idx, rows.map(|r| r as u64));

    // RELION 3.0 has no _rlnImageSize: -D is required, and its absence is reported.
    drgnfly(dir.path(), &["parse-pose-star", "o.star", "-o", "p.pkl"]).fails_with(&[
        "o.star",
        "_rlnImageSize",
        "-D",
    ]);
    drgnfly(dir.path(), &["parse-pose-star", "o.star", "-D", "30", "-o", "p.pkl"]).ok();
    drgnfly(dir.path(), &["parse-ctf-star", "o.star", "-D", "30", "-o", "c.pkl"]).ok();
    let got = pickle::load_poses(dir.path().join("p.pkl")).unwrap();
    assert_poses_close(&got, &pickle::load_poses(&poses).unwrap(), &rows, 1e-6);
    let want: Vec<[f32; 9]> = rows.iter().map(|&r| ctf[r]).collect();
    assert_ctf_close(&pickle::load_ctf(dir.path().join("c.pkl")).unwrap(), &want, 1e-6);
}

/// write-cs → parse-pose-csparc / parse-ctf-csparc, and the .cs fields as cryoSPARC reads them.
#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn write_cs_then_parse_gives_back_poses_and_ctf() {
    let (Some(mrcs), Some(poses)) =
        (fixture("cryodrgn/toy_projections.mrcs"), fixture("cryodrgn/toy_rot_trans.pkl"))
    else {
        return;
    };
    let dir = tempfile::tempdir().unwrap();
    let ctf = varied_ctf(1000, 30.0);
    pickle::write_ctf(dir.path().join("ctf.pkl"), &ctf).unwrap();
    // Every row, in reverse order: row 146 is a rotation by 179.99° (ill-conditioned for the log map).
    let rows: Vec<usize> = (0..1000).rev().collect();
    write_ind(&dir.path().join("ind.pkl"), &rows.iter().map(|&r| r as i64).collect::<Vec<_>>());
    let args = ["write-cs", &mrcs, "--ctf", "ctf.pkl", "--poses", &poses, "--ind", "ind.pkl", "-o", "out.cs"];
    drgnfly(dir.path(), &args).ok();

    let cs = CsFile::open(dir.path().join("out.cs")).unwrap();
    assert_eq!(cs.len(), rows.len());
    assert_eq!(cs.blob_idx().unwrap(), rows.iter().map(|&r| r as u64).collect::<Vec<_>>());
    assert_eq!(cs.blob_paths().unwrap()[0], mrcs);
    assert_eq!(cs.box_size(None).unwrap(), Some(30.0));
    let uids = cs.array().field("uid").unwrap().column_u64().unwrap();
    let mut distinct = uids.clone();
    distinct.sort_unstable();
    distinct.dedup();
    assert_eq!(distinct.len(), uids.len(), "uids are distinct");

    drgnfly(dir.path(), &["parse-pose-csparc", "out.cs", "-o", "pose.pkl"]).ok();
    drgnfly(dir.path(), &["parse-ctf-csparc", "out.cs", "-o", "c.pkl"]).ok();
    let got = pickle::load_poses(dir.path().join("pose.pkl")).unwrap();
    // Shifts are stored in float32 pixels: t·D rounds at ~1e-7 relative.
    assert_poses_close(&got, &pickle::load_poses(&poses).unwrap(), &rows, 1e-6);
    let want: Vec<[f32; 9]> = rows.iter().map(|&r| ctf[r]).collect();
    // Angles go through float32 radians.
    assert_ctf_close(&pickle::load_ctf(dir.path().join("c.pkl")).unwrap(), &want, 1e-5);
}

/// A .txt list in another directory: its entries are relative to the list, and the .star names them
/// so that they resolve from where the command ran (and from the .star's directory).
#[test]
fn write_star_from_a_stack_list_in_a_subdirectory() {
    use drgnfly_io::mrc::{MrcDtype, MrcStackWriter};
    use drgnfly_io::source::{ParticleSource, SourceOptions};

    let dir = tempfile::tempdir().unwrap();
    let sub = dir.path().join("sub");
    std::fs::create_dir(&sub).unwrap();
    let image = |k: usize| -> Vec<f32> { (0..16).map(|i| (100 * k + i) as f32).collect() };
    for (name, ks) in [("a.mrcs", 0..3), ("b.mrcs", 3..5)] {
        let mut w = MrcStackWriter::create(sub.join(name), 4, 4, 2.0, MrcDtype::F32).unwrap();
        for k in ks {
            w.push(&image(k)).unwrap();
        }
        w.finish().unwrap();
    }
    std::fs::write(sub.join("list.txt"), "a.mrcs\nb.mrcs\n").unwrap();
    pickle::write_ctf(dir.path().join("ctf.pkl"), &varied_ctf(5, 4.0)).unwrap();
    write_ind(&dir.path().join("ind.pkl"), &[4, 0]);
    drgnfly(
        dir.path(),
        &["write-star", "sub/list.txt", "--ctf", "ctf.pkl", "--ind", "ind.pkl", "-o", "out.star"],
    )
    .ok();

    let star = RelionParticles::open(dir.path().join("out.star")).unwrap();
    let names: Vec<&str> = (0..2).map(|p| star.value(p, "_rlnImageName").unwrap()).collect();
    assert_eq!(names, ["000002@sub/b.mrcs", "000001@sub/a.mrcs"]);
    assert_eq!(star.optics().unwrap().len(), 1, "rows 4 and 0 share one optics group (even rows)");
    let src = ParticleSource::open(dir.path().join("out.star"), &SourceOptions::default()).unwrap();
    assert_eq!((src.read(0).unwrap(), src.read(1).unwrap()), (image(4), image(0)));
}

/// A STAR file without `_rlnPhaseShift` (no phase plate) is read as RELION reads it: phase shift 0, with a note.
#[test]
fn star_without_phase_shift_reads_as_zero() {
    let dir = tempfile::tempdir().unwrap();
    let star =
        "data_particles\n\nloop_\n_rlnImageName #1\n_rlnDefocusU #2\n_rlnDefocusV #3\n_rlnDefocusAngle #4\n\
                _rlnVoltage #5\n_rlnSphericalAberration #6\n_rlnAmplitudeContrast #7\n\
                1@p.mrcs 15000 14000 30 300 2.7 0.1\n2@p.mrcs 16000 15500 10 300 2.7 0.1\n";
    std::fs::write(dir.path().join("p.star"), star).unwrap();
    let out =
        drgnfly(dir.path(), &["parse-ctf-star", "p.star", "-D", "64", "--Apix", "1.5", "-o", "ctf.pkl"]).ok();
    assert!(out.stderr.contains("no _rlnPhaseShift"), "{}", out.stderr);
    let ctf = drgnfly_io::pickle::load_ctf(dir.path().join("ctf.pkl")).unwrap();
    assert_eq!(ctf.len(), 2);
    assert_eq!((ctf[0][2], ctf[1][8]), (15000.0, 0.0));
}
