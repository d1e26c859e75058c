//! The array files cryoDRGN commands exchange, read with their shapes checked and written as cryoDRGN
//! writes them.
//!
//! - ctf.pkl: `float32 (N, 9)`, columns D₀ (px), Apix₀ (Å/px), defocus U, V (Å), defocus angle (°),
//!   voltage (kV), Cs (mm), amplitude contrast, phase shift (°).
//! - pose.pkl: the tuple `(rot (N, 3, 3), trans (N, 2))`, or `rot` alone, or `(rot,)`; translations are
//!   fractions of the box. cryoDRGN also takes rotations and translations from two files
//!   (`--poses rot.pkl trans.pkl`): [`load_poses_split`].
//! - z.N.pkl: two pickles back to back, z_mu `(N, zdim)` then z_logvar of the same shape (older files
//!   and `zvals` files hold z alone).
//!
//! float64 files are read too (cryoDRGN's STAR parser writes float64 poses) and rounded to float32.
//! NaN or infinite values are errors that name the row, since they would silently poison training.

use std::path::Path;

use super::value::{fmt_shape, ArrayData, NdArray, PyValue};
use super::{expect_array, load_all, load_array, read_pickle_file};
use super::{parse_first, write_array, write_arrays_concatenated, write_tuple};
use crate::error::{Error, Result};

/// Column names of ctf.pkl, for messages.
const CTF_COLUMNS: [&str; 9] = [
    "D",
    "Apix",
    "defocus U",
    "defocus V",
    "defocus angle",
    "voltage",
    "Cs",
    "amplitude contrast",
    "phase shift",
];

/// Per-image poses: rotation matrices (cryoDRGN's convention, see `drgnfly-em`) and optional
/// translations as fractions of the box.
#[derive(Debug, Clone, PartialEq)]
pub struct Poses {
    /// One 3×3 rotation per image, row-major.
    pub rot: Vec<[[f32; 3]; 3]>,
    /// One (x, y) shift per image, in fractions of the box size; `None` when the file had rotations only.
    pub trans: Option<Vec<[f32; 2]>>,
}

impl Poses {
    /// Number of images.
    pub fn len(&self) -> usize {
        self.rot.len()
    }

    /// True when there are no images.
    pub fn is_empty(&self) -> bool {
        self.rot.is_empty()
    }
}

/// Read a cryoDRGN ctf.pkl: one row of 9 parameters per image (see the module docs for the columns).
pub fn load_ctf(path: impl AsRef<Path>) -> Result<Vec<[f32; 9]>> {
    let path = path.as_ref();
    let a = load_array(path)?;
    if a.shape.len() != 2 || a.shape[1] != 9 {
        return Err(Error::invalid(
            path,
            None,
            format!("CTF parameters must be an (N, 9) array, found shape {}", fmt_shape(&a.shape)),
            "Create ctf.pkl with parse_ctf_star or parse_ctf_csparc",
        ));
    }
    let values = a.as_f32_vec();
    check_finite(path, &values, 9, |row, col| format!("row {row} ({})", CTF_COLUMNS[col % 9]))?;
    Ok(rows::<9>(&values))
}

