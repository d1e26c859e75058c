//! numpy `.npy` arrays: plain (`<f4`, `>i8`, `|b1`, …) and structured (cryoSPARC `.cs` files), read
//! memory-mapped and written atomically.
//!
//! Format: magic `\x93NUMPY`, version (1.0: u16 header length; 2.0 and 3.0: u32, 3.0 UTF-8), a Python
//! dict literal `{'descr', 'fortran_order', 'shape'}` (parsed, never evaluated), then the raw items.
//! The data length must equal itemsize × ∏shape exactly: a shorter file is truncated, a longer one has a
//! header that lies about its shape; both are errors. Sizes are checked before anything is allocated.
//!
//! Elements are returned in C (row-major) order: a plain array stored with `fortran_order: True` is
//! transposed on conversion. Structured arrays are rows of fixed-size items; [`FieldView`] reads one
//! field (a scalar or a fixed subarray such as `('blob/shape', '<u4', (2,))`) of every row.

mod header;
mod write;

use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};

pub use write::{write_npy_f32, write_npy_f64, write_npy_plain, Column, StructuredBuilder};

/// Byte order of multi-byte elements (`|` and `=` are read as little-endian).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ByteOrder {
    /// `<` (and `|`, `=`).
    Little,
    /// `>`.
    Big,
}

/// An element type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ScalarKind {
    /// `b1`
    Bool,
    /// `i1`
    I8,
    /// `i2`
    I16,
    /// `i4`
    I32,
    /// `i8`
    I64,
    /// `u1`
    U8,
    /// `u2`
    U16,
    /// `u4`
    U32,
    /// `u8`
    U64,
    /// `f2`
    F16,
    /// `f4`
    F32,
    /// `f8`
    F64,
    /// `Sn`: n bytes, NUL-padded.
    Bytes(usize),
    /// `Vn`: n raw bytes (padding in aligned structs).
    Void(usize),
    /// `Un`: n UTF-32 code points, NUL-padded.
    Unicode(usize),
}

/// An element type with its byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Scalar {
    /// The type.
    pub kind: ScalarKind,
    /// The byte order.
    pub order: ByteOrder,
}

/// One field of a structured dtype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    /// Field name (empty for padding).
    pub name: String,
    /// Element type.
    pub scalar: Scalar,
    /// Subarray shape (empty for a scalar field).
    pub shape: Vec<usize>,
    /// Byte offset within an item.
    pub offset: usize,
}

/// An array's dtype.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum DType {
    /// One element type.
    Plain(Scalar),
    /// Named fields laid out back to back.
    Struct {
        /// The fields in order (padding fields have empty names).
        fields: Vec<Field>,
        /// Bytes per item.
        itemsize: usize,
    },
}

impl Scalar {
    /// Little-endian scalar of `kind`.
    pub fn le(kind: ScalarKind) -> Self {
        Self { kind, order: ByteOrder::Little }
    }

    /// Bytes per element.
    pub fn size(&self) -> usize {
        match self.kind {
            ScalarKind::Bool | ScalarKind::I8 | ScalarKind::U8 => 1,
            ScalarKind::I16 | ScalarKind::U16 | ScalarKind::F16 => 2,
            ScalarKind::I32 | ScalarKind::U32 | ScalarKind::F32 => 4,
            ScalarKind::I64 | ScalarKind::U64 | ScalarKind::F64 => 8,
            ScalarKind::Bytes(n) | ScalarKind::Void(n) => n,
            ScalarKind::Unicode(n) => 4 * n,
        }
    }

    /// numpy's type string, e.g. `<f4`, `|S64`.
    pub fn descr(&self) -> String {
        let o = match (self.size(), self.order) {
            (_, _) if matches!(self.kind, ScalarKind::Bytes(_) | ScalarKind::Void(_)) => '|',
            (1, _) => '|',
            (_, ByteOrder::Little) => '<',
            (_, ByteOrder::Big) => '>',
        };
        let t = match self.kind {
            ScalarKind::Bool => "b1".to_string(),
            ScalarKind::I8 => "i1".into(),
            ScalarKind::I16 => "i2".into(),
            ScalarKind::I32 => "i4".into(),
            ScalarKind::I64 => "i8".into(),
            ScalarKind::U8 => "u1".into(),
            ScalarKind::U16 => "u2".into(),
            ScalarKind::U32 => "u4".into(),
            ScalarKind::U64 => "u8".into(),
            ScalarKind::F16 => "f2".into(),
            ScalarKind::F32 => "f4".into(),
            ScalarKind::F64 => "f8".into(),
            ScalarKind::Bytes(n) => format!("S{n}"),
            ScalarKind::Void(n) => format!("V{n}"),
            ScalarKind::Unicode(n) => format!("U{n}"),
        };
        format!("{o}{t}")
    }

