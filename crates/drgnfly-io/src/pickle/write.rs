//! Writing numpy arrays as pickles that numpy 1.x and 2.x and cryoDRGN load.
//!
//! The layout is what numpy 1.x emits for `pickle.dump(arr, f, protocol=4)`, without the optional FRAME
//! and memo opcodes: `numpy.core.multiarray._reconstruct(numpy.ndarray, (0,), b'b')`, then `BUILD` with
//! `(1, shape, numpy.dtype('f4', False, True), False, raw)` where the dtype gets the state
//! `(3, '<', None, None, None, -1, -1, 0)`. numpy 2 keeps `numpy.core` importable for exactly this, so
//! both versions load it. Elements are written little-endian in C order, streamed to the file.

use std::io::{self, Write};
use std::path::Path;

use super::opcode as op;
use super::value::{fmt_shape, ArrayData, NdArray};
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// Write `array` as a single pickle (ctf.pkl, index .pkl, …), atomically.
pub fn write_array(path: impl AsRef<Path>, array: &NdArray) -> Result<()> {
    write_pickles(path.as_ref(), &[array], Layout::One)
}

/// Write the arrays as one pickled tuple (pose.pkl is `(rot, trans)`), atomically.
pub fn write_tuple(path: impl AsRef<Path>, arrays: &[&NdArray]) -> Result<()> {
    write_pickles(path.as_ref(), arrays, Layout::Tuple)
}

