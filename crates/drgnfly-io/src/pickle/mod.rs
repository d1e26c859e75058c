//! numpy-array pickles as cryoDRGN reads and writes them (`ctf.pkl`, `pose.pkl`, `z.N.pkl`, index `.pkl`),
//! parsed, never executed.
//!
//! - [`read`]: a pickle virtual machine for protocols 0–5 that accepts only numpy's array reconstruction
//!   (any other global is [`Error::UnsafePickle`]).
//! - [`value`]: the result, [`PyValue`] and [`NdArray`] (C order, typed elements).
//! - [`write`](mod@write): protocol-4 writers whose output numpy 1.x and 2.x load.
//! - [`torch`](mod@torch): PyTorch checkpoints (`torch.save`'s zip) for cryoDRGN to load our models.
//! - [`cryodrgn`]: the files cryoDRGN commands exchange, with their shapes checked: [`load_ctf`] (N×9),
//!   [`load_poses`] (`(rot N×3×3, trans N×2)` or rot alone), [`load_latents`] (z.N.pkl).
//!
//! A `.pkl` can be one pickle or several back to back ([`load_all`]); like cryoDRGN's `utils.load_pkl`,
//! [`load_array`] reads only the first. PyTorch checkpoints (`weights.pkl`, zip archives) are recognised
//! and refused with a message saying so; they are read by `drgnfly-nn` and written by [`torch`](mod@torch).

pub mod cryodrgn;
mod numpy;
mod opcode;
pub mod read;
pub mod torch;
pub mod value;
pub mod write;

use std::path::Path;

use crate::error::{Error, Result};

pub use cryodrgn::{
    load_ctf, load_latents, load_poses, load_poses_split, write_ctf, write_latents, write_poses, Poses,
};
pub use read::{parse_all, parse_first};
pub use torch::{write_torch, TorchValue};
pub use value::{fmt_shape, ArrayData, DType, NdArray, PyValue};
pub use write::{write_array, write_arrays_concatenated, write_tuple};

/// The first pickle of `path`, which must be a numpy array.
pub fn load_array(path: impl AsRef<Path>) -> Result<NdArray> {
    let path = path.as_ref();
    let data = read_pickle_file(path)?;
    let (value, _) = parse_first(&data, path)?;
    expect_array(path, value, "the pickle")
}

/// Every pickle of `path`, back to back (z.N.pkl holds two).
pub fn load_all(path: impl AsRef<Path>) -> Result<Vec<PyValue>> {
    let path = path.as_ref();
    let data = read_pickle_file(path)?;
    parse_all(&data, path)
}

/// `value` as an array, or an error naming what `what` holds instead.
fn expect_array(path: &Path, value: PyValue, what: &str) -> Result<NdArray> {
    match value {
        PyValue::Array(a) => Ok(a),
        other => Err(Error::invalid(
            path,
            None,
            format!("{what} holds {}, not a numpy array", other.describe()),
            "Pass a .pkl holding one numpy array",
        )),
    }
}