/// Read a cryoDRGN pose.pkl: `(rot, trans)`, `(rot,)` or `rot` alone.
pub fn load_poses(path: impl AsRef<Path>) -> Result<Poses> {
    let path = path.as_ref();
    let data = read_pickle_file(path)?;
    let (value, _) = parse_first(&data, path)?;
    let (rot, trans) = match value {
        PyValue::Array(a) if a.shape.len() == 2 && a.shape[1] == 2 => {
            return Err(Error::invalid(
                path,
                None,
                format!("holds only translations {}, no rotations", fmt_shape(&a.shape)),
                "Give the rotations too: --poses rot.pkl trans.pkl",
            ))
        }
        PyValue::Array(a) => (a, None),
        PyValue::Tuple(items) | PyValue::List(items) if matches!(items.len(), 1 | 2) => {
            let mut items = items.into_iter();
            let rot = items.next().map(|v| expect_array(path, v, "the pose tuple's first item (rotations)"));
            let trans =
                items.next().map(|v| expect_array(path, v, "the pose tuple's second item (translations)"));
            let rot = rot.ok_or_else(|| Error::invalid(path, None, "the pose tuple is empty", ""))??;
            (rot, trans.transpose()?)
        }
        other => {
            return Err(Error::invalid(
                path,
                None,
                format!("holds {}, not poses", other.describe()),
                "A pose .pkl holds (rot (N, 3, 3), trans (N, 2)) or rot alone",
            ))
        }
    };
    let rot = rotations(path, &rot)?;
    let trans = trans.map(|t| translations(path, &t)).transpose()?;
    if let Some(t) = &trans {
        if t.len() != rot.len() {
            return Err(Error::invalid(
                path,
                None,
                format!("has rotations for {} images but translations for {}", rot.len(), t.len()),
                "Rotations and translations must come from the same particle set",
            ));
        }
    }
    Ok(Poses { rot, trans })
}

/// Read rotations and translations from two files (`--poses rot.pkl trans.pkl`): an `(N, 3, 3)` array
/// and an `(N, 2)` array.
pub fn load_poses_split(rot_path: impl AsRef<Path>, trans_path: impl AsRef<Path>) -> Result<Poses> {
    let (rot_path, trans_path) = (rot_path.as_ref(), trans_path.as_ref());
    let rot = rotations(rot_path, &load_array(rot_path)?)?;
    let trans = translations(trans_path, &load_array(trans_path)?)?;
    if rot.len() != trans.len() {
        return Err(Error::invalid(
            trans_path,
            None,
            format!(
                "has translations for {} images but {} has rotations for {}",
                trans.len(),
                rot_path.display(),
                rot.len()
            ),
            "Rotations and translations must come from the same particle set",
        ));
    }
    Ok(Poses { rot, trans: Some(trans) })
}

/// Read a latent file (z.N.pkl): z_mu as `(N, zdim)` values in row-major order, zdim, and z_logvar when
/// the file holds the second pickle.
pub fn load_latents(path: impl AsRef<Path>) -> Result<(Vec<f32>, usize, Option<Vec<f32>>)> {
    let path = path.as_ref();
    let values = load_all(path)?;
    if values.len() > 2 {
        return Err(Error::invalid(
            path,
            None,
            format!("holds {} pickles; a latent file holds z_mu and optionally z_logvar", values.len()),
            "Pass a z.N.pkl written by train_vae",
        ));
    }
    let mut values = values.into_iter();
    let z = match values.next() {
        Some(v) => expect_array(path, v, "the first pickle (z_mu)")?,
        None => return Err(Error::invalid(path, None, "holds no pickle", "")),
    };
    if z.shape.len() != 2 || z.shape[1] == 0 {
        return Err(Error::invalid(
            path,
            None,
            format!("latents must be an (N, zdim) array, found shape {}", fmt_shape(&z.shape)),
            "Pass a z.N.pkl written by train_vae",
        ));
    }
    let (shape, zdim) = (z.shape.clone(), z.shape[1]);
    let z = z.into_f32_vec();
    check_finite(path, &z, zdim, |row, col| format!("z_mu row {row}, dimension {col}"))?;
    let logvar = match values.next() {
        None => None,
        Some(v) => {
            let lv = expect_array(path, v, "the second pickle (z_logvar)")?;
            if lv.shape != shape {
                return Err(Error::invalid(
                    path,
                    None,
                    format!("z_logvar has shape {} but z_mu has {}", fmt_shape(&lv.shape), fmt_shape(&shape)),
                    "Pass a z.N.pkl written by train_vae",
                ));
            }
            let lv = lv.into_f32_vec();
            check_finite(path, &lv, zdim, |row, col| format!("z_logvar row {row}, dimension {col}"))?;
            Some(lv)
        }
    };
    Ok((z, zdim, logvar))
}

