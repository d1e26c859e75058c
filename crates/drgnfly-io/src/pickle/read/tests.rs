//! Tests of the machine on pickles produced by numpy (embedded below) and on crafted hostile input.

use std::path::Path;

use super::{parse_all, parse_first};
use crate::error::Error;
use crate::pickle::value::{ArrayData, NdArray, PyValue};

// ---- Pickles written by numpy (each comment gives the exact producer) ----

/// python 3.11.7, numpy 1.26.4: pickle.dumps(np.arange(6, dtype=np.float32).reshape(2, 3) / 4, protocol=2)
const NP1_P2_F32: &[u8] = b"\x80\x02cnumpy.core.multiarray\x0a_reconstruct\x0aq\x00cnumpy\x0andarray\x0aq\x01K\x00\x85q\x02c_codecs\x0aencode\x0aq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\x09(K\x01K\x02K\x03\x86q\x0acnumpy\x0adtype\x0aq\x0bX\x02\x00\x00\x00f4q\x0c\x89\x88\x87q\x0dRq\x0e(K\x03X\x01\x00\x00\x00<q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89h\x03X\x1b\x00\x00\x00\x00\x00\x00\x00\x00\x00\xc2\x80>\x00\x00\x00?\x00\x00@?\x00\x00\xc2\x80?\x00\x00\xc2\xa0?q\x11h\x05\x86q\x12Rq\x13tq\x14b.";
/// python 3.11.7, numpy 1.26.4: pickle.dumps(np.arange(3, dtype='>f4'), protocol=0)
const NP1_P0_F32_BE: &[u8] = b"cnumpy.core.multiarray\x0a_reconstruct\x0ap0\x0a(cnumpy\x0andarray\x0ap1\x0a(I0\x0atp2\x0ac_codecs\x0aencode\x0ap3\x0a(Vb\x0ap4\x0aVlatin1\x0ap5\x0atp6\x0aRp7\x0atp8\x0aRp9\x0a(I1\x0a(I3\x0atp10\x0acnumpy\x0adtype\x0ap11\x0a(Vf4\x0ap12\x0aI00\x0aI01\x0atp13\x0aRp14\x0a(I3\x0aV>\x0ap15\x0aNNNI-1\x0aI-1\x0aI0\x0atp16\x0abI00\x0ag3\x0a(V\x5cu0000\x5cu0000\x5cu0000\x5cu0000?\x80\x5cu0000\x5cu0000@\x5cu0000\x5cu0000\x5cu0000\x0ap17\x0ag5\x0atp18\x0aRp19\x0atp20\x0ab.";
/// python 3.11.7, numpy 1.26.4: pickle.dumps(np.array([True, False, True]), protocol=1)
const NP1_P1_BOOL: &[u8] = b"cnumpy.core.multiarray\x0a_reconstruct\x0aq\x00(cnumpy\x0andarray\x0aq\x01(K\x00tq\x02c_codecs\x0aencode\x0aq\x03(X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05tq\x06Rq\x07tq\x08Rq\x09(K\x01(K\x03tq\x0acnumpy\x0adtype\x0aq\x0b(X\x02\x00\x00\x00b1q\x0cI00\x0aI01\x0atq\x0dRq\x0e(K\x03X\x01\x00\x00\x00|q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10bI00\x0ah\x03(X\x03\x00\x00\x00\x01\x00\x01q\x11h\x05tq\x12Rq\x13tq\x14b.";
/// python 3.11.7, numpy 1.26.4: pickle.dumps(np.zeros((0, 9), dtype=np.float32), protocol=2)
const NP1_P2_EMPTY: &[u8] = b"\x80\x02cnumpy.core.multiarray\x0a_reconstruct\x0aq\x00cnumpy\x0andarray\x0aq\x01K\x00\x85q\x02c_codecs\x0aencode\x0aq\x03X\x01\x00\x00\x00bq\x04X\x06\x00\x00\x00latin1q\x05\x86q\x06Rq\x07\x87q\x08Rq\x09(K\x01K\x00K\x09\x86q\x0acnumpy\x0adtype\x0aq\x0bX\x02\x00\x00\x00f4q\x0c\x89\x88\x87q\x0dRq\x0e(K\x03X\x01\x00\x00\x00<q\x0fNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x10b\x89c__builtin__\x0abytes\x0aq\x11)Rq\x12tq\x13b.";
/// python 3.11.7, numpy 2.4.6: pickle.dumps(np.asfortranarray(np.arange(6, dtype=np.float64).reshape(2, 3)), protocol=5)
const NP2_P5_F64_FORTRAN: &[u8] = b"\x80\x05\x95\xa6\x00\x00\x00\x00\x00\x00\x00\x8c\x13numpy._core.numeric\x94\x8c\x0b_frombuffer\x94\x93\x94(\x960\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08@\x00\x00\x00\x00\x00\x00\xf0?\x00\x00\x00\x00\x00\x00\x10@\x00\x00\x00\x00\x00\x00\x00@\x00\x00\x00\x00\x00\x00\x14@\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bK\x02K\x03\x86\x94\x8c\x01F\x94t\x94R\x94.";
/// python 3.11.7, numpy 2.4.6: the same array with protocol=4
const NP2_P4_F64_FORTRAN: &[u8] = b"\x80\x04\x95\xbb\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x02K\x03\x86\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x88C0\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x08@\x00\x00\x00\x00\x00\x00\xf0?\x00\x00\x00\x00\x00\x00\x10@\x00\x00\x00\x00\x00\x00\x00@\x00\x00\x00\x00\x00\x00\x14@\x94t\x94b.";
/// python 3.11.7, numpy 2.4.6: pickle.dumps(np.array([-3, 7, 2**40], dtype=np.int64), protocol=3)
const NP2_P3_I64: &[u8] = b"\x80\x03cnumpy._core.multiarray\x0a_reconstruct\x0aq\x00cnumpy\x0andarray\x0aq\x01K\x00\x85q\x02C\x01bq\x03\x87q\x04Rq\x05(K\x01K\x03\x85q\x06cnumpy\x0adtype\x0aq\x07X\x02\x00\x00\x00i8q\x08\x89\x88\x87q\x09Rq\x0a(K\x03X\x01\x00\x00\x00<q\x0bNNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00tq\x0cb\x89C\x18\xfd\xff\xff\xff\xff\xff\xff\xff\x07\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x00\x01\x00\x00q\x0dtq\x0eb.";
/// python 3.11.7, numpy 2.4.6: a = np.array([1, 255, 0], dtype=np.uint8); pickle.dumps((a, np.array([5, -6], dtype=np.int32), a), protocol=4)
const NP2_P4_TUPLE_U8_I32_SHARED: &[u8] = b"\x80\x04\x95\xda\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x03\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02u1\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01|\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x03\x01\xff\x00\x94t\x94bh\x02h\x05K\x00\x85\x94h\x07\x87\x94R\x94(K\x01K\x02\x85\x94h\x0c\x8c\x02i4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x08\x05\x00\x00\x00\xfa\xff\xff\xff\x94t\x94bh\x09\x87\x94.";
/// python 3.11.7, numpy 2.4.6: pickle.dumps(np.float32(1.5), protocol=4)
const NP2_P4_SCALAR: &[u8] = b"\x80\x04\x95f\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x06scalar\x94\x93\x94\x8c\x05numpy\x94\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94bC\x04\x00\x00\xc0?\x94\x86\x94R\x94.";
/// python 3.11.7, numpy 2.4.6: pickle.dumps({'a': np.zeros(1)}, protocol=4)
const NP2_P4_DICT: &[u8] = b"\x80\x04\x95\x98\x00\x00\x00\x00\x00\x00\x00}\x94\x8c\x01a\x94\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x01\x85\x94h\x05\x8c\x05dtype\x94\x93\x94\x8c\x02f8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x08\x00\x00\x00\x00\x00\x00\x00\x00\x94t\x94bs.";
/// python 3.11.7: pickle.dumps('hello', protocol=4)
const NP2_P4_STR: &[u8] = b"\x80\x04\x95\x09\x00\x00\x00\x00\x00\x00\x00\x8c\x05hello\x94.";
/// python 3.11.7, numpy 2.4.6: pickle.dumps(np.zeros(1, dtype=np.complex64), protocol=4)
const NP2_P4_C8: &[u8] = b"\x80\x04\x95\x91\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x01\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02c8\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x08\x00\x00\x00\x00\x00\x00\x00\x00\x94t\x94b.";
/// python 3.11.7, numpy 2.4.6: pickle.dumps(np.zeros(1, dtype=np.float16), protocol=4)
const NP2_P4_F16: &[u8] = b"\x80\x04\x95\x8b\x00\x00\x00\x00\x00\x00\x00\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x01\x85\x94h\x03\x8c\x05dtype\x94\x93\x94\x8c\x02f2\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x02\x00\x00\x94t\x94b.";
/// python 3.11.7, numpy 2.4.6: pickle.dumps([np.array([1.0], dtype=np.float32), np.array([2.0])], protocol=4)
const NP2_P4_LIST_2: &[u8] = b"\x80\x04\x95\xd9\x00\x00\x00\x00\x00\x00\x00]\x94(\x8c\x16numpy._core.multiarray\x94\x8c\x0c_reconstruct\x94\x93\x94\x8c\x05numpy\x94\x8c\x07ndarray\x94\x93\x94K\x00\x85\x94C\x01b\x94\x87\x94R\x94(K\x01K\x01\x85\x94h\x04\x8c\x05dtype\x94\x93\x94\x8c\x02f4\x94\x89\x88\x87\x94R\x94(K\x03\x8c\x01<\x94NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x04\x00\x00\x80?\x94t\x94bh\x03h\x06K\x00\x85\x94h\x08\x87\x94R\x94(K\x01K\x01\x85\x94h\x0d\x8c\x02f8\x94\x89\x88\x87\x94R\x94(K\x03h\x11NNNJ\xff\xff\xff\xffJ\xff\xff\xff\xffK\x00t\x94b\x89C\x08\x00\x00\x00\x00\x00\x00\x00@\x94t\x94be.";