    /// Whether elements are numbers (or booleans).
    pub fn is_numeric(&self) -> bool {
        !matches!(self.kind, ScalarKind::Bytes(_) | ScalarKind::Void(_) | ScalarKind::Unicode(_))
    }

    /// Whether elements are integers (or booleans).
    pub fn is_integer(&self) -> bool {
        self.is_numeric() && !matches!(self.kind, ScalarKind::F16 | ScalarKind::F32 | ScalarKind::F64)
    }

    /// Decode one numeric element as f64 (`None` for text types or a short slice).
    fn f64_of(&self, b: &[u8]) -> Option<f64> {
        Some(match self.kind {
            ScalarKind::F32 => f32::from_bits(self.u32_of(b)?) as f64,
            ScalarKind::F64 => f64::from_bits(self.u64_of(b)?),
            ScalarKind::F16 => half::f16::from_bits(self.u16_of(b)?).to_f64(),
            _ => match self.int_of(b)? {
                Int::S(v) => v as f64,
                Int::U(v) => v as f64,
            },
        })
    }

    /// Decode one integer element (`None` for floats and text types).
    fn int_of(&self, b: &[u8]) -> Option<Int> {
        Some(match self.kind {
            ScalarKind::Bool => Int::U((*b.first()? != 0) as u64),
            ScalarKind::U8 => Int::U(*b.first()? as u64),
            ScalarKind::I8 => Int::S(*b.first()? as i8 as i64),
            ScalarKind::U16 => Int::U(self.u16_of(b)? as u64),
            ScalarKind::I16 => Int::S(self.u16_of(b)? as i16 as i64),
            ScalarKind::U32 => Int::U(self.u32_of(b)? as u64),
            ScalarKind::I32 => Int::S(self.u32_of(b)? as i32 as i64),
            ScalarKind::U64 => Int::U(self.u64_of(b)?),
            ScalarKind::I64 => Int::S(self.u64_of(b)? as i64),
            _ => return None,
        })
    }

    fn u16_of(&self, b: &[u8]) -> Option<u16> {
        let a: [u8; 2] = b.get(..2)?.try_into().ok()?;
        Some(if self.order == ByteOrder::Big { u16::from_be_bytes(a) } else { u16::from_le_bytes(a) })
    }

    fn u32_of(&self, b: &[u8]) -> Option<u32> {
        let a: [u8; 4] = b.get(..4)?.try_into().ok()?;
        Some(if self.order == ByteOrder::Big { u32::from_be_bytes(a) } else { u32::from_le_bytes(a) })
    }

    fn u64_of(&self, b: &[u8]) -> Option<u64> {
        let a: [u8; 8] = b.get(..8)?.try_into().ok()?;
        Some(if self.order == ByteOrder::Big { u64::from_be_bytes(a) } else { u64::from_le_bytes(a) })
    }
}

/// A decoded integer, signed or unsigned.
#[derive(Debug, Clone, Copy)]
enum Int {
    S(i64),
    U(u64),
}

impl Field {
    /// Elements per row (1 for a scalar field).
    pub fn count(&self) -> usize {
        self.shape.iter().product()
    }

    /// Bytes per row.
    pub fn size(&self) -> usize {
        self.count() * self.scalar.size()
    }

    /// The type as numpy writes it: `<f4`, or `<u4 (2,)` for a subarray.
    pub fn type_str(&self) -> String {
        if self.shape.is_empty() {
            self.scalar.descr()
        } else {
            format!("{} {}", self.scalar.descr(), header::py_tuple(&self.shape))
        }
    }
}

impl DType {
    /// Bytes per item.
    pub fn itemsize(&self) -> usize {
        match self {
            DType::Plain(s) => s.size(),
            DType::Struct { itemsize, .. } => *itemsize,
        }
    }

