//! Golden tests: every MRC/MRCS/MAP file in the shared data (compressed ones included) is read and compared
//! with what Python's mrcfile 1.5.4 reported for it, as recorded in `MANIFEST.tsv` (values printed with 4
//! significant digits, hence the relative tolerance of 1e-3).

use std::path::Path;

use crate::error::Error;
use crate::fixtures::fixture;

use super::{read_header, read_volume, MrcStack};

/// What MANIFEST.tsv records for one MRC file.
#[derive(Debug)]
struct Expected {
    path: String,
    shape_zyx: [usize; 3],
    dtype: String,
    mode: i32,
    voxel_a: [f32; 3],
    ispg: i32,
    nsymbt: i32,
    mapcrs: [i32; 3],
    nstart: [i32; 3],
    map_id: bool,
    machine_stamp_hex: String,
    min_max_mean: [f64; 3],
}

/// The text after `key=`: up to the matching `)` when it starts with `(`, else up to the next space.
fn value<'a>(info: &'a str, key: &str) -> &'a str {
    let pattern = format!("{key}=");
    let start = info.find(&pattern).unwrap_or_else(|| panic!("no `{key}` in `{info}`")) + pattern.len();
    let rest = &info[start..];
    let end = if rest.starts_with('(') { rest.find(')').map(|e| e + 1) } else { rest.find(' ') };
    &rest[..end.unwrap_or(rest.len())]
}

fn tuple<T: std::str::FromStr, const N: usize>(s: &str) -> [T; N]
where
    T::Err: std::fmt::Debug,
{
    let items: Vec<T> = s.trim_matches(['(', ')']).split(',').map(|x| x.trim().parse().unwrap()).collect();
    items.try_into().unwrap_or_else(|_| panic!("expected {N} values in `{s}`"))
}

fn parse_manifest(text: &str) -> Vec<Expected> {
    text.lines()
        .filter_map(|line| {
            let mut cols = line.split('\t');
            let path = cols.next()?;
            let info = cols.nth(2)?;
            info.starts_with("shape(z,y,x)=").then(|| Expected {
                path: path.to_string(),
                shape_zyx: tuple(value(info, "shape(z,y,x)")),
                dtype: value(info, "dtype").to_string(),
                mode: value(info, "mode").parse().unwrap(),
                voxel_a: tuple(value(info, "voxel_A")),
                ispg: value(info, "ispg").parse().unwrap(),
                nsymbt: value(info, "nsymbt").parse().unwrap(),
                mapcrs: tuple(value(info, "mapcrs")),
                nstart: tuple(value(info, "nstart")),
                map_id: value(info, "MAP_id") == "yes",
                machine_stamp_hex: value(info, "machst").to_string(),
                min_max_mean: tuple(value(info, "min/max/mean")),
            })
        })
        .collect()
}

/// The odd cases the reader must handle; the manifest has to list each of them.
const REQUIRED: [&str; 9] = [
    "cryodrgn/50S-vol.mrc",     // non-cubic 32×32×128
    "cryodrgn/spike-vol.mrc",   // non-cubic 16×16×128
    "cryodrgn/hand.5.mrcs",     // no `MAP `, zero machine stamp
    "cryodrgn/relion31.mrcs",   // no `MAP `, zero machine stamp, 256²
    "mrcfile/EMD-3197.map",     // nxstart = −2
    "mrcfile/emd_3197.map.gz",  // gzip
    "mrcfile/EMD-3197.map.bz2", // bzip2
    "aspire/sample.mrcs",       // voxel 0
    "cryojax/000000.mrcs",      // inconsistent cell: voxel (1, 12, 12)
];

fn close(got: f64, want: f64, scale: f64) -> bool {
    (got - want).abs() <= 1e-3 * want.abs() + 1e-6 * scale
}

