//! What a numpy pickle can hold once parsed: Python scalars, strings, tuples and lists, and numpy arrays.
//!
//! Arrays are always stored in C (row-major) order with native-endian typed elements; the reader converts
//! Fortran-ordered and big-endian data on the way in. The element count of an [`NdArray`] read from a file
//! always equals the product of its shape; writers check the same for arrays built in memory.

use std::fmt;

/// The element types drgnfly reads and writes (numpy's `float32`, `float64`, `int64`, `int32`, `uint8`,
/// `bool`). Anything else in a file is reported as unsupported.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum DType {
    /// `float32` (`<f4`).
    F32,
    /// `float64` (`<f8`).
    F64,
    /// `int64` (`<i8`).
    I64,
    /// `int32` (`<i4`).
    I32,
    /// `uint8` (`|u1`).
    U8,
    /// `bool` (`|b1`), one byte per element.
    Bool,
}

impl DType {
    /// Bytes per element.
    pub fn itemsize(self) -> usize {
        match self {
            DType::F32 | DType::I32 => 4,
            DType::F64 | DType::I64 => 8,
            DType::U8 | DType::Bool => 1,
        }
    }

    /// numpy's type string without the byte-order character (`"f4"`, `"i8"`, `"b1"`, …), as it appears in
    /// a pickled `numpy.dtype(...)` call.
    pub fn descr(self) -> &'static str {
        match self {
            DType::F32 => "f4",
            DType::F64 => "f8",
            DType::I64 => "i8",
            DType::I32 => "i4",
            DType::U8 => "u1",
            DType::Bool => "b1",
        }
    }

    /// numpy's name for the type (`"float32"`, …), for messages.
    pub fn name(self) -> &'static str {
        match self {
            DType::F32 => "float32",
            DType::F64 => "float64",
            DType::I64 => "int64",
            DType::I32 => "int32",
            DType::U8 => "uint8",
            DType::Bool => "bool",
        }
    }
}

impl fmt::Display for DType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The elements of an array, one typed vector per [`DType`], in C order.
#[derive(Debug, Clone, PartialEq)]
pub enum ArrayData {
    /// `float32` elements.
    F32(Vec<f32>),
    /// `float64` elements.
    F64(Vec<f64>),
    /// `int64` elements.
    I64(Vec<i64>),
    /// `int32` elements.
    I32(Vec<i32>),
    /// `uint8` elements.
    U8(Vec<u8>),
    /// `bool` elements.
    Bool(Vec<bool>),
}

impl ArrayData {
    /// The element type.
    pub fn dtype(&self) -> DType {
        match self {
            ArrayData::F32(_) => DType::F32,
            ArrayData::F64(_) => DType::F64,
            ArrayData::I64(_) => DType::I64,
            ArrayData::I32(_) => DType::I32,
            ArrayData::U8(_) => DType::U8,
            ArrayData::Bool(_) => DType::Bool,
        }
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        match self {
            ArrayData::F32(v) => v.len(),
            ArrayData::F64(v) => v.len(),
            ArrayData::I64(v) => v.len(),
            ArrayData::I32(v) => v.len(),
            ArrayData::U8(v) => v.len(),
            ArrayData::Bool(v) => v.len(),
        }
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// A numpy array: shape (C order, slowest axis first) and elements. A 0-d array (numpy scalar) has an
/// empty shape and one element.
#[derive(Debug, Clone, PartialEq)]
pub struct NdArray {
    /// Extent of each axis, slowest first, as numpy's `shape`.
    pub shape: Vec<usize>,
    /// The elements in C order; `data.len()` is the product of `shape`.
    pub data: ArrayData,
}

impl NdArray {
    /// An array of `shape` holding `data` (the caller keeps `data.len()` equal to the product of `shape`;
    /// writers refuse arrays where it is not).
    pub fn new(shape: Vec<usize>, data: ArrayData) -> Self {
        Self { shape, data }
    }

    /// The element type.
    pub fn dtype(&self) -> DType {
        self.data.dtype()
    }

    /// Number of elements.
    pub fn len(&self) -> usize {
        self.data.len()
    }

    /// True when there are no elements.
    pub fn is_empty(&self) -> bool {
        self.data.is_empty()
    }

    /// Number of axes.
    pub fn ndim(&self) -> usize {
        self.shape.len()
    }

    /// The elements as `f32` (`f64` and integers are rounded to the nearest `f32`; bools are 0 or 1).
    pub fn as_f32_vec(&self) -> Vec<f32> {
        match &self.data {
            ArrayData::F32(v) => v.clone(),
            ArrayData::F64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| x as f32).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| f32::from(x)).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| f32::from(u8::from(x))).collect(),
        }
    }

    /// The elements as `f32`, without copying when they already are (large latent arrays).
    pub fn into_f32_vec(self) -> Vec<f32> {
        match self.data {
            ArrayData::F32(v) => v,
            _ => self.as_f32_vec(),
        }
    }

    /// The elements as `f64` (`i64` beyond 2⁵³ rounds; bools are 0 or 1).
    pub fn as_f64_vec(&self) -> Vec<f64> {
        match &self.data {
            ArrayData::F32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::F64(v) => v.clone(),
            ArrayData::I64(v) => v.iter().map(|&x| x as f64).collect(),
            ArrayData::I32(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::U8(v) => v.iter().map(|&x| f64::from(x)).collect(),
            ArrayData::Bool(v) => v.iter().map(|&x| f64::from(u8::from(x))).collect(),
        }
    }

    /// The elements as `i64`. Floating-point elements must be whole numbers within the `i64` range;
    /// otherwise this returns the flat index of the first one that is not, so the caller can name it.
    pub fn as_i64_vec(&self) -> Result<Vec<i64>, usize> {
        // 2⁶³ as f64; every whole f64 in [-2⁶³, 2⁶³) converts exactly.
        const LIMIT: f64 = 9_223_372_036_854_775_808.0;
        let from_float = |x: f64| (x.fract() == 0.0 && (-LIMIT..LIMIT).contains(&x)).then_some(x as i64);
        match &self.data {
            ArrayData::F32(v) => {
                v.iter().enumerate().map(|(i, &x)| from_float(f64::from(x)).ok_or(i)).collect()
            }
            ArrayData::F64(v) => v.iter().enumerate().map(|(i, &x)| from_float(x).ok_or(i)).collect(),
            ArrayData::I64(v) => Ok(v.clone()),
            ArrayData::I32(v) => Ok(v.iter().map(|&x| i64::from(x)).collect()),
            ArrayData::U8(v) => Ok(v.iter().map(|&x| i64::from(x)).collect()),
            ArrayData::Bool(v) => Ok(v.iter().map(|&x| i64::from(x)).collect()),
        }
    }

    /// "a numpy array (float32, shape (5, 9))", for messages.
    pub fn describe(&self) -> String {
        format!("a numpy array ({}, shape {})", self.dtype(), fmt_shape(&self.shape))
    }
}

