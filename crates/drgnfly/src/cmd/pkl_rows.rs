//! Row operations on the arrays of a cryoDRGN .pkl, shared by `filter-pkl` and `concat-pkls`.
//!
//! A .pkl here is one numpy array (ctf.pkl, z.pkl, an index array), a tuple of arrays (pose.pkl as
//! `(rot, trans)`), or several arrays pickled back to back (z.N.pkl: z_mu then z_logvar). Rows are the
//! first axis; every array of a file must have the same number of rows, so a pose tuple is always
//! filtered and concatenated as a whole.

use std::path::Path;

use anyhow::{bail, Result};
use drgnfly_io::pickle::{self, fmt_shape, ArrayData, NdArray, PyValue};

/// The arrays of a .pkl and how they were stored.
#[derive(Debug, Clone, PartialEq)]
pub enum PklArrays {
    /// One array.
    Single(NdArray),
    /// A pickled tuple (or list) of arrays.
    Tuple(Vec<NdArray>),
    /// Arrays pickled back to back.
    Concatenated(Vec<NdArray>),
}

impl PklArrays {
    /// Read `path` and check that it holds arrays with a common number of rows.
    pub fn load(path: &Path) -> Result<Self> {
        let mut values = pickle::load_all(path)?.into_iter();
        let me = match (values.next(), values.next()) {
            (Some(PyValue::Array(a)), None) => PklArrays::Single(a),
            (Some(PyValue::Tuple(items) | PyValue::List(items)), None) if !items.is_empty() => {
                PklArrays::Tuple(arrays(path, items, "tuple item")?)
            }
            (Some(other), None) => bail!(
                "{}: holds {}, not a numpy array or a tuple of arrays (ctf.pkl, pose.pkl, z.pkl, ind.pkl)",
                path.display(),
                other.describe()
            ),
            (first, second) => PklArrays::Concatenated(arrays(
                path,
                first.into_iter().chain(second).chain(values).collect(),
                "pickle",
            )?),
        };
        me.rows(path)?;
        Ok(me)
    }

    /// The arrays in order.
    pub fn arrays(&self) -> &[NdArray] {
        match self {
            PklArrays::Single(a) => std::slice::from_ref(a),
            PklArrays::Tuple(v) | PklArrays::Concatenated(v) => v,
        }
    }

    /// The same layout holding `arrays` (one array for [`PklArrays::Single`]).
    pub fn with_arrays(&self, arrays: Vec<NdArray>) -> Self {
        let mut it = arrays.into_iter();
        match (self, it.next()) {
            (PklArrays::Single(_), Some(a)) => PklArrays::Single(a),
            (PklArrays::Concatenated(_), first) => {
                PklArrays::Concatenated(first.into_iter().chain(it).collect())
            }
            (_, first) => PklArrays::Tuple(first.into_iter().chain(it).collect()),
        }
    }

    /// The common number of rows (first axis); `path` is named in errors.
    pub fn rows(&self, path: &Path) -> Result<usize> {
        let mut rows = None;
        for (k, a) in self.arrays().iter().enumerate() {
            let Some(&n) = a.shape.first() else {
                bail!("{}: array {k} is a scalar (shape ()), it has no rows to select", path.display())
            };
            match rows {
                None => rows = Some(n),
                Some(r) if r != n => bail!(
                    "{}: array {k} has {n} rows but array 0 has {r}; the arrays of one file must describe the same particles",
                    path.display()
                ),
                Some(_) => {}
            }
        }
        rows.ok_or_else(|| anyhow::anyhow!("{}: holds no array", path.display()))
    }

    /// Short description: `(1000, 3, 3) float32 + (1000, 2) float64`.
    pub fn describe(&self) -> String {
        let parts: Vec<String> =
            self.arrays().iter().map(|a| format!("{} {}", fmt_shape(&a.shape), a.dtype())).collect();
        parts.join(" + ")
    }

    /// Write in the same layout, atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        match self {
            PklArrays::Single(a) => pickle::write_array(path, a)?,
            PklArrays::Tuple(v) => pickle::write_tuple(path, &v.iter().collect::<Vec<_>>())?,
            PklArrays::Concatenated(v) => {
                pickle::write_arrays_concatenated(path, &v.iter().collect::<Vec<_>>())?
            }
        }
        Ok(())
    }
}

fn arrays(path: &Path, values: Vec<PyValue>, what: &str) -> Result<Vec<NdArray>> {
    values
        .into_iter()
        .enumerate()
        .map(|(k, v)| match v {
            PyValue::Array(a) => Ok(a),
            other => bail!("{}: {what} {k} holds {}, not a numpy array", path.display(), other.describe()),
        })
        .collect()
}

/// Values per row of `a` (product of the axes after the first).
fn row_len(a: &NdArray) -> usize {
    a.shape.iter().skip(1).product()
}