/// Write a ctf.pkl (`float32 (N, 9)`), atomically.
pub fn write_ctf(path: impl AsRef<Path>, ctf: &[[f32; 9]]) -> Result<()> {
    let data = ctf.iter().flatten().copied().collect();
    write_array(path, &NdArray::new(vec![ctf.len(), 9], ArrayData::F32(data)))
}

/// Write a pose.pkl as cryoDRGN does: the tuple `(rot float32 (N, 3, 3), trans float32 (N, 2))`, or the
/// rotation array alone when there are no translations. Atomic.
pub fn write_poses(path: impl AsRef<Path>, poses: &Poses) -> Result<()> {
    let path = path.as_ref();
    let n = poses.rot.len();
    let rot =
        NdArray::new(vec![n, 3, 3], ArrayData::F32(poses.rot.iter().flatten().flatten().copied().collect()));
    match &poses.trans {
        None => write_array(path, &rot),
        Some(t) if t.len() != n => Err(Error::invalid(
            path,
            None,
            format!("cannot write rotations for {n} images with translations for {}", t.len()),
            "This is a bug in drgnfly; please report it",
        )),
        Some(t) => {
            let trans = NdArray::new(vec![n, 2], ArrayData::F32(t.iter().flatten().copied().collect()));
            write_tuple(path, &[&rot, &trans])
        }
    }
}

/// Write a z.N.pkl: z_mu `float32 (N, zdim)` then, when given, z_logvar, as two pickles back to back.
/// Atomic.
pub fn write_latents(path: impl AsRef<Path>, z: &[f32], zdim: usize, logvar: Option<&[f32]>) -> Result<()> {
    let path = path.as_ref();
    if zdim == 0 || !z.len().is_multiple_of(zdim) || logvar.is_some_and(|lv| lv.len() != z.len()) {
        return Err(Error::invalid(
            path,
            None,
            format!(
                "latents of {} values (logvar: {:?}) do not form rows of zdim {zdim}",
                z.len(),
                logvar.map(<[f32]>::len)
            ),
            "This is a bug in drgnfly; please report it",
        ));
    }
    let shape = vec![z.len() / zdim, zdim];
    let mu = NdArray::new(shape.clone(), ArrayData::F32(z.to_vec()));
    match logvar {
        None => write_arrays_concatenated(path, &[&mu]),
        Some(lv) => {
            let lv = NdArray::new(shape, ArrayData::F32(lv.to_vec()));
            write_arrays_concatenated(path, &[&mu, &lv])
        }
    }
}

fn rotations(path: &Path, a: &NdArray) -> Result<Vec<[[f32; 3]; 3]>> {
    if a.shape.len() != 3 || a.shape[1..] != [3, 3] {
        return Err(Error::invalid(
            path,
            None,
            format!("rotations must be an (N, 3, 3) array, found shape {}", fmt_shape(&a.shape)),
            "A pose .pkl holds (rot (N, 3, 3), trans (N, 2)) or rot alone",
        ));
    }
    let values = a.as_f32_vec();
    check_finite(path, &values, 9, |row, col| {
        format!("rotation of image {row}, entry ({}, {})", col / 3, col % 3)
    })?;
    let rot: Vec<[[f32; 3]; 3]> = rows::<9>(&values)
        .iter()
        .map(|r| [[r[0], r[1], r[2]], [r[3], r[4], r[5]], [r[6], r[7], r[8]]])
        .collect();
    for (i, r) in rot.iter().enumerate() {
        if let Some(problem) = not_a_rotation(r) {
            return Err(Error::invalid(
                path,
                format!("rotation of image {i}"),
                format!("not a rotation matrix: {problem}"),
                "pose rotations must be orthonormal with determinant +1; regenerate the file with \
                 parse-pose-star or parse-pose-csparc",
            ));
        }
    }
    Ok(rot)
}