fn origin() -> &'static Path {
    Path::new("test.pkl")
}

fn one(bytes: &[u8]) -> PyValue {
    let (value, end) = parse_first(bytes, origin()).unwrap();
    assert_eq!(end, bytes.len(), "the whole pickle is consumed");
    value
}

fn array(bytes: &[u8]) -> NdArray {
    match one(bytes) {
        PyValue::Array(a) => a,
        other => panic!("expected an array, got {}", other.describe()),
    }
}

#[test]
fn protocol_0_big_endian_raw_unicode_escape() {
    let a = array(NP1_P0_F32_BE);
    assert_eq!(a.shape, vec![3]);
    assert_eq!(a.data, ArrayData::F32(vec![0.0, 1.0, 2.0]));
}

#[test]
fn protocol_1_bool() {
    let a = array(NP1_P1_BOOL);
    assert_eq!(a.shape, vec![3]);
    assert_eq!(a.data, ArrayData::Bool(vec![true, false, true]));
}

#[test]
fn protocol_2_codecs_encoded_bytes() {
    let a = array(NP1_P2_F32);
    assert_eq!(a.shape, vec![2, 3]);
    assert_eq!(a.data, ArrayData::F32(vec![0.0, 0.25, 0.5, 0.75, 1.0, 1.25]));
    let empty = array(NP1_P2_EMPTY);
    assert_eq!(empty.shape, vec![0, 9]);
    assert_eq!(empty.data, ArrayData::F32(vec![]));
}