/// Rows `rows` of `a`, in that order. Every row index must be below `a.shape[0]` (checked by the caller).
pub fn take_rows(a: &NdArray, rows: &[usize]) -> NdArray {
    fn take<T: Copy>(v: &[T], k: usize, rows: &[usize]) -> Vec<T> {
        rows.iter().flat_map(|&r| v[r * k..(r + 1) * k].iter().copied()).collect()
    }
    let k = row_len(a);
    let data = match &a.data {
        ArrayData::F32(v) => ArrayData::F32(take(v, k, rows)),
        ArrayData::F64(v) => ArrayData::F64(take(v, k, rows)),
        ArrayData::I64(v) => ArrayData::I64(take(v, k, rows)),
        ArrayData::I32(v) => ArrayData::I32(take(v, k, rows)),
        ArrayData::U8(v) => ArrayData::U8(take(v, k, rows)),
        ArrayData::Bool(v) => ArrayData::Bool(take(v, k, rows)),
    };
    let mut shape = a.shape.clone();
    shape[0] = rows.len();
    NdArray::new(shape, data)
}

/// `parts` joined along the first axis. Shapes must agree beyond it; dtypes must agree, except that
/// float32 and float64 join as float64 (numpy's promotion). Errors name the offending file.
pub fn concat_rows(parts: &[(&Path, &NdArray)]) -> Result<NdArray> {
    let Some(&(first_path, first)) = parts.first() else { bail!("no arrays to concatenate") };
    let tail = first.shape.get(1..).unwrap_or(&[]).to_vec();
    for &(p, a) in parts {
        if a.shape.is_empty() || a.shape[1..] != tail[..] {
            bail!(
                "{}: shape {} does not match {} of {} beyond the first axis",
                p.display(),
                fmt_shape(&a.shape),
                fmt_shape(&first.shape),
                first_path.display()
            );
        }
    }
    let rows: usize = parts.iter().map(|(_, a)| a.shape[0]).sum();
    let mut shape = first.shape.clone();
    shape[0] = rows;
    let same = parts.iter().all(|(_, a)| a.dtype() == first.dtype());
    macro_rules! join {
        ($variant:ident) => {{
            let mut out = Vec::with_capacity(rows * tail.iter().product::<usize>());
            for (_, a) in parts {
                if let ArrayData::$variant(v) = &a.data {
                    out.extend_from_slice(v);
                }
            }
            ArrayData::$variant(out)
        }};
    }
    let data = if same {
        match first.data {
            ArrayData::F32(_) => join!(F32),
            ArrayData::F64(_) => join!(F64),
            ArrayData::I64(_) => join!(I64),
            ArrayData::I32(_) => join!(I32),
            ArrayData::U8(_) => join!(U8),
            ArrayData::Bool(_) => join!(Bool),
        }
    } else if parts.iter().all(|(_, a)| matches!(a.data, ArrayData::F32(_) | ArrayData::F64(_))) {
        ArrayData::F64(parts.iter().flat_map(|(_, a)| a.as_f64_vec()).collect())
    } else {
        let (p, a) =
            parts.iter().find(|(_, a)| a.dtype() != first.dtype()).copied().unwrap_or((first_path, first));
        bail!(
            "{}: dtype {} cannot be joined with {} of {}",
            p.display(),
            a.dtype(),
            first.dtype(),
            first_path.display()
        );
    };
    Ok(NdArray::new(shape, data))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn take_and_concat_rows() {
        let a = NdArray::new(vec![3, 2], ArrayData::I64(vec![0, 1, 10, 11, 20, 21]));
        let t = take_rows(&a, &[2, 0, 2]);
        assert_eq!(t, NdArray::new(vec![3, 2], ArrayData::I64(vec![20, 21, 0, 1, 20, 21])));
        let p = Path::new("a.pkl");
        let c = concat_rows(&[(p, &a), (p, &t)]).unwrap();
        assert_eq!(c.shape, vec![6, 2]);
        assert_eq!(c.as_i64_vec().unwrap()[6..], [20, 21, 0, 1, 20, 21]);

        let f32s = NdArray::new(vec![1, 2], ArrayData::F32(vec![0.5, 1.5]));
        let f64s = NdArray::new(vec![1, 2], ArrayData::F64(vec![2.5, 3.5]));
        let c = concat_rows(&[(p, &f32s), (p, &f64s)]).unwrap();
        assert_eq!(c.data, ArrayData::F64(vec![0.5, 1.5, 2.5, 3.5]));

        let q = Path::new("b.pkl");
        let wide = NdArray::new(vec![1, 3], ArrayData::I64(vec![1, 2, 3]));
        let e = concat_rows(&[(p, &a), (q, &wide)]).unwrap_err().to_string();
        assert!(e.contains("b.pkl: shape (1, 3) does not match (3, 2)"), "{e}");
        let e = concat_rows(&[(p, &a), (q, &f32s)]).unwrap_err().to_string();
        assert!(e.contains("b.pkl: dtype float32 cannot be joined with int64"), "{e}");
    }
}
