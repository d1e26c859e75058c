use super::*;
use crate::fixture_or_skip;

// Golden values below were printed by numpy 2.4.6 (`np.load(path)[index]`) from the shared data files.

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn golden_plain_arrays() {
    let a = NpyArray::open(fixture_or_skip!("cryodrgn/hand_11_particles.npy")).unwrap();
    assert_eq!(a.shape(), [11, 65, 65]);
    assert_eq!(a.dtype(), &DType::Plain(Scalar::le(ScalarKind::F32)));
    let v = a.to_f32_vec().unwrap();
    assert_eq!(v[0], -0.00036496372);
    assert_eq!(v[(3 * 65 + 32) * 65 + 40], 0.14022677);
    assert_eq!(v[v.len() - 1], -0.00026694822);
    let sum: f64 = v.iter().map(|&x| x as f64).sum();
    assert!((sum - -1946.7277876508342).abs() < 1e-6);

    let b = NpyArray::open(fixture_or_skip!("cryodrgn/im_shifted.npy")).unwrap();
    let v = b.to_f64_vec().unwrap();
    assert_eq!(
        (b.shape(), v[0], v[31 * 64 + 17]),
        (&[64, 64][..], 0.003753915239908423, 0.034584345424030924)
    );

    let c = NpyArray::open(fixture_or_skip!("cryojax/lobato2014_params.npy")).unwrap();
    let v = c.to_f64_vec().unwrap();
    assert_eq!((v[(104 + 103) * 5 + 4], v[5 * 5 + 2]), (4.03816515529e-05, 0.305998956982689));

    let d = NpyArray::open(fixture_or_skip!("mdanalysis_adk/adk_dims_heavy_xyz.npy")).unwrap();
    let v = d.to_f32_vec().unwrap();
    assert_eq!((v[0], v[v.len() - 1]), (11.736044, -6.560634));
    assert!(d.to_i64_vec().unwrap_err().to_string().contains("integer array"));
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn golden_structured_arrays() {
    let a = NpyArray::open(fixture_or_skip!("cryodrgn/cryosparc_P12_J24_001_particles.cs")).unwrap();
    assert_eq!((a.len(), a.fields().count(), a.fortran_order()), (2019, 34, false));
    assert_eq!(a.field("uid").unwrap().column_u64().unwrap()[5], 8593361658856759541);
    assert_eq!(a.field("blob/idx").unwrap().column_u32().unwrap()[2018], 124);
    assert_eq!(a.field("ctf/df1_A").unwrap().f64_at(7, 0), Some(45591.37109375));
    let shape = a.field("blob/shape").unwrap();
    assert_eq!(
        (shape.field().type_str(), shape.column_u32().unwrap()[..2].to_vec()),
        ("<u4 (2,)".into(), vec![180, 180])
    );
    assert_eq!(
        a.field("blob/path").unwrap().str_at(2018).unwrap(),
        "J19/extract/20150917_05265_DNA-TET-25k-DE20_raw.region_000.sum-all_003-072_particles.mrc"
    );
    assert_eq!(a.field("ctf/type").unwrap().format_at(0), "\"ctffind4\"");
    let pose = a.field("alignments3D/pose").unwrap().column_f64().unwrap();
    assert_eq!(pose[9..12], [-0.8239668f32 as f64, -1.609365f32 as f64, 1.8968768f32 as f64]);
    assert_eq!(a.field("alignments3D/pose").unwrap().format_at(3), "[-0.8239668, -1.609365, 1.8968768]");
    let e = a.field("nope").unwrap_err().to_string();
    assert!(e.contains("field nope") && e.contains("blob/path"), "{e}");
    assert!(a.to_f64_vec().is_err(), "a structured array is not a plain one");

    // 0 rows behind a 4096-byte header.
    let b = NpyArray::open(fixture_or_skip!("cryosparc_tools/4k_dataset.cs")).unwrap();
    assert_eq!((b.len(), b.fields().count(), b.dtype().itemsize()), (0, 106, 485));
    assert_eq!(b.field("pick_stats/angle_rad").unwrap().column_f64().unwrap(), Vec::<f64>::new());
}

fn tmp() -> tempfile::TempDir {
    tempfile::tempdir().unwrap()
}

#[test]
fn plain_round_trips_and_byte_orders() {
    let dir = tmp();
    let p = dir.path().join("a.npy");
    let vals: Vec<f32> = (0..24).map(|i| i as f32 * 0.5 - 3.0).collect();
    write_npy_f32(&p, &[2, 3, 4], &vals).unwrap();
    let a = NpyArray::open(&p).unwrap();
    assert_eq!((a.shape(), a.to_f32_vec().unwrap()), (&[2, 3, 4][..], vals.clone()));
    assert_eq!((std::fs::read(&p).unwrap().len() - 96) % 64, 0, "header padded to 64 bytes; data 96 bytes");

    // Every plain type, both byte orders, one value.
    let cases: [(&str, Vec<u8>, f64); 12] = [
        ("<f8", 1.25f64.to_le_bytes().to_vec(), 1.25),
        (">f8", 1.25f64.to_be_bytes().to_vec(), 1.25),
        (">f4", (-2.5f32).to_be_bytes().to_vec(), -2.5),
        ("<f2", half::f16::from_f32(0.75).to_le_bytes().to_vec(), 0.75),
        ("<i4", (-7i32).to_le_bytes().to_vec(), -7.0),
        (">i8", (-9i64).to_be_bytes().to_vec(), -9.0),
        ("<u4", 7u32.to_le_bytes().to_vec(), 7.0),
        (">u8", 8u64.to_be_bytes().to_vec(), 8.0),
        ("|u1", vec![200], 200.0),
        ("|i1", vec![0xff], -1.0),
        ("|b1", vec![1], 1.0),
        (">i2", (-300i16).to_be_bytes().to_vec(), -300.0),
    ];
    for (descr, bytes, want) in cases {
        let s = header::parse_scalar(descr).unwrap();
        assert_eq!(s.descr(), descr);
        write_npy_plain(&p, s, &[1], &bytes).unwrap();
        let a = NpyArray::open(&p).unwrap();
        assert_eq!(a.to_f64_vec().unwrap(), [want], "{descr}");
        if s.is_integer() {
            assert_eq!(a.to_i64_vec().unwrap(), [want as i64], "{descr}");
        }
    }
    assert!(write_npy_plain(&p, Scalar::le(ScalarKind::F32), &[2], &[0; 4]).is_err());
}

/// A hand-made `.npy` with the given version and header dict.
fn raw_npy(version: u8, dict: &str, data: &[u8]) -> Vec<u8> {
    let mut out = b"\x93NUMPY".to_vec();
    out.extend_from_slice(&[version, 0]);
    let h = format!("{dict}\n");
    if version == 1 {
        out.extend_from_slice(&(h.len() as u16).to_le_bytes());
    } else {
        out.extend_from_slice(&(h.len() as u32).to_le_bytes());
    }
    out.extend_from_slice(h.as_bytes());
    out.extend_from_slice(data);
    out
}

#[test]
fn header_versions_and_fortran_order() {
    let data: Vec<u8> = [1i64, 2, 3, 4, 5, 6].iter().flat_map(|v| v.to_le_bytes()).collect();
    for v in [1, 2, 3] {
        // Fortran order: file order is columns first; C order of a 2×3 array [[1,3,5],[2,4,6]].
        let bytes = raw_npy(v, "{'descr': '<i8', 'fortran_order': True, 'shape': (2, 3), }", &data);
        let a = NpyArray::from_bytes("f.npy", bytes).unwrap();
        assert_eq!(a.to_i64_vec().unwrap(), [1, 3, 5, 2, 4, 6], "version {v}");
    }
    // A 0-d array holds one element.
    let a = NpyArray::from_bytes(
        "s.npy",
        raw_npy(1, "{'descr':'<f8','fortran_order':False,'shape':()}", &2.0f64.to_le_bytes()),
    )
    .unwrap();
    assert_eq!(a.to_f64_vec().unwrap(), [2.0]);
}

#[test]
fn structured_builder_and_row_copy_round_trip() {
    let dir = tmp();
    let p = dir.path().join("s.cs");
    let mut b = StructuredBuilder::new(3);
    b.add("uid", &[], Column::U64(vec![10, 11, u64::MAX])).unwrap();
    b.add("blob/path", &[], Column::Bytes(8, vec![">a.mrcs".into(), "b".into(), "".into()])).unwrap();
    b.add("blob/shape", &[2], Column::U32(vec![64, 64, 32, 32, 16, 16])).unwrap();
    b.add("x", &[2, 2], Column::F64((0..12).map(f64::from).collect())).unwrap();
    b.add("i", &[], Column::I32(vec![-1, 0, 1])).unwrap();
    assert!(b.add("uid", &[], Column::U64(vec![0; 3])).is_err());
    assert!(b.add("short", &[], Column::F32(vec![0.0; 2])).is_err());
    assert!(b.add("wide", &[], Column::Bytes(2, vec!["abc".into(), "".into(), "".into()])).is_err());
    b.write(&p).unwrap();

    let a = NpyArray::open(&p).unwrap();
    assert_eq!(a.dtype().itemsize(), 8 + 8 + 8 + 32 + 4);
    assert_eq!(a.field("uid").unwrap().column_u64().unwrap(), [10, 11, u64::MAX]);
    assert!(a.field("uid").unwrap().column_u32().is_err(), "u64::MAX does not fit in u32");
    assert_eq!(a.field("blob/path").unwrap().column_bytes_str().unwrap(), [">a.mrcs", "b", ""]);
    assert_eq!(a.field("blob/shape").unwrap().column_u32().unwrap(), [64, 64, 32, 32, 16, 16]);
    assert_eq!(a.field("x").unwrap().f64_at(2, 3), Some(11.0));
    assert!(a.field("i").unwrap().column_u32().is_err(), "negative values are not u32");

    let q = dir.path().join("sub.cs");
    a.write_rows(&q, &[2, 0]).unwrap();
    let s = NpyArray::open(&q).unwrap();
    assert_eq!(s.dtype(), a.dtype());
    assert_eq!((s.item(0), s.item(1)), (a.item(2), a.item(0)));
    assert!(a.write_rows(&q, &[3]).unwrap_err().to_string().contains("index 3 is out of range"));
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn real_cs_subset_keeps_header_and_bytes() {
    let a = NpyArray::open(fixture_or_skip!("cryodrgn/cryosparc_P12_J24_001_particles.cs")).unwrap();
    let dir = tmp();
    let q = dir.path().join("sub.cs");
    a.write_rows(&q, &[5, 2018]).unwrap();
    let s = NpyArray::open(&q).unwrap();
    assert_eq!(s.len(), 2);
    assert_eq!(s.item(1), a.item(2018));
    // numpy's own header for this dtype is reproduced (same descr text).
    let orig = std::fs::read(a.path()).unwrap();
    let sub = std::fs::read(&q).unwrap();
    let descr =
        |b: &[u8]| String::from_utf8_lossy(&b[10..1000]).split("'fortran").next().unwrap_or("").to_string();
    assert_eq!(descr(&orig), descr(&sub));
}

#[test]
fn bad_files_are_refused_clearly() {
    let d = "{'descr': '<f4', 'fortran_order': False, 'shape': (4,), }";
    // Truncated data: 12 of 16 bytes.
    let e = NpyArray::from_bytes("t.npy", raw_npy(1, d, &[0; 12])).unwrap_err();
    let header_len = raw_npy(1, d, &[]).len() as u64;
    assert!(
        matches!(e, Error::Truncated { expected, got, .. } if expected == header_len + 16 && got == header_len + 12),
        "{e}"
    );
    assert!(e.to_string().contains("truncated"), "{e}");
    // A header that claims fewer elements than the file holds.
    let e = NpyArray::from_bytes("t.npy", raw_npy(1, d, &[0; 20])).unwrap_err().to_string();
    assert!(e.contains("4 bytes follow the data"), "{e}");
    // A shape whose size overflows is refused before any allocation.
    let huge = "{'descr': '<f8', 'fortran_order': False, 'shape': (4294967296, 4294967296, 4294967296), }";
    assert!(NpyArray::from_bytes("t.npy", raw_npy(1, huge, &[]))
        .unwrap_err()
        .to_string()
        .contains("too large"));
    // A header length beyond the file.
    let mut bytes = raw_npy(1, d, &[0; 16]);
    bytes[8] = 0xff;
    bytes[9] = 0xff;
    assert!(matches!(NpyArray::from_bytes("t.npy", bytes).unwrap_err(), Error::Truncated { .. }));
    // Not numpy, empty, unknown version, objects, deep nesting, garbage.
    assert!(NpyArray::from_bytes("t.npy", b"PK\x03\x04 not numpy".to_vec())
        .unwrap_err()
        .to_string()
        .contains("magic"));
    assert!(matches!(NpyArray::from_bytes("t.npy", Vec::new()).unwrap_err(), Error::Truncated { .. }));
    let mut v9 = raw_npy(1, d, &[0; 16]);
    v9[6] = 9;
    assert!(matches!(NpyArray::from_bytes("t.npy", v9).unwrap_err(), Error::Unsupported { .. }));
    let obj = "{'descr': '|O', 'fortran_order': False, 'shape': (1,), }";
    assert!(matches!(
        NpyArray::from_bytes("t.npy", raw_npy(1, obj, &[0; 8])).unwrap_err(),
        Error::Unsupported { .. }
    ));
    let deep = format!(
        "{{'descr': {}'<f4'{}, 'fortran_order': False, 'shape': (1,)}}",
        "[".repeat(100),
        "]".repeat(100)
    );
    assert!(NpyArray::from_bytes("t.npy", raw_npy(1, &deep, &[0; 4]))
        .unwrap_err()
        .to_string()
        .contains("deeply"));
    for bad in [
        "{'descr': '<f4', 'shape': (1,)}",
        "{'descr': '<q9', 'fortran_order': False, 'shape': (1,)}",
        "[1, 2",
    ] {
        assert!(
            matches!(
                NpyArray::from_bytes("t.npy", raw_npy(1, bad, &[0; 4])).unwrap_err(),
                Error::Invalid { .. }
            ),
            "{bad}"
        );
    }
}

#[test]
fn structured_descr_forms() {
    let d = "{'descr': [('a', '>u2'), (('title', 'b'), '|S3', (1,)), ('', '|V1'), ('c', '<f4', 2)], \
             'fortran_order': False, 'shape': (1,), }";
    let mut item = vec![0x01, 0x02, b'x', b'y', 0, 0];
    item.extend_from_slice(&1.5f32.to_le_bytes());
    item.extend_from_slice(&(-2.0f32).to_le_bytes());
    let a = NpyArray::from_bytes("s.npy", raw_npy(3, d, &item)).unwrap();
    let names: Vec<&str> = a.fields().map(|f| f.name.as_str()).collect();
    assert_eq!(names, ["a", "b", "c"], "padding fields are hidden");
    assert_eq!(a.field("a").unwrap().column_u32().unwrap(), [0x0102]);
    assert_eq!(a.field("b").unwrap().str_at(0).unwrap(), "xy");
    assert_eq!(a.field("c").unwrap().column_f64().unwrap(), [1.5, -2.0]);
    let dup = "{'descr': [('a', '<f4'), ('a', '<f4')], 'fortran_order': False, 'shape': (0,), }";
    assert!(NpyArray::from_bytes("s.npy", raw_npy(1, dup, &[])).unwrap_err().to_string().contains("twice"));
    let nested = "{'descr': [('a', [('x', '<f4')])], 'fortran_order': False, 'shape': (0,), }";
    assert!(matches!(
        NpyArray::from_bytes("s.npy", raw_npy(1, nested, &[])).unwrap_err(),
        Error::Unsupported { .. }
    ));
}

/// A type string whose code is not ASCII (found by cargo-fuzz: it panicked slicing inside a character) is
/// an error, in the type parser and when opening the whole file.
#[test]
fn non_ascii_type_codes_are_errors_not_panics() {
    for descr in ["<\u{359}4", "\u{359}4", "é", "<é8"] {
        assert!(header::parse_scalar(descr).is_err(), "{descr}");
    }
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("bad.npy");
    let head = "{'descr': '\u{359}4', 'fortran_order': True, 'shape': (2,), }";
    let mut bytes = b"\x93NUMPY\x01\x00".to_vec();
    let padded = format!("{head:<117}\n");
    bytes.extend_from_slice(&(padded.len() as u16).to_le_bytes());
    bytes.extend_from_slice(padded.as_bytes());
    bytes.extend_from_slice(&[0u8; 8]);
    std::fs::write(&p, bytes).unwrap();
    assert!(NpyArray::open(&p).is_err());
}