#[test]
fn protocol_3_int64() {
    let a = array(NP2_P3_I64);
    assert_eq!(a.data, ArrayData::I64(vec![-3, 7, 1 << 40]));
}

#[test]
fn fortran_order_is_converted_in_protocols_4_and_5() {
    for bytes in [NP2_P4_F64_FORTRAN, NP2_P5_F64_FORTRAN] {
        let a = array(bytes);
        assert_eq!(a.shape, vec![2, 3]);
        assert_eq!(a.data, ArrayData::F64(vec![0.0, 1.0, 2.0, 3.0, 4.0, 5.0]));
    }
}

#[test]
fn tuple_with_a_shared_array_and_list() {
    let PyValue::Tuple(items) = one(NP2_P4_TUPLE_U8_I32_SHARED) else { panic!("not a tuple") };
    let arrays: Vec<ArrayData> = items.into_iter().map(|v| v.into_array().unwrap().data).collect();
    assert_eq!(
        arrays,
        vec![ArrayData::U8(vec![1, 255, 0]), ArrayData::I32(vec![5, -6]), ArrayData::U8(vec![1, 255, 0])]
    );
    let PyValue::List(items) = one(NP2_P4_LIST_2) else { panic!("not a list") };
    assert_eq!(items[0].clone().into_array().unwrap().data, ArrayData::F32(vec![1.0]));
    assert_eq!(items[1].clone().into_array().unwrap().data, ArrayData::F64(vec![2.0]));
}