/// Compare one file with its manifest entry; returns the mismatches.
fn check(e: &Expected, path: &Path) -> Vec<String> {
    let mut bad = Vec::new();
    let mut expect = |ok: bool, what: String| {
        if !ok {
            bad.push(format!("{}: {what}", e.path));
        }
    };
    let stack = match MrcStack::open(path) {
        Ok(s) => s,
        Err(err) => return vec![format!("{}: cannot open: {err}", e.path)],
    };
    let h = stack.header();
    let (ny, nx) = stack.image_shape();
    let shape = [stack.len(), ny, nx];
    expect(shape == e.shape_zyx, format!("shape {shape:?} vs {:?}", e.shape_zyx));
    expect(
        stack.mode().dtype_name() == e.dtype,
        format!("dtype {} vs {}", stack.mode().dtype_name(), e.dtype),
    );
    expect(h.mode == e.mode, format!("mode {} vs {}", h.mode, e.mode));
    let voxel = h.voxel_size();
    let voxel_ok = voxel.iter().zip(e.voxel_a).all(|(&g, w)| (g - w).abs() <= 1e-4 * w.abs());
    expect(voxel_ok, format!("voxel {voxel:?} vs {:?}", e.voxel_a));
    expect(h.ispg == e.ispg, format!("ispg {} vs {}", h.ispg, e.ispg));
    expect(h.nsymbt == e.nsymbt, format!("nsymbt {} vs {}", h.nsymbt, e.nsymbt));
    let mapcrs = [h.mapc, h.mapr, h.maps];
    expect(mapcrs == e.mapcrs, format!("mapc/r/s {mapcrs:?} vs {:?}", e.mapcrs));
    let nstart = [h.nxstart, h.nystart, h.nzstart];
    expect(nstart == e.nstart, format!("nstart {nstart:?} vs {:?}", e.nstart));
    expect(h.has_map_id == e.map_id, format!("MAP id {} vs {}", h.has_map_id, e.map_id));
    let stamp: String = h.machine_stamp.iter().map(|b| format!("{b:02x}")).collect();
    expect(stamp == e.machine_stamp_hex, format!("machine stamp {stamp} vs {}", e.machine_stamp_hex));

    // Stream the data in chunks of up to 64 images, as training does.
    let (mut min, mut max, mut sum) = (f64::INFINITY, f64::NEG_INFINITY, 0.0f64);
    let mut buf = Vec::new();
    let mut all = Vec::with_capacity(stack.len() * stack.image_len());
    for start in (0..stack.len()).step_by(64) {
        let count = 64.min(stack.len() - start);
        buf.resize(count * stack.image_len(), 0.0);
        stack.read_images_into(start, count, &mut buf).unwrap();
        for &v in &buf {
            min = min.min(f64::from(v));
            max = max.max(f64::from(v));
            sum += f64::from(v);
        }
        all.extend_from_slice(&buf);
    }
    let mean = sum / all.len() as f64;
    let [wmin, wmax, wmean] = e.min_max_mean;
    let scale = wmin.abs().max(wmax.abs());
    for (name, got, want) in [("min", min, wmin), ("max", max, wmax), ("mean", mean, wmean)] {
        expect(close(got, want, scale), format!("{name} {got} vs {want}"));
    }

    // The volume reader sees the same data (every file here has mapc/r/s = 1, 2, 3).
    match read_volume(path) {
        Ok(v) => {
            expect(v.shape == e.shape_zyx, format!("volume shape {:?}", v.shape));
            expect(v.data == all, "volume data differ from the stack read".to_string());
            expect(v.voxel_size == voxel, format!("volume voxel {:?}", v.voxel_size));
        }
        Err(err) => expect(false, format!("read_volume: {err}")),
    }
    bad
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn every_mrc_in_shared_data_matches_mrcfile() {
    let manifest = crate::fixture_or_skip!("MANIFEST.tsv");
    let entries = parse_manifest(&std::fs::read_to_string(manifest).unwrap());
    for name in REQUIRED {
        assert!(entries.iter().any(|e| e.path == name), "MANIFEST.tsv does not list {name}");
    }
    assert!(entries.len() >= 22, "only {} MRC files in the manifest", entries.len());
    let mut failures = Vec::new();
    let mut checked = 0;
    for e in &entries {
        // Absent files are skipped with a notice (a failure when DRGNFLY_REQUIRE_FIXTURES is set).
        let Some(path) = fixture(&e.path) else { continue };
        failures.extend(check(e, &path));
        checked += 1;
    }
    assert!(failures.is_empty(), "{} of {checked} files differ:\n{}", failures.len(), failures.join("\n"));
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn odd_headers_are_read_as_mrcfile_reads_them() {
    let hand5 = crate::fixture_or_skip!("cryodrgn/hand.5.mrcs");
    let h = read_header(&hand5).unwrap();
    assert!(!h.has_map_id);
    assert_eq!(h.machine_stamp, [0; 4]);
    assert_eq!(h.stamp_byte_order(), None);
    assert_eq!(h.byte_order, super::ByteOrder::Little);
    assert_eq!((h.dmin, h.dmax, h.dmean), (-1.0, -2.0, -3.0), "cryoDRGN's placeholder statistics");

    let emd = crate::fixture_or_skip!("mrcfile/EMD-3197.map");
    let h = read_header(&emd).unwrap();
    assert_eq!((h.nxstart, h.nystart, h.nzstart), (-2, 0, 0));
    assert!(h.labels.first().is_some_and(|l| l.contains("EMD-3197")), "labels {:?}", h.labels);
    let gz = crate::fixture_or_skip!("mrcfile/emd_3197.map.gz");
    assert_eq!(read_header(&gz).unwrap(), h, "gzip header equals the plain one");

    let aspire = crate::fixture_or_skip!("aspire/sample.mrcs");
    let h = read_header(&aspire).unwrap();
    assert_eq!((h.known_voxel_size(), h.known_apix()), (None, None));

    let cryojax = crate::fixture_or_skip!("cryojax/000000.mrcs");
    let h = read_header(&cryojax).unwrap();
    assert_eq!(h.voxel_size(), [1.0, 12.0, 12.0]);
    assert_eq!(h.apix(), 1.0);

    // cell 1 Å over mx = 1: 1 Å/px by the standard (cryoDRGN divides by nx = 30 and says 0.033333).
    let toy = crate::fixture_or_skip!("cryodrgn/toy_projections.mrcs");
    assert_eq!(read_header(&toy).unwrap().apix(), 1.0);
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn compression_is_recognised_by_content_not_name() {
    let gz = crate::fixture_or_skip!("mrcfile/emd_3197.map.gz");
    let bz2 = crate::fixture_or_skip!("mrcfile/EMD-3197.map.bz2");
    let plain = crate::fixture_or_skip!("mrcfile/EMD-3197.map");
    let dir = tempfile::tempdir().unwrap();
    let reference = read_volume(&plain).unwrap();
    for (src, name) in [(gz, "looks-plain.mrc"), (bz2, "also-plain.map")] {
        let renamed = dir.path().join(name);
        std::fs::copy(src, &renamed).unwrap();
        let v = read_volume(&renamed).unwrap();
        assert_eq!(v.data, reference.data);
        assert_eq!(v.shape, [20, 20, 20]);
    }
}

#[test]
#[cfg_attr(shared_data_absent, ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)")]
fn out_of_range_index_names_index_count_and_file() {
    let p = crate::fixture_or_skip!("cryodrgn/hand.5.mrcs");
    let s = MrcStack::open(&p).unwrap();
    assert_eq!(s.len(), 5);
    let e = s.read_image(5).unwrap_err();
    assert!(matches!(e, Error::Invalid { ref record, ref path, .. }
        if record.as_deref() == Some("image 5") && path == &p));
    assert!(e.to_string().contains("5 images"), "{e}");
}