/// What is wrong with `r` as a rotation matrix, if anything: rows not orthonormal, or a reflection. The
/// tolerance (1e-3) passes float32 rotations from any refinement program and catches scaled, skewed, zero
/// and mirrored matrices.
fn not_a_rotation(r: &[[f32; 3]; 3]) -> Option<String> {
    let r = r.map(|row| row.map(f64::from));
    let mut worst = 0f64;
    for i in 0..3 {
        for j in 0..3 {
            let dot: f64 = (0..3).map(|k| r[i][k] * r[j][k]).sum();
            worst = worst.max((dot - if i == j { 1.0 } else { 0.0 }).abs());
        }
    }
    if worst > 1e-3 {
        return Some(format!("R·Rᵀ differs from the identity by up to {worst:.3e}"));
    }
    let det = r[0][0] * (r[1][1] * r[2][2] - r[1][2] * r[2][1])
        - r[0][1] * (r[1][0] * r[2][2] - r[1][2] * r[2][0])
        + r[0][2] * (r[1][0] * r[2][1] - r[1][1] * r[2][0]);
    (det < 0.0).then(|| format!("its determinant is {det:.3} (a reflection, not a rotation)"))
}

fn translations(path: &Path, a: &NdArray) -> Result<Vec<[f32; 2]>> {
    if a.shape.len() != 2 || a.shape[1] != 2 {
        return Err(Error::invalid(
            path,
            None,
            format!("translations must be an (N, 2) array, found shape {}", fmt_shape(&a.shape)),
            "A pose .pkl holds (rot (N, 3, 3), trans (N, 2)) or rot alone",
        ));
    }
    let values = a.as_f32_vec();
    check_finite(path, &values, 2, |row, col| {
        format!("translation of image {row}, {}", if col == 0 { "x" } else { "y" })
    })?;
    Ok(rows::<2>(&values))
}

/// Split row-major values into rows of `N` (the caller checked the length is a multiple of `N`).
fn rows<const N: usize>(values: &[f32]) -> Vec<[f32; N]> {
    values
        .chunks_exact(N)
        .map(|c| {
            let mut row = [0.0; N];
            row.copy_from_slice(c);
            row
        })
        .collect()
}