/// A shape as numpy prints it: `(5, 9)`, `(100,)`, `()`.
pub fn fmt_shape(shape: &[usize]) -> String {
    match shape {
        [] => "()".to_string(),
        [n] => format!("({n},)"),
        _ => {
            let parts: Vec<String> = shape.iter().map(|n| n.to_string()).collect();
            format!("({})", parts.join(", "))
        }
    }
}

/// A Python value from a numpy pickle. Dictionaries, sets and arbitrary objects are never produced: the
/// reader refuses them, since no cryoDRGN array file contains one.
#[derive(Debug, Clone, PartialEq)]
pub enum PyValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int` that fits in 64 bits.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// `bytes` or `bytearray`.
    Bytes(Vec<u8>),
    /// A `tuple`.
    Tuple(Vec<PyValue>),
    /// A `list`.
    List(Vec<PyValue>),
    /// A `numpy.ndarray` (or a numpy scalar, as a 0-d array).
    Array(NdArray),
}

impl PyValue {
    /// "a tuple of 2 items", "a str", "a numpy array (float32, shape (5, 9))", for messages.
    pub fn describe(&self) -> String {
        match self {
            PyValue::None => "None".to_string(),
            PyValue::Bool(_) => "a bool".to_string(),
            PyValue::Int(_) => "an int".to_string(),
            PyValue::Float(_) => "a float".to_string(),
            PyValue::Str(_) => "a str".to_string(),
            PyValue::Bytes(b) => format!("{} bytes", b.len()),
            PyValue::Tuple(v) => format!("a tuple of {} items", v.len()),
            PyValue::List(v) => format!("a list of {} items", v.len()),
            PyValue::Array(a) => a.describe(),
        }
    }

    /// The array, if this is one.
    pub fn into_array(self) -> Option<NdArray> {
        match self {
            PyValue::Array(a) => Some(a),
            _ => None,
        }
    }
}

impl From<NdArray> for PyValue {
    fn from(a: NdArray) -> Self {
        PyValue::Array(a)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn conversions_between_dtypes() {
        let a = NdArray::new(vec![3], ArrayData::F64(vec![1.0, -2.0, 3.5]));
        assert_eq!(a.as_f32_vec(), vec![1.0f32, -2.0, 3.5]);
        assert_eq!(a.as_i64_vec(), Err(2), "3.5 is not whole: index 2 is reported");
        let b = NdArray::new(vec![2], ArrayData::Bool(vec![true, false]));
        assert_eq!(b.as_f64_vec(), vec![1.0, 0.0]);
        assert_eq!(b.as_i64_vec(), Ok(vec![1, 0]));
        let c = NdArray::new(vec![2], ArrayData::F32(vec![4.0, f32::NAN]));
        assert_eq!(c.as_i64_vec(), Err(1));
        let d = NdArray::new(vec![2], ArrayData::I32(vec![-7, 9]));
        assert_eq!(d.as_i64_vec(), Ok(vec![-7, 9]));
        assert_eq!(d.clone().into_f32_vec(), vec![-7.0, 9.0]);
        assert_eq!(d.describe(), "a numpy array (int32, shape (2,))");
    }

    #[test]
    fn shapes_print_like_numpy() {
        assert_eq!(fmt_shape(&[]), "()");
        assert_eq!(fmt_shape(&[100]), "(100,)");
        assert_eq!(fmt_shape(&[5, 3, 3]), "(5, 3, 3)");
    }
}
