//! `.npy` writers: plain arrays, row subsets of structured arrays (bytes copied unchanged) and new
//! structured arrays built from columns. Little-endian, C order, header padded to 64 bytes, atomic.

use std::path::Path;

use super::header::header_bytes;
use super::{DType, Field, NpyArray, Scalar, ScalarKind};
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// Write a plain array of `scalar` elements with `shape`; `data` holds the elements in C order and in
/// `scalar`'s byte order.
pub fn write_npy_plain(path: impl AsRef<Path>, scalar: Scalar, shape: &[usize], data: &[u8]) -> Result<()> {
    let path = path.as_ref();
    let n = shape.iter().try_fold(scalar.size(), |a, &d| a.checked_mul(d));
    if n != Some(data.len()) {
        return Err(Error::invalid(
            path,
            None,
            format!("{} bytes do not fill shape {shape:?} of {}", data.len(), scalar.descr()),
            "",
        ));
    }
    let mut f = AtomicFile::create(path)?;
    f.write_all(&header_bytes(&DType::Plain(scalar), shape))?;
    f.write_all(data)?;
    f.commit()
}

/// Write little-endian float32 values with `shape`.
pub fn write_npy_f32(path: impl AsRef<Path>, shape: &[usize], values: &[f32]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy_plain(path, Scalar::le(ScalarKind::F32), shape, &bytes)
}

/// Write little-endian float64 values with `shape`.
pub fn write_npy_f64(path: impl AsRef<Path>, shape: &[usize], values: &[f64]) -> Result<()> {
    let bytes: Vec<u8> = values.iter().flat_map(|v| v.to_le_bytes()).collect();
    write_npy_plain(path, Scalar::le(ScalarKind::F64), shape, &bytes)
}

/// Copy rows `indices` of a 1-D array into a new file with the same dtype.
pub(super) fn write_rows(src: &NpyArray, out: &Path, indices: &[usize]) -> Result<()> {
    if src.shape().len() != 1 {
        return Err(Error::invalid(
            src.path(),
            None,
            format!("selecting rows needs a 1-D array, this one has shape {:?}", src.shape()),
            "",
        ));
    }
    let mut f = AtomicFile::create(out)?;
    f.write_all(&header_bytes(src.dtype(), &[indices.len()]))?;
    for &i in indices {
        let item = src.item(i).ok_or_else(|| {
            Error::invalid(
                src.path(),
                None,
                format!("index {i} is out of range: the array has {} rows", src.len()),
                "check that the index file belongs to this file (indices are 0-based)",
            )
        })?;
        f.write_all(item)?;
    }
    f.commit()
}

/// The values of one column of a new structured array (row-major, `count` elements per row).
#[derive(Debug, Clone, PartialEq)]
pub enum Column {
    /// `<f4`
    F32(Vec<f32>),
    /// `<f8`
    F64(Vec<f64>),
    /// `<i4`
    I32(Vec<i32>),
    /// `<i8`
    I64(Vec<i64>),
    /// `<u4`
    U32(Vec<u32>),
    /// `<u8`
    U64(Vec<u64>),
    /// `|S<width>`: strings NUL-padded to `width` bytes (one per row).
    Bytes(usize, Vec<String>),
}

impl Column {
    fn scalar(&self) -> Scalar {
        Scalar::le(match self {
            Column::F32(_) => ScalarKind::F32,
            Column::F64(_) => ScalarKind::F64,
            Column::I32(_) => ScalarKind::I32,
            Column::I64(_) => ScalarKind::I64,
            Column::U32(_) => ScalarKind::U32,
            Column::U64(_) => ScalarKind::U64,
            Column::Bytes(w, _) => ScalarKind::Bytes(*w),
        })
    }

    fn values(&self) -> usize {
        match self {
            Column::F32(v) => v.len(),
            Column::F64(v) => v.len(),
            Column::I32(v) => v.len(),
            Column::I64(v) => v.len(),
            Column::U32(v) => v.len(),
            Column::U64(v) => v.len(),
            Column::Bytes(_, v) => v.len(),
        }
    }

    /// Append element `i` (little-endian) to `out`.
    fn put(&self, i: usize, out: &mut Vec<u8>) {
        match self {
            Column::F32(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Column::F64(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Column::I32(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Column::I64(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Column::U32(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Column::U64(v) => out.extend_from_slice(&v[i].to_le_bytes()),
            Column::Bytes(w, v) => {
                let b = v[i].as_bytes();
                out.extend_from_slice(b);
                out.resize(out.len() + (w - b.len()), 0);
            }
        }
    }
}

/// Builds a structured array (cryoSPARC `.cs` style) from whole columns.
#[derive(Debug, Clone)]
pub struct StructuredBuilder {
    rows: usize,
    fields: Vec<(String, Vec<usize>, Column)>,
}

impl StructuredBuilder {
    /// A builder for `rows` rows.
    pub fn new(rows: usize) -> Self {
        Self { rows, fields: Vec::new() }
    }

    /// Add field `name` with subarray `shape` (`&[]` for a scalar field) and its values
    /// (rows × ∏shape, row-major). Bytes strings must fit their width.
    pub fn add(&mut self, name: &str, shape: &[usize], values: Column) -> Result<&mut Self> {
        let problem = |p: String| Error::invalid(format!("(new field {name})"), None, p, "");
        let count: usize = shape.iter().product();
        let want = self.rows * count;
        if values.values() != want {
            return Err(problem(format!("{} values for {} rows × {count}", values.values(), self.rows)));
        }
        if let Column::Bytes(w, v) = &values {
            if let Some(s) = v.iter().find(|s| s.len() > *w) {
                return Err(problem(format!("{s:?} is longer than the field width {w}")));
            }
        }
        if name.is_empty() || self.fields.iter().any(|(n, _, _)| n == name) {
            return Err(problem("field names must be non-empty and distinct".into()));
        }
        self.fields.push((name.to_string(), shape.to_vec(), values));
        Ok(self)
    }

    /// The dtype the fields make.
    pub fn dtype(&self) -> DType {
        let mut offset = 0;
        let fields = self
            .fields
            .iter()
            .map(|(name, shape, col)| {
                let f = Field { name: name.clone(), scalar: col.scalar(), shape: shape.clone(), offset };
                offset += f.size();
                f
            })
            .collect();
        DType::Struct { fields, itemsize: offset }
    }

    /// Write the array (shape `(rows,)`) to `path` atomically.
    pub fn write(&self, path: impl AsRef<Path>) -> Result<()> {
        let mut f = AtomicFile::create(path.as_ref())?;
        let dtype = self.dtype();
        f.write_all(&header_bytes(&dtype, &[self.rows]))?;
        let mut item = Vec::with_capacity(dtype.itemsize());
        for r in 0..self.rows {
            item.clear();
            for (_, shape, col) in &self.fields {
                let count: usize = shape.iter().product();
                for e in 0..count {
                    col.put(r * count + e, &mut item);
                }
            }
            f.write_all(&item)?;
        }
        f.commit()
    }
}