    /// The named fields of a structured dtype (padding excluded); empty for a plain dtype.
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        let all: &[Field] = match self {
            DType::Plain(_) => &[],
            DType::Struct { fields, .. } => fields,
        };
        all.iter().filter(|f| !f.name.is_empty())
    }
}

/// Where the bytes live.
enum Bytes {
    Mapped(Mmap),
    Owned(Vec<u8>),
}

/// An opened `.npy` array.
pub struct NpyArray {
    path: PathBuf,
    bytes: Bytes,
    data_offset: usize,
    dtype: DType,
    shape: Vec<usize>,
    fortran_order: bool,
}

impl std::fmt::Debug for NpyArray {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NpyArray")
            .field("path", &self.path)
            .field("dtype", &self.dtype)
            .field("shape", &self.shape)
            .field("fortran_order", &self.fortran_order)
            .finish()
    }
}

const MAGIC: &[u8] = b"\x93NUMPY";

impl NpyArray {
    /// Memory-map and validate `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
        let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let bytes = if len == 0 {
            Bytes::Owned(Vec::new())
        } else {
            // SAFETY: the map is read-only; as with any mmap, another process truncating the file while it
            // is open is outside what we can guard against.
            Bytes::Mapped(unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?)
        };
        Self::from_parts(path, bytes)
    }

    /// Parse an in-memory `.npy` (e.g. an `.npz` member); `label` names it in errors.
    pub fn from_bytes(label: impl AsRef<Path>, bytes: Vec<u8>) -> Result<Self> {
        Self::from_parts(label.as_ref(), Bytes::Owned(bytes))
    }

    fn from_parts(path: &Path, bytes: Bytes) -> Result<Self> {
        let raw: &[u8] = match &bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        };
        let hint = "the file is not a complete numpy .npy array";
        if raw.len() < 10 {
            return Err(Error::Truncated {
                path: path.into(),
                what: "npy header".into(),
                expected: 10,
                got: raw.len() as u64,
                hint: hint.into(),
            });
        }
        if &raw[..6] != MAGIC {
            return Err(Error::invalid(path, Some("byte 0".into()), "no numpy magic \\x93NUMPY", hint));
        }
        let (major, minor) = (raw[6], raw[7]);
        let (hlen, start) = match major {
            1 => (u16::from_le_bytes([raw[8], raw[9]]) as usize, 10),
            2 | 3 if raw.len() >= 12 => (u32::from_le_bytes([raw[8], raw[9], raw[10], raw[11]]) as usize, 12),
            2 | 3 => {
                return Err(Error::Truncated {
                    path: path.into(),
                    what: "npy header".into(),
                    expected: 12,
                    got: raw.len() as u64,
                    hint: hint.into(),
                })
            }
            _ => {
                return Err(Error::unsupported(
                    path,
                    Some("byte 6".into()),
                    format!("npy format version {major}.{minor}"),
                    "re-save the array with numpy (np.save)",
                ))
            }
        };
        let data_offset = start + hlen;
        if data_offset > raw.len() {
            return Err(Error::Truncated {
                path: path.into(),
                what: "npy header".into(),
                expected: data_offset as u64,
                got: raw.len() as u64,
                hint: hint.into(),
            });
        }
        let text = std::str::from_utf8(&raw[start..data_offset])
            .map_err(|_| Error::invalid(path, Some("npy header".into()), "the header is not text", hint))?;
        let h = header::interpret(text.trim_end_matches(['\n', ' ', '\0'])).map_err(
            |(problem, unsupported)| {
                if unsupported {
                    Error::unsupported(
                        path,
                        Some("npy header".into()),
                        problem,
                        "store the data with plain numeric or bytes fields",
                    )
                } else {
                    Error::invalid(path, Some("npy header".into()), problem, hint)
                }
            },
        )?;
        let items = h.shape.iter().try_fold(1u64, |a, &d| a.checked_mul(d as u64));
        let expected = items.and_then(|n| n.checked_mul(h.dtype.itemsize() as u64));
        let Some(expected) = expected else {
            return Err(Error::invalid(path, Some("npy header".into()), "the shape is too large", hint));
        };
        let got = (raw.len() - data_offset) as u64;
        if got < expected {
            return Err(Error::Truncated {
                path: path.into(),
                what: format!("data of shape {} ({})", header::py_tuple(&h.shape), describe_dtype(&h.dtype)),
                expected: data_offset as u64 + expected,
                got: raw.len() as u64,
                hint: "the file was cut short (interrupted copy or write?); copy it again".into(),
            });
        }
        if got > expected {
            return Err(Error::invalid(
                path,
                Some(format!("byte {}", data_offset as u64 + expected)),
                format!(
                    "{} bytes follow the data that the header's shape {} describes",
                    got - expected,
                    header::py_tuple(&h.shape)
                ),
                "the header does not match the data: the file is corrupt or was not written by numpy",
            ));
        }
        if h.fortran_order && h.shape.len() > 1 && matches!(h.dtype, DType::Struct { .. }) {
            return Err(Error::unsupported(
                path,
                Some("npy header".into()),
                "a multi-dimensional structured array in Fortran order",
                "re-save it in C order (np.ascontiguousarray)",
            ));
        }
        Ok(Self {
            path: path.into(),
            bytes,
            data_offset,
            dtype: h.dtype,
            shape: h.shape,
            fortran_order: h.fortran_order,
        })
    }

    /// The file (or label) this came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The dtype.
    pub fn dtype(&self) -> &DType {
        &self.dtype
    }

    /// The shape (C order).
    pub fn shape(&self) -> &[usize] {
        &self.shape
    }

    /// Whether the data are stored in Fortran order (conversions return C order regardless).
    pub fn fortran_order(&self) -> bool {
        self.fortran_order
    }

    /// Number of items (∏shape): rows of a structured array, elements of a plain one.
    pub fn len(&self) -> usize {
        self.shape.iter().product()
    }

    /// Whether there are no items.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// The raw item bytes (file order).
    pub fn data(&self) -> &[u8] {
        let raw: &[u8] = match &self.bytes {
            Bytes::Mapped(m) => m,
            Bytes::Owned(v) => v,
        };
        &raw[self.data_offset..]
    }

    /// The raw bytes of item `i` (file order), if in range.
    pub fn item(&self, i: usize) -> Option<&[u8]> {
        let n = self.dtype.itemsize();
        self.data().get(i.checked_mul(n)?..(i + 1).checked_mul(n)?)
    }

    fn plain(&self, what: &str) -> Result<Scalar> {
        match &self.dtype {
            DType::Plain(s) if s.is_numeric() => Ok(*s),
            _ => Err(Error::invalid(
                &self.path,
                None,
                format!("expected a numeric array for {what}, found {}", describe_dtype(&self.dtype)),
                "check that this is the right .npy file",
            )),
        }
    }

    /// Map each element in C order.
    fn convert<T>(&self, s: Scalar, f: impl Fn(&[u8], usize) -> Result<T>) -> Result<Vec<T>> {
        let size = s.size();
        let n = self.len();
        let data = self.data();
        let mut out = Vec::with_capacity(n);
        for c in 0..n {
            let src = if self.fortran_order { fortran_index(&self.shape, c) } else { c };
            out.push(f(&data[src * size..(src + 1) * size], c)?);
        }
        Ok(out)
    }

    /// All elements as f64, C order.
    pub fn to_f64_vec(&self) -> Result<Vec<f64>> {
        let s = self.plain("f64 values")?;
        self.convert(s, |b, _| Ok(s.f64_of(b).unwrap_or(f64::NAN)))
    }

    /// All elements as f32, C order (f64 values are rounded).
    pub fn to_f32_vec(&self) -> Result<Vec<f32>> {
        let s = self.plain("f32 values")?;
        self.convert(s, |b, _| Ok(s.f64_of(b).unwrap_or(f64::NAN) as f32))
    }

    /// All elements as i64, C order; only integer (and boolean) arrays.
    pub fn to_i64_vec(&self) -> Result<Vec<i64>> {
        let s = self.plain("integers")?;
        if !s.is_integer() {
            return Err(Error::invalid(
                &self.path,
                None,
                format!("expected an integer array, found {}", s.descr()),
                "indices must be stored as integers",
            ));
        }
        self.convert(s, |b, i| match s.int_of(b) {
            Some(Int::S(v)) => Ok(v),
            Some(Int::U(v)) => i64::try_from(v).map_err(|_| {
                Error::invalid(
                    &self.path,
                    Some(format!("element {i}")),
                    format!("{v} does not fit in i64"),
                    "",
                )
            }),
            None => Ok(0),
        })
    }

    /// The named fields of a structured array (empty for a plain one).
    pub fn fields(&self) -> impl Iterator<Item = &Field> {
        self.dtype.fields()
    }

    /// Whether a field `name` exists.
    pub fn has_field(&self, name: &str) -> bool {
        self.fields().any(|f| f.name == name)
    }

    /// A view of field `name` of every row.
    pub fn field(&self, name: &str) -> Result<FieldView<'_>> {
        match self.fields().find(|f| f.name == name) {
            Some(field) => Ok(FieldView { array: self, field }),
            None => {
                let names: Vec<&str> = self.fields().map(|f| f.name.as_str()).collect();
                Err(Error::invalid(
                    &self.path,
                    Some(format!("field {name}")),
                    "no such field",
                    if names.is_empty() {
                        "this is not a structured array".to_string()
                    } else {
                        format!("the fields are: {}", names.join(", "))
                    },
                ))
            }
        }
    }

    /// Write rows `indices` (in that order) of this 1-D array to `out`, item bytes copied unchanged and
    /// the same dtype (for `filter-cs`).
    pub fn write_rows(&self, out: impl AsRef<Path>, indices: &[usize]) -> Result<()> {
        write::write_rows(self, out.as_ref(), indices)
    }
}