/// Fail on the first NaN or infinity among row-major `values` with rows of `width`, naming it with
/// `record(row, column)`.
fn check_finite(
    path: &Path,
    values: &[f32],
    width: usize,
    record: impl Fn(usize, usize) -> String,
) -> Result<()> {
    match values.iter().position(|v| !v.is_finite()) {
        None => Ok(()),
        Some(p) => Err(Error::invalid(
            path,
            Some(record(p / width.max(1), p % width.max(1))),
            format!("value is {}", values[p]),
            "The file holds NaN or infinite values; re-create it from the original metadata",
        )),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::fixture;

    /// f32 values as f64, to compare with numpy's repr of float32 values.
    fn wide<const N: usize>(v: [f32; N]) -> [f64; N] {
        v.map(f64::from)
    }

    fn f32_array(shape: &[usize], values: Vec<f32>) -> NdArray {
        NdArray::new(shape.to_vec(), ArrayData::F32(values))
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn ctf_golden_row() {
        let Some(p) = fixture("cryodrgn/ctf1.pkl") else { return };
        let ctf = load_ctf(&p).unwrap();
        assert_eq!(ctf.len(), 5);
        // python/numpy 2.4.6: pickle.load(open('ctf1.pkl', 'rb'))[4].tolist()
        let row4 = [
            300.0,
            1.034999966621399,
            14106.599609375,
            15297.2001953125,
            10.903939247131348,
            300.0,
            0.0010000000474974513,
            0.10000000149011612,
            0.0,
        ];
        assert_eq!(ctf[4].map(f64::from), row4);
    }

    #[test]
    fn ctf_with_wrong_shape_or_nan_is_refused() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ctf.pkl");
        write_array(&p, &f32_array(&[2, 8], vec![1.0; 16])).unwrap();
        let err = load_ctf(&p).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }));
        assert!(err.to_string().contains("found shape (2, 8)"), "{err}");

        let mut rows = vec![[300.0, 1.0, 1e4, 1e4, 0.0, 300.0, 2.7, 0.1, 0.0]; 3];
        rows[2][3] = f32::NAN;
        write_ctf(&p, &rows).unwrap();
        let err = load_ctf(&p).unwrap_err();
        match &err {
            Error::Invalid { record: Some(r), .. } => assert_eq!(r, "row 2 (defocus V)"),
            other => panic!("expected Invalid with a record, got {other}"),
        }
        rows[2][3] = 1e4;
        write_ctf(&p, &rows).unwrap();
        assert_eq!(load_ctf(&p).unwrap(), rows);
    }

    #[test]
    fn matrices_that_are_not_rotations_are_refused_naming_the_image() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pose.pkl");
        let id = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        // A 90° turn about z, stored as float32: fine.
        let turn = [[0.0f32, -1.0, 0.0], [1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
        write_poses(&p, &Poses { rot: vec![id, turn], trans: None }).unwrap();
        assert_eq!(load_poses(&p).unwrap().len(), 2);
        let mirror = [[1.0f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, -1.0]];
        let scaled = [[1e30f32, 0.0, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        let skewed = [[1.0f32, 0.2, 0.0], [0.0, 1.0, 0.0], [0.0, 0.0, 1.0]];
        for (bad, what) in
            [(mirror, "reflection"), (scaled, "identity"), (skewed, "identity"), ([[0.0; 3]; 3], "identity")]
        {
            write_poses(&p, &Poses { rot: vec![id, id, bad], trans: None }).unwrap();
            let err = load_poses(&p).unwrap_err();
            match &err {
                Error::Invalid { record: Some(r), problem, .. } => {
                    assert_eq!(r, "rotation of image 2");
                    assert!(problem.contains(what), "{err}");
                }
                other => panic!("expected Invalid naming the image, got {other}"),
            }
        }
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn poses_in_every_cryodrgn_layout() {
        let (Some(rot_only), Some(rot_trans), Some(star), Some(angles), Some(trans)) = (
            fixture("cryodrgn/hand_rot.pkl"),
            fixture("cryodrgn/hand_rot_trans.pkl"),
            fixture("cryodrgn/pose.star.pkl"),
            fixture("cryodrgn/toy_angles.pkl"),
            fixture("cryodrgn/toy_trans.pkl"),
        ) else {
            return;
        };
        let p = load_poses(&rot_only).unwrap();
        assert_eq!((p.len(), p.trans.is_none()), (100, true));
        assert_eq!(f64::from(p.rot[0][0][0]), -0.900802493095398);

        // numpy: rot, trans = pickle.load(open('hand_rot_trans.pkl', 'rb')); rot[99], trans[99]
        let p = load_poses(&rot_trans).unwrap();
        assert_eq!(wide(p.rot[99][2]), [-0.5138517618179321, -0.8573098182678223, 0.031249970197677612]);
        assert_eq!(wide(p.trans.as_ref().unwrap()[99]), [0.05865384638309479, -0.014423076994717121]);

        // float64 file, rounded to float32: np.float32(rot[1]), np.float32(trans[1]).
        let p = load_poses(&star).unwrap();
        assert_eq!(wide(p.rot[1][0]), [0.5698074698448181, -0.13304057717323303, -0.8109375238418579]);
        assert_eq!(wide(p.trans.unwrap()[1]), [-0.0004687333421315998, 0.00015624999650754035]);

        // Two files, and a translations file alone.
        let p = load_poses_split(&angles, &trans).unwrap();
        assert_eq!(p.len(), 1000);
        assert_eq!(wide(p.trans.unwrap()[999]), [0.050969887524843216, -0.051637548953294754]);
        let err = load_poses(&trans).unwrap_err();
        assert!(err.to_string().contains("only translations"), "{err}");
        let err = load_poses_split(&rot_only, &trans).unwrap_err();
        assert!(
            err.to_string().contains("translations for 1000 images") && err.to_string().contains("for 100"),
            "{err}"
        );
    }

    #[test]
    fn pose_tuples_with_wrong_shapes_name_them() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pose.pkl");
        let rot = f32_array(&[4, 3], vec![0.0; 12]);
        let trans = f32_array(&[4, 2], vec![0.0; 8]);
        write_tuple(&p, &[&rot, &trans]).unwrap();
        let err = load_poses(&p).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }));
        assert!(err.to_string().contains("(N, 3, 3) array, found shape (4, 3)"), "{err}");

        let identity = [1.0, 0.0, 0.0, 0.0, 1.0, 0.0, 0.0, 0.0, 1.0];
        let rot = f32_array(&[4, 3, 3], identity.repeat(4));
        let trans = f32_array(&[4, 3], vec![0.0; 12]);
        write_tuple(&p, &[&rot, &trans]).unwrap();
        assert!(load_poses(&p).unwrap_err().to_string().contains("(N, 2) array, found shape (4, 3)"));

        let trans = f32_array(&[3, 2], vec![0.0; 6]);
        write_tuple(&p, &[&rot, &trans]).unwrap();
        assert!(load_poses(&p)
            .unwrap_err()
            .to_string()
            .contains("rotations for 4 images but translations for 3"));

        // (rot,) is accepted; a 3-tuple is not.
        write_tuple(&p, &[&rot]).unwrap();
        assert_eq!(load_poses(&p).unwrap().len(), 4);
        write_tuple(&p, &[&rot, &trans, &trans]).unwrap();
        assert!(load_poses(&p).unwrap_err().to_string().contains("a tuple of 3 items"));
    }

    #[test]
    fn poses_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("pose.pkl");
        let poses = Poses {
            rot: vec![
                [[1.0, 0.0, 0.0], [0.0, 0.0, -1.0], [0.0, 1.0, 0.0]],
                [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]],
            ],
            trans: Some(vec![[0.125, -0.25], [0.0, 1e-3]]),
        };
        write_poses(&p, &poses).unwrap();
        assert_eq!(load_poses(&p).unwrap(), poses);
        let rot_only = Poses { trans: None, ..poses };
        write_poses(&p, &rot_only).unwrap();
        assert_eq!(load_poses(&p).unwrap(), rot_only);
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn latents_with_and_without_logvar() {
        if let Some(p) = fixture("cryodrgn/zvals_het-8_4k.pkl") {
            let (z, zdim, logvar) = load_latents(&p).unwrap();
            assert_eq!((z.len(), zdim, logvar), (4549 * 8, 8, None));
            // numpy: pickle.load(open('zvals_het-8_4k.pkl', 'rb'))[4548, :2]
            assert_eq!(wide([z[4548 * 8], z[4548 * 8 + 1]]), [-2.9836783409118652, -0.44480079412460327]);
        }
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("z.3.pkl");
        let z = [1.0, 2.0, 3.0, 4.0, 5.0, 6.0];
        let lv = [-1.0, -2.0, -3.0, -4.0, -5.0, -6.0];
        write_latents(&p, &z, 3, Some(&lv)).unwrap();
        assert_eq!(load_latents(&p).unwrap(), (z.to_vec(), 3, Some(lv.to_vec())));
        assert_eq!(load_all(&p).unwrap().len(), 2, "z.N.pkl is two pickles back to back");

        // A logvar of another shape, a third pickle, a 1-D z.
        let mu = f32_array(&[2, 3], z.to_vec());
        write_arrays_concatenated(&p, &[&mu, &f32_array(&[3, 2], lv.to_vec())]).unwrap();
        assert!(load_latents(&p)
            .unwrap_err()
            .to_string()
            .contains("z_logvar has shape (3, 2) but z_mu has (2, 3)"));
        write_arrays_concatenated(&p, &[&mu, &mu, &mu]).unwrap();
        assert!(load_latents(&p).unwrap_err().to_string().contains("holds 3 pickles"));
        write_array(&p, &f32_array(&[6], z.to_vec())).unwrap();
        assert!(load_latents(&p).unwrap_err().to_string().contains("found shape (6,)"));
        let mut bad = z;
        bad[4] = f32::INFINITY;
        write_latents(&p, &bad, 3, None).unwrap();
        let err = load_latents(&p).unwrap_err();
        assert!(
            matches!(err, Error::Invalid { record: Some(ref r), .. } if r == "z_mu row 1, dimension 1"),
            "{err}"
        );
    }
}