#[test]
fn numpy_scalar_is_a_0d_array() {
    let a = array(NP2_P4_SCALAR);
    assert!(a.shape.is_empty());
    assert_eq!(a.data, ArrayData::F32(vec![1.5]));
}

#[test]
fn non_arrays_and_unsupported_dtypes() {
    assert_eq!(one(NP2_P4_STR), PyValue::Str("hello".into()));
    let err = parse_first(NP2_P4_DICT, origin()).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("dict"), "{err}");
    for bytes in [NP2_P4_C8, NP2_P4_F16] {
        let err = parse_first(bytes, origin()).unwrap_err();
        assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    }
    assert!(parse_first(NP2_P4_C8, origin()).unwrap_err().to_string().contains("c8"));
}

#[test]
fn back_to_back_pickles() {
    let mut bytes = NP2_P3_I64.to_vec();
    bytes.extend_from_slice(NP1_P2_F32);
    let values = parse_all(&bytes, origin()).unwrap();
    assert_eq!(values.len(), 2);
    assert_eq!(values[0].clone().into_array().unwrap().data, ArrayData::I64(vec![-3, 7, 1 << 40]));
    assert_eq!(values[1].clone().into_array().unwrap().shape, vec![2, 3]);
    // The first pickle alone ends where the second begins.
    assert_eq!(parse_first(&bytes, origin()).unwrap().1, NP2_P3_I64.len());
}

// ---- Hostile and broken input ----

#[test]
fn os_system_is_refused_with_its_name_and_offset() {
    // pickletools: GLOBAL 'os system', MARK, STRING 'echo pwned', TUPLE, REDUCE, STOP (protocol 0).
    let err = parse_first(b"cos\nsystem\n(S'echo pwned'\ntR.", origin()).unwrap_err();
    match err {
        Error::UnsafePickle { global, offset, .. } => {
            assert_eq!(global, "os.system");
            assert_eq!(offset, 0);
        }
        other => panic!("expected UnsafePickle, got {other}"),
    }
    // Protocol 4: STACK_GLOBAL of builtins.eval at byte 27.
    let p4 = b"\x80\x04\x95\x00\x00\x00\x00\x00\x00\x00\x00\x8c\x08builtins\x8c\x04eval\x93\x8c\x01x\x85R.";
    match parse_first(p4, origin()).unwrap_err() {
        Error::UnsafePickle { global, offset, .. } => {
            assert_eq!(global, "builtins.eval");
            assert_eq!(offset, 27);
        }
        other => panic!("expected UnsafePickle, got {other}"),
    }
    // INST names a class directly.
    let inst = parse_first(b"(ios\nsystem\n.", origin()).unwrap_err();
    assert!(matches!(inst, Error::UnsafePickle { ref global, .. } if global == "os.system"), "{inst}");
}