/// The file-order (Fortran) position of the element at C-order position `c`.
fn fortran_index(shape: &[usize], mut c: usize) -> usize {
    let mut f = 0;
    let mut stride = 1;
    // C order: the last axis is fastest. Peel indices from the last axis; Fortran strides grow from the first.
    let mut idx = vec![0usize; shape.len()];
    for (k, &d) in shape.iter().enumerate().rev() {
        idx[k] = c % d.max(1);
        c /= d.max(1);
    }
    for (k, &d) in shape.iter().enumerate() {
        f += idx[k] * stride;
        stride *= d;
    }
    f
}

/// `structured[34 fields]` or `<f4`, for messages.
fn describe_dtype(d: &DType) -> String {
    match d {
        DType::Plain(s) => s.descr(),
        DType::Struct { fields, .. } => format!("structured[{} fields]", fields.len()),
    }
}

/// One field of every row of a structured array.
#[derive(Debug, Clone, Copy)]
pub struct FieldView<'a> {
    array: &'a NpyArray,
    field: &'a Field,
}

impl<'a> FieldView<'a> {
    /// The field description.
    pub fn field(&self) -> &'a Field {
        self.field
    }

    /// Number of rows.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// Whether there are no rows.
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    /// The bytes of this field in row `row`.
    pub fn bytes_at(&self, row: usize) -> Option<&'a [u8]> {
        let item = self.array.item(row)?;
        item.get(self.field.offset..self.field.offset + self.field.size())
    }

    /// Element `elem` of row `row` as f64 (`None` out of range or for a text field).
    pub fn f64_at(&self, row: usize, elem: usize) -> Option<f64> {
        let s = self.field.scalar.size();
        self.field.scalar.f64_of(self.bytes_at(row)?.get(elem * s..(elem + 1) * s)?)
    }

    fn numeric(&self, what: &str) -> Result<Scalar> {
        let s = self.field.scalar;
        if s.is_numeric() {
            Ok(s)
        } else {
            Err(Error::invalid(
                self.array.path(),
                Some(format!("field {}", self.field.name)),
                format!("expected numbers ({what}), found {}", s.descr()),
                "",
            ))
        }
    }

    /// Every element as f64: rows × [`Field::count`] values, row-major.
    pub fn column_f64(&self) -> Result<Vec<f64>> {
        let s = self.numeric("f64")?;
        let size = s.size();
        let mut out = Vec::with_capacity(self.len() * self.field.count());
        for r in 0..self.len() {
            let b = self.bytes_at(r).unwrap_or(&[]);
            out.extend(b.chunks_exact(size).map(|e| s.f64_of(e).unwrap_or(f64::NAN)));
        }
        Ok(out)
    }

    /// Every element as u32 (integer fields whose values fit), rows × count, row-major.
    pub fn column_u32(&self) -> Result<Vec<u32>> {
        self.column_uint("u32", |v| u32::try_from(v).ok())
    }

    /// Every element as u64 (integer fields with non-negative values), rows × count, row-major.
    pub fn column_u64(&self) -> Result<Vec<u64>> {
        self.column_uint("u64", Some)
    }

    fn column_uint<T>(&self, what: &str, fit: impl Fn(u64) -> Option<T>) -> Result<Vec<T>> {
        let s = self.numeric(what)?;
        if !s.is_integer() {
            return Err(Error::invalid(
                self.array.path(),
                Some(format!("field {}", self.field.name)),
                format!("expected integers, found {}", s.descr()),
                "",
            ));
        }
        let size = s.size();
        let mut out = Vec::with_capacity(self.len() * self.field.count());
        for r in 0..self.len() {
            for e in self.bytes_at(r).unwrap_or(&[]).chunks_exact(size) {
                let v = match s.int_of(e) {
                    Some(Int::U(v)) => Some(v),
                    Some(Int::S(v)) => u64::try_from(v).ok(),
                    None => None,
                };
                let v = v.and_then(&fit).ok_or_else(|| {
                    Error::invalid(
                        self.array.path(),
                        Some(format!("row {r}, field {}", self.field.name)),
                        format!("value does not fit in {what}"),
                        "",
                    )
                })?;
                out.push(v);
            }
        }
        Ok(out)
    }

    /// The text of row `row` of a bytes (`S`) or unicode (`U`) field, trailing NULs removed.
    pub fn str_at(&self, row: usize) -> Result<String> {
        let b = self.bytes_at(row).ok_or_else(|| {
            Error::invalid(self.array.path(), Some(format!("row {row}")), "row out of range", "")
        })?;
        let bad = || {
            Error::invalid(
                self.array.path(),
                Some(format!("row {row}, field {}", self.field.name)),
                "the text is not valid UTF-8",
                "",
            )
        };
        match self.field.scalar.kind {
            ScalarKind::Bytes(_) => {
                let end = b.iter().rposition(|&c| c != 0).map_or(0, |p| p + 1);
                std::str::from_utf8(&b[..end]).map(str::to_string).map_err(|_| bad())
            }
            ScalarKind::Unicode(_) => {
                let s = self.field.scalar;
                let mut out = String::new();
                for ch in b.chunks_exact(4) {
                    match s.u32_of(ch) {
                        Some(0) | None => {}
                        Some(c) => out.push(char::from_u32(c).ok_or_else(bad)?),
                    }
                }
                Ok(out.trim_end_matches('\0').to_string())
            }
            _ => Err(Error::invalid(
                self.array.path(),
                Some(format!("field {}", self.field.name)),
                format!("expected text, found {}", self.field.scalar.descr()),
                "",
            )),
        }
    }

    /// Every row's text (bytes or unicode field), trailing NULs removed.
    pub fn column_bytes_str(&self) -> Result<Vec<String>> {
        (0..self.len()).map(|r| self.str_at(r)).collect()
    }

    /// Row `row` formatted for display: `1.5`, `[180, 180]`, `b'path'`.
    pub fn format_at(&self, row: usize) -> String {
        let s = self.field.scalar;
        if !s.is_numeric() {
            return match self.str_at(row) {
                Ok(t) => format!("{t:?}"),
                Err(_) => "<binary>".into(),
            };
        }
        let vals: Vec<String> = (0..self.field.count())
            .map(|e| match (s.is_integer(), self.bytes_at(row).and_then(|b| s.int_of(&b[e * s.size()..]))) {
                (true, Some(Int::U(v))) => v.to_string(),
                (true, Some(Int::S(v))) => v.to_string(),
                // Shortest text that reads back as the stored type.
                _ if s.kind == ScalarKind::F32 => {
                    self.f64_at(row, e).map_or("?".into(), |v| format!("{}", v as f32))
                }
                _ => self.f64_at(row, e).map_or("?".into(), |v| format!("{v}")),
            })
            .collect();
        if self.field.shape.is_empty() {
            vals.into_iter().next().unwrap_or_default()
        } else {
            format!("[{}]", vals.join(", "))
        }
    }
}

#[cfg(test)]
mod tests;