/// Write each array as its own pickle, back to back in one file (z.N.pkl is z_mu then z_logvar),
/// atomically. Python reads them with consecutive `pickle.load(f)` calls.
pub fn write_arrays_concatenated(path: impl AsRef<Path>, arrays: &[&NdArray]) -> Result<()> {
    write_pickles(path.as_ref(), arrays, Layout::Concatenated)
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum Layout {
    One,
    Tuple,
    Concatenated,
}

fn write_pickles(path: &Path, arrays: &[&NdArray], layout: Layout) -> Result<()> {
    for (i, a) in arrays.iter().enumerate() {
        let count = a.shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
        if count != Some(a.len()) {
            return Err(Error::invalid(
                path,
                Some(format!("array {i}")),
                format!("shape {} does not match its {} elements", fmt_shape(&a.shape), a.len()),
                "This is a bug in drgnfly; please report it",
            ));
        }
    }
    let mut file = AtomicFile::create(path)?;
    let written = encode(file.writer(), arrays, layout);
    written.map_err(|e| file.io_err(e))?;
    file.commit()
}

/// Encode the arrays in the given layout. A tuple of one array is `(a,)`; `Layout::One` takes the first.
fn encode(w: &mut impl Write, arrays: &[&NdArray], layout: Layout) -> io::Result<()> {
    match layout {
        Layout::One | Layout::Concatenated => {
            let take = if layout == Layout::One { 1 } else { arrays.len() };
            for a in arrays.iter().take(take) {
                w.write_all(&[op::PROTO, 4])?;
                put_array(w, a)?;
                w.write_all(&[op::STOP])?;
            }
        }
        Layout::Tuple => {
            w.write_all(&[op::PROTO, 4])?;
            let long = arrays.len() > 3;
            if long {
                w.write_all(&[op::MARK])?;
            }
            for a in arrays {
                put_array(w, a)?;
            }
            w.write_all(&[tuple_op(arrays.len(), long)])?;
            w.write_all(&[op::STOP])?;
        }
    }
    Ok(())
}

/// The opcode that closes a tuple of `n` items (MARK was written before them when `long`).
fn tuple_op(n: usize, long: bool) -> u8 {
    match n {
        _ if long => op::TUPLE,
        0 => op::EMPTY_TUPLE,
        1 => op::TUPLE1,
        2 => op::TUPLE2,
        _ => op::TUPLE3,
    }
}

fn put_array(w: &mut impl Write, a: &NdArray) -> io::Result<()> {
    // _reconstruct(ndarray, (0,), b'b')
    put_global(w, "numpy.core.multiarray", "_reconstruct")?;
    put_global(w, "numpy", "ndarray")?;
    put_int(w, 0)?;
    w.write_all(&[op::TUPLE1])?;
    put_bytes_header(w, 1)?;
    w.write_all(b"b")?;
    w.write_all(&[op::TUPLE3, op::REDUCE])?;

    // BUILD (1, shape, dtype, is_fortran=False, raw)
    w.write_all(&[op::MARK])?;
    put_int(w, 1)?;
    let long = a.shape.len() > 3;
    if long {
        w.write_all(&[op::MARK])?;
    }
    for &n in &a.shape {
        put_int(w, i64::try_from(n).map_err(|_| io::Error::other("array axis longer than 2^63"))?)?;
    }
    w.write_all(&[tuple_op(a.shape.len(), long)])?;
    put_dtype(w, a.dtype().descr(), if a.dtype().itemsize() == 1 { "|" } else { "<" })?;
    w.write_all(&[op::NEWFALSE])?;
    put_raw(w, &a.data)?;
    w.write_all(&[op::TUPLE, op::BUILD])
}

/// `numpy.dtype(descr, False, True)` with state `(3, order, None, None, None, -1, -1, 0)`.
fn put_dtype(w: &mut impl Write, descr: &str, order: &str) -> io::Result<()> {
    put_global(w, "numpy", "dtype")?;
    put_str(w, descr)?;
    w.write_all(&[op::NEWFALSE, op::NEWTRUE, op::TUPLE3, op::REDUCE, op::MARK])?;
    put_int(w, 3)?;
    put_str(w, order)?;
    w.write_all(&[op::NONE, op::NONE, op::NONE])?;
    put_int(w, -1)?;
    put_int(w, -1)?;
    put_int(w, 0)?;
    w.write_all(&[op::TUPLE, op::BUILD])
}

fn put_global(w: &mut impl Write, module: &str, name: &str) -> io::Result<()> {
    put_str(w, module)?;
    put_str(w, name)?;
    w.write_all(&[op::STACK_GLOBAL])
}

fn put_str(w: &mut impl Write, s: &str) -> io::Result<()> {
    match u8::try_from(s.len()) {
        Ok(n) => w.write_all(&[op::SHORT_BINUNICODE, n])?,
        Err(_) => {
            let n = u32::try_from(s.len()).map_err(|_| io::Error::other("string longer than 4 GiB"))?;
            w.write_all(&[op::BINUNICODE])?;
            w.write_all(&n.to_le_bytes())?;
        }
    }
    w.write_all(s.as_bytes())
}

/// The smallest integer opcode for `v`, as CPython chooses it.
pub(super) fn put_int(w: &mut impl Write, v: i64) -> io::Result<()> {
    if let Ok(b) = u8::try_from(v) {
        w.write_all(&[op::BININT1, b])
    } else if let Ok(h) = u16::try_from(v) {
        w.write_all(&[op::BININT2])?;
        w.write_all(&h.to_le_bytes())
    } else if let Ok(i) = i32::try_from(v) {
        w.write_all(&[op::BININT])?;
        w.write_all(&i.to_le_bytes())
    } else {
        // LONG1: little-endian two's complement, 8 bytes always suffice beyond the i32 range.
        w.write_all(&[op::LONG1, 8])?;
        w.write_all(&v.to_le_bytes())
    }
}

fn put_bytes_header(w: &mut impl Write, len: usize) -> io::Result<()> {
    if let Ok(n) = u8::try_from(len) {
        w.write_all(&[op::SHORT_BINBYTES, n])
    } else if let Ok(n) = u32::try_from(len) {
        w.write_all(&[op::BINBYTES])?;
        w.write_all(&n.to_le_bytes())
    } else {
        w.write_all(&[op::BINBYTES8])?;
        w.write_all(&(len as u64).to_le_bytes())
    }
}

/// The elements, little-endian, as one bytes object; converted in chunks so no second copy of the
/// array is held in memory.
fn put_raw(w: &mut impl Write, data: &ArrayData) -> io::Result<()> {
    put_bytes_header(w, data.len() * data.dtype().itemsize())?;
    match data {
        ArrayData::F32(v) => put_elements(w, v, |x| x.to_le_bytes()),
        ArrayData::F64(v) => put_elements(w, v, |x| x.to_le_bytes()),
        ArrayData::I64(v) => put_elements(w, v, |x| x.to_le_bytes()),
        ArrayData::I32(v) => put_elements(w, v, |x| x.to_le_bytes()),
        ArrayData::U8(v) => w.write_all(v),
        ArrayData::Bool(v) => put_elements(w, v, |&x| [u8::from(x)]),
    }
}

fn put_elements<T, const N: usize>(
    w: &mut impl Write,
    values: &[T],
    to_bytes: impl Fn(&T) -> [u8; N],
) -> io::Result<()> {
    const CHUNK: usize = 1 << 14;
    let mut buf = Vec::with_capacity(CHUNK * N);
    for chunk in values.chunks(CHUNK) {
        buf.clear();
        for x in chunk {
            buf.extend_from_slice(&to_bytes(x));
        }
        w.write_all(&buf)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::pickle::{load_all, load_array, parse_all, PyValue};

    fn encoded(arrays: &[&NdArray], layout: Layout) -> Vec<u8> {
        let mut out = Vec::new();
        encode(&mut out, arrays, layout).unwrap();
        out
    }

    fn samples() -> Vec<NdArray> {
        vec![
            NdArray::new(vec![2, 3], ArrayData::F32(vec![0.0, -1.5, 2.25, f32::MAX, f32::MIN_POSITIVE, 7.0])),
            NdArray::new(vec![], ArrayData::F64(vec![std::f64::consts::PI])),
            NdArray::new(vec![0, 9], ArrayData::F32(vec![])),
            // 70 000 elements: BINBYTES with a 4-byte length and a BININT shape.
            NdArray::new(vec![70_000], ArrayData::I64((0..70_000).map(|i| i * 1_000_003 - 5).collect())),
            // Four axes: the shape tuple needs MARK … TUPLE.
            NdArray::new(vec![1, 2, 1, 2], ArrayData::I32(vec![i32::MIN, -1, 0, i32::MAX])),
            NdArray::new(vec![3], ArrayData::U8(vec![0, 128, 255])),
            NdArray::new(vec![2], ArrayData::Bool(vec![false, true])),
        ]
    }

    #[test]
    fn every_dtype_and_shape_round_trips() {
        for a in samples() {
            let bytes = encoded(&[&a], Layout::One);
            let values = parse_all(&bytes, Path::new("mem")).unwrap();
            assert_eq!(values, vec![PyValue::Array(a.clone())], "{}", a.describe());
        }
    }

    #[test]
    fn tuples_and_concatenation_round_trip_through_files() {
        let dir = tempfile::tempdir().unwrap();
        let s = samples();
        let all: Vec<&NdArray> = s.iter().collect();

        let tuple = dir.path().join("tuple.pkl");
        write_tuple(&tuple, &all).unwrap();
        let back = load_all(&tuple).unwrap();
        assert_eq!(back, vec![PyValue::Tuple(s.iter().cloned().map(PyValue::Array).collect())]);

        let pair = dir.path().join("pair.pkl");
        write_tuple(&pair, &all[..2]).unwrap();
        assert_eq!(
            load_all(&pair).unwrap()[0],
            PyValue::Tuple(vec![s[0].clone().into(), s[1].clone().into()])
        );

        let z = dir.path().join("z.pkl");
        write_arrays_concatenated(&z, &all[..2]).unwrap();
        assert_eq!(load_all(&z).unwrap(), vec![PyValue::Array(s[0].clone()), PyValue::Array(s[1].clone())]);
        assert_eq!(load_array(&z).unwrap(), s[0], "load_array reads the first pickle only");

        let one = dir.path().join("one.pkl");
        write_array(&one, &s[3]).unwrap();
        assert_eq!(load_array(&one).unwrap(), s[3]);
    }

    #[test]
    fn inconsistent_array_is_refused_and_nothing_is_written() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pkl");
        let bad = NdArray::new(vec![2, 2], ArrayData::F32(vec![1.0]));
        assert!(matches!(write_array(&p, &bad).unwrap_err(), Error::Invalid { .. }));
        assert!(!p.exists());
    }
}