#[test]
fn truncated_pickles_are_reported_not_panicked() {
    for cut in [1, 20, NP2_P3_I64.len() / 2, NP2_P3_I64.len() - 1] {
        let err = parse_first(&NP2_P3_I64[..cut], origin()).unwrap_err();
        assert!(matches!(err, Error::Truncated { .. } | Error::Invalid { .. }), "cut {cut}: {err}");
    }
    // Just before STOP the stack holds the array, but the pickle never ends.
    let err = parse_first(&NP2_P3_I64[..NP2_P3_I64.len() - 1], origin()).unwrap_err();
    assert!(matches!(err, Error::Truncated { .. }), "{err}");
    // A BINBYTES8 claiming 2^60 bytes fails without allocating them.
    let err = parse_first(b"\x80\x04\x8e\x00\x00\x00\x00\x00\x00\x00\x10.", origin()).unwrap_err();
    assert!(matches!(err, Error::Truncated { expected, .. } if expected > 1 << 60), "{err}");
    assert!(matches!(parse_first(b"", origin()).unwrap_err(), Error::Invalid { .. }));
}

#[test]
fn shape_that_disagrees_with_the_data_is_an_error() {
    // NP2_P3_I64 builds with state (1, (3,), dtype, False, 24 bytes): claim 4 elements instead.
    let needle = b"K\x01K\x03\x85";
    let at = NP2_P3_I64.windows(needle.len()).position(|w| w == needle).unwrap();
    let mut forged = NP2_P3_I64.to_vec();
    forged[at + 3] = 4;
    let err = parse_first(&forged, origin()).unwrap_err();
    assert!(matches!(err, Error::Invalid { .. }), "{err}");
    assert!(err.to_string().contains("needs 32 bytes but the pickle holds 24"), "{err}");
}

#[test]
fn cycles_deep_nesting_and_exponential_sharing_end_in_errors() {
    // A list that contains itself: EMPTY_LIST, BINPUT 0, BINGET 0, APPEND, STOP.
    let err = parse_first(b"\x80\x02]q\x00h\x00a.", origin()).unwrap_err();
    assert!(matches!(err, Error::Unsupported { .. }), "{err}");
    // 100 nested 1-tuples.
    let mut deep = b"\x80\x02N".to_vec();
    deep.extend(std::iter::repeat_n(0x85u8, 100));
    deep.push(b'.');
    assert!(matches!(parse_first(&deep, origin()).unwrap_err(), Error::Unsupported { .. }));
    // t = (); 50 times: t = (t, t) through the memo, i.e. 2^50 leaves once expanded.
    let mut wide = b"\x80\x02)".to_vec();
    for _ in 0..50 {
        wide.extend_from_slice(b"q\x00h\x00\x86");
    }
    wide.push(b'.');
    assert!(matches!(parse_first(&wide, origin()).unwrap_err(), Error::Unsupported { .. }));
}

#[test]
fn stack_underflow_and_marks_are_checked() {
    for bad in
        [&b"\x80\x02."[..], b"\x80\x02a.", b"\x80\x02(R.", b"\x80\x02t.", b"\x80\x02h\x05.", b"\x80\x02\xff."]
    {
        let err = parse_first(bad, origin()).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }), "{bad:?}: {err}");
    }
}

#[test]
fn every_truncation_and_single_byte_corruption_is_handled() {
    // Each corrupted variant must parse or fail with an error; a panic or a hang fails the test.
    for sample in [NP1_P0_F32_BE, NP1_P2_F32, NP2_P4_TUPLE_U8_I32_SHARED, NP2_P5_F64_FORTRAN] {
        for cut in 0..sample.len() {
            assert!(parse_first(&sample[..cut], origin()).is_err(), "a cut pickle cannot be complete");
        }
        let mut bytes = sample.to_vec();
        for i in 0..bytes.len() {
            let original = bytes[i];
            for v in [0x00, 0x01, 0x7f, 0x80, 0xff, b'(', b'.', b'h', b'R', b'b', 0x93, 0x94] {
                bytes[i] = v;
                let _ = parse_all(&bytes, origin());
            }
            bytes[i] = original;
        }
    }
}
