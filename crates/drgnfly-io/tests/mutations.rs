//! Property test: every reader of user files, fed mutants of real files (`drgnfly_io::fixtures::mutants`),
//! returns `Ok` or an `Err`, never panics, and never aborts on an allocation (which would kill this test
//! process). A few hundred mutants per reader: seconds in all. The long-running search is the cargo-fuzz
//! harness in `fuzz/` (`scripts/fuzz.sh`).

use std::path::{Path, PathBuf};

use drgnfly_io::fixtures::{assert_survives_mutants, fixture};
use drgnfly_io::{atoms, cs, mrc, npy, pickle, relion, selection, source, star};

/// Mutants of each shared fixture (those present) through `read`.
fn survive(name: &str, fixtures: &[&str], read: impl Fn(&Path)) {
    let files: Vec<PathBuf> = fixtures.iter().filter_map(|rel| fixture(rel)).collect();
    assert_survives_mutants(name, &files, 300, read);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn mrc_stacks_and_maps() {
    survive(
        "mrc",
        &["cryodrgn/hand.5.mrcs", "cryodrgn/toymodel_small_nocenter.mrc", "mrcfile/emd_3197.map.gz"],
        |p| {
            if let Ok(s) = mrc::MrcStack::open(p) {
                let _ = s.read_image(0);
                let _ = s.read_image(s.len().saturating_sub(1));
            }
            let _ = mrc::read_volume(p);
            let _ = mrc::read_header(p);
        },
    );
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn star_files() {
    let files = [
        "cryodrgn/relion31.star",
        "cryodrgn/FinalRefinement-OriginalParticles-PfCRT.star",
        "starfile/postprocess.star",
    ];
    survive("star", &files, |p| {
        let _ = star::StarFile::open(p);
        let _ = relion::RelionParticles::open(p);
    });
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn cs_and_npy() {
    survive("cs", &["cryodrgn/cryosparc_P12_J24_001_particles.cs"], |p| {
        if let Ok(c) = cs::CsFile::open(p) {
            let _ = c.blob_paths();
            let _ = c.blob_idx();
            let _ = c.box_size(None);
        }
    });
    survive("npy", &["cryodrgn/im_shifted.npy"], |p| {
        let _ = npy::NpyArray::open(p);
    });
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn pickles_and_selections() {
    let files = [
        "cryodrgn/ctf1.pkl",
        "cryodrgn/hand_rot_trans.pkl",
        "cryodrgn/ind100.pkl",
        "cryodrgn/zvals_het-2_1k.pkl",
    ];
    survive("pickle", &files, |p| {
        let _ = pickle::load_all(p);
        let _ = pickle::load_ctf(p);
        let _ = pickle::load_poses(p);
        let _ = pickle::load_latents(p);
        let _ = selection::Selection::load(p);
    });
    survive("stack list", &["cryodrgn/toy_projections_2.txt"], |p| {
        let _ = source::read_stack_list(p);
    });
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn atomic_models() {
    survive("pdb", &["biopython/7DDO.pdb", "mdanalysis_adk/adk_closed.pdb"], |p| {
        let _ = atoms::read_pdb(p);
    });
    survive("mmcif", &["cryojax/8zpm.cif"], |p| {
        let _ = atoms::read_mmcif(p);
    });
    survive("element list", &["mdanalysis_adk/adk_heavy_atoms.tsv"], |p| {
        let _ = atoms::read_element_list(p);
    });
}