/// The bytes of a pickle file, refusing the PyTorch zip format up front.
fn read_pickle_file(path: &Path) -> Result<Vec<u8>> {
    let data = crate::input::read_bytes(path)?;
    if data.starts_with(b"PK\x03\x04") {
        return Err(Error::invalid(
            path,
            None,
            "this is a PyTorch checkpoint (a zip archive written by torch.save), not a numpy-array pickle",
            "Model weights (weights.pkl) are loaded with --load/weights arguments; pass a ctf, pose, z or index .pkl here",
        ));
    }
    Ok(data)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::fixture;

    /// One array of a fixture: shape, dtype, elements 0, len/2 and len−1 of `ravel()`, and the float64 sum.
    struct Golden {
        shape: &'static [usize],
        dtype: DType,
        spots: [f64; 3],
        sum: f64,
    }

    const fn g(shape: &'static [usize], dtype: DType, spots: [f64; 3], sum: f64) -> Golden {
        Golden { shape, dtype, spots, sum }
    }

    use DType::{F32, F64, I64};

    /// Produced with python 3.11.7 + numpy 2.4.6, for each array `o` of each pickle in the file:
    /// `o.shape, o.dtype, [o.ravel()[i].item() for i in (0, o.size // 2, -1)], o.astype(np.float64).sum()`.
    const GOLDEN: &[(&str, &[Golden])] = &[
        ("ctf1.pkl", &[g(&[5, 9], F32, [300.0, 10.870926856994629, 0.0], 163847.3847069865)]),
        ("ctf2.pkl", &[g(&[2019, 9], F32, [180.0, 2.341309070587158, 0.0], 97880209.8461628)]),
        (
            "hand_rot.pkl",
            &[g(
                &[100, 3, 3],
                F32,
                [-0.900802493095398, -0.5614638328552246, -0.5758193731307983],
                -36.091273996047676,
            )],
        ),
        (
            "hand_rot_trans.pkl",
            &[
                g(
                    &[100, 3, 3],
                    F32,
                    [-0.6646641492843628, 0.09305176138877869, 0.031249970197677612],
                    -22.085639018565416,
                ),
                g(
                    &[100, 2],
                    F32,
                    [0.006730769295245409, -0.002884615445509553, -0.014423076994717121],
                    0.13846154377097264,
                ),
            ],
        ),
        ("ind100-rand.pkl", &[g(&[100], I64, [1.0, 482.0, 994.0], 48421.0)]),
        ("ind100.pkl", &[g(&[100], I64, [0.0, 50.0, 99.0], 4950.0)]),
        ("ind4.pkl", &[g(&[4], I64, [0.0, 3.0, 4.0], 8.0)]),
        ("ind5.pkl", &[g(&[5], I64, [0.0, 2.0, 5.0], 11.0)]),
        ("ind_39_sta_testing_bin8.pkl", &[g(&[195], I64, [0.0, 97.0, 194.0], 18915.0)]),
        (
            "pose.cs.pkl",
            &[
                g(
                    &[2019, 3, 3],
                    F32,
                    [0.5816298127174377, -0.08530604839324951, -0.526727557182312],
                    -397.37692952610087,
                ),
                g(
                    &[2019, 2],
                    F32,
                    [0.06296875327825546, 0.06234375014901161, 0.04609375074505806],
                    -10.073125057271682,
                ),
            ],
        ),
        (
            "pose.star.pkl",
            &[
                g(
                    &[5, 3, 3],
                    F64,
                    [-0.2830989316786162, -0.16780217648968035, 0.08830182777383085],
                    8.13903347319937,
                ),
                g(
                    &[5, 2],
                    F64,
                    [-0.00046876666666666666, -0.0007812666666666667, 0.0006770833333333334],
                    -0.0010417,
                ),
            ],
        ),
        ("sta_ctf.pkl", &[g(&[219, 9], F32, [512.0, 9.399999618530273, 0.0], 9267503.109639429)]),
        (
            "sta_pose.pkl",
            &[
                g(
                    &[219, 3, 3],
                    F64,
                    [0.9167403628691108, 0.10747535237208393, 0.8342609355189611],
                    280.7195254463176,
                ),
                g(
                    &[219, 2],
                    F64,
                    [9.06316863284e-313, 9.0631687611e-313, 0.0013515095284649375],
                    0.08509405068982193,
                ),
            ],
        ),
        ("test_ctf.100.pkl", &[g(&[100, 9], F32, [30.0, 30.0, 90.0], 42110.10000015376)]),
        ("test_ctf.pkl", &[g(&[1000, 9], F32, [30.0, 30.0, 90.0], 421101.0000015376)]),
        (
            "toy_angles.pkl",
            &[g(
                &[1000, 3, 3],
                F32,
                [0.6103606224060059, -0.16264507174491882, -0.9730046391487122],
                -103.83264439972118,
            )],
        ),
        (
            "toy_rot_trans.pkl",
            &[
                g(
                    &[1000, 3, 3],
                    F32,
                    [0.6103606224060059, -0.16264507174491882, -0.9730046391487122],
                    -103.83264439972118,
                ),
                g(
                    &[1000, 2],
                    F64,
                    [0.11387941896441625, -0.0744989335111968, -0.05163754800019307],
                    0.38045237253716646,
                ),
            ],
        ),
        (
            "toy_rot_zerotrans.pkl",
            &[
                g(
                    &[1000, 3, 3],
                    F32,
                    [0.6103606224060059, -0.16264507174491882, -0.9730046391487122],
                    -103.83264439972118,
                ),
                g(&[1000, 2], F32, [0.0, 0.0, 0.0], 0.0),
            ],
        ),
        (
            "toy_trans.pkl",
            &[g(
                &[1000, 2],
                F64,
                [0.11387941896441625, -0.0744989335111968, -0.05163754800019307],
                0.38045237253716646,
            )],
        ),
        ("toy_trans.zero.pkl", &[g(&[1000, 2], F32, [0.0, 0.0, 0.0], 0.0)]),
        (
            "zvals_het-2_1k.pkl",
            &[g(
                &[1319, 2],
                F32,
                [-1.6868276596069336, 0.321318656206131, 0.061874642968177795],
                207.35492353048176,
            )],
        ),
        (
            "zvals_het-8_4k.pkl",
            &[g(
                &[4549, 8],
                F32,
                [-1.6868276596069336, 0.9809619784355164, -0.4292668104171753],
                630.145055482164,
            )],
        ),
    ];

    fn arrays(value: PyValue) -> Vec<NdArray> {
        match value {
            PyValue::Array(a) => vec![a],
            PyValue::Tuple(items) => items.into_iter().flat_map(arrays).collect(),
            other => panic!("unexpected {}", other.describe()),
        }
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn every_cryodrgn_pkl_matches_numpy() {
        for (name, golden) in GOLDEN {
            let Some(path) = fixture(&format!("cryodrgn/{name}")) else { continue };
            let values = load_all(&path).unwrap_or_else(|e| panic!("{e}"));
            assert_eq!(values.len(), 1, "{name}: one pickle");
            let got = arrays(values.into_iter().next().unwrap());
            assert_eq!(got.len(), golden.len(), "{name}: number of arrays");
            for (a, g) in got.iter().zip(golden.iter()) {
                assert_eq!(a.shape, g.shape, "{name}");
                assert_eq!(a.dtype(), g.dtype, "{name}");
                let v = a.as_f64_vec();
                let spots = [v[0], v[v.len() / 2], v[v.len() - 1]];
                assert_eq!(spots, g.spots, "{name}: elements 0, n/2, n-1 are exact");
                let sum: f64 = v.iter().sum();
                assert!((sum - g.sum).abs() <= 1e-9 * g.sum.abs().max(1.0), "{name}: sum {sum} vs {}", g.sum);
            }
        }
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn torch_checkpoint_is_recognised() {
        let Some(path) = fixture("cryodrgn/het_weights.pkl") else { return };
        let err = load_array(&path).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("PyTorch checkpoint"), "{err}");
    }

    #[test]
    fn a_string_where_an_array_is_expected() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.pkl");
        // python 3.11.7: pickle.dumps('hello', protocol=4)
        crate::atomic::write_atomic(&p, b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8c\x05hello\x94.")
            .unwrap();
        let err = load_array(&p).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{err}");
        assert!(err.to_string().contains("holds a str, not a numpy array"), "{err}");
        let missing = load_array(dir.path().join("missing.pkl")).unwrap_err();
        assert!(matches!(missing, Error::Io { .. }));
    }
}
