//! numpy's pickled array layout, decoded without running numpy.
//!
//! numpy pickles an array as `_reconstruct(ndarray, (0,), b'b')` followed by `BUILD` with the state tuple
//! `(version, shape, dtype, is_fortran, raw)`, where `dtype` is `numpy.dtype('f4', False, True)` plus its
//! own `BUILD` state `(3, byteorder, subarray, names, fields, elsize, alignment, flags)`. With protocol 5
//! it uses `_frombuffer(raw, dtype, shape, order)` instead, and numpy scalars are `scalar(dtype, raw)`.
//! `raw` holds the elements in memory order: C order unless the array was Fortran-ordered, in the byte
//! order of the dtype (`<` little, `>` big, `|` single-byte, `=` native).

use super::value::{fmt_shape, ArrayData, DType, NdArray};

/// A numpy dtype object as the pickle builds it: element type and byte order.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) struct Dtype {
    pub dtype: DType,
    pub big_endian: bool,
}

/// Interpret the first argument of `numpy.dtype(descr, align, copy)`: a type string such as `"f4"`,
/// possibly with a byte-order prefix. `Err` carries what is unsupported, for the message.
pub(super) fn parse_descr(descr: &str) -> Result<Dtype, String> {
    let (order, code) = match descr.as_bytes().first() {
        Some(b'<' | b'>' | b'|' | b'=') => descr.split_at(1),
        _ => ("", descr),
    };
    let dtype = match code {
        "f4" => DType::F32,
        "f8" => DType::F64,
        "i8" => DType::I64,
        "i4" => DType::I32,
        "u1" => DType::U8,
        "b1" => DType::Bool,
        _ => return Err(format!("numpy dtype `{descr}` ({})", explain(code))),
    };
    Ok(Dtype { dtype, big_endian: order == ">" })
}

/// A readable name for a dtype code drgnfly does not read.
fn explain(code: &str) -> &'static str {
    match code.as_bytes().first() {
        Some(b'f') => "a floating-point width other than 32 or 64 bits",
        Some(b'i' | b'u') => "an integer width drgnfly does not read",
        Some(b'c') => "complex numbers",
        Some(b'O') => "Python objects",
        Some(b'U' | b'S' | b'a') => "strings",
        Some(b'V') => "a structured or void type",
        Some(b'M' | b'm') => "dates or time spans",
        _ => "unknown type code",
    }
}

impl Dtype {
    /// Apply the byte-order character of the dtype's `BUILD` state.
    pub fn set_byte_order(&mut self, order: &str) -> Result<(), String> {
        self.big_endian = match order {
            "<" => false,
            ">" => true,
            "|" => false,
            "=" => cfg!(target_endian = "big"),
            _ => return Err(format!("unknown numpy byte order `{order}`")),
        };
        Ok(())
    }
}

/// Build an array of `shape` from the raw element bytes `raw`, converting Fortran order to C order.
///
/// The declared size (product of `shape` × itemsize) must equal `raw.len()`; this is checked before any
/// allocation, so a forged shape cannot make the reader allocate more than the file holds. `Err` is the
/// problem, for the message.
pub(super) fn decode(dtype: Dtype, shape: &[usize], fortran: bool, raw: &[u8]) -> Result<NdArray, String> {
    let count = shape.iter().try_fold(1usize, |acc, &n| acc.checked_mul(n));
    let nbytes = count.and_then(|c| c.checked_mul(dtype.dtype.itemsize()));
    if nbytes != Some(raw.len()) {
        return Err(format!(
            "a {} array of shape {} needs {} bytes but the pickle holds {} bytes of data",
            dtype.dtype,
            fmt_shape(shape),
            nbytes.map_or_else(|| "more than 2^64".to_string(), |n| n.to_string()),
            raw.len()
        ));
    }
    let big = dtype.big_endian;
    let data = match dtype.dtype {
        DType::F32 => {
            ArrayData::F32(elements(raw, if big { f32::from_be_bytes } else { f32::from_le_bytes }))
        }
        DType::F64 => {
            ArrayData::F64(elements(raw, if big { f64::from_be_bytes } else { f64::from_le_bytes }))
        }
        DType::I64 => {
            ArrayData::I64(elements(raw, if big { i64::from_be_bytes } else { i64::from_le_bytes }))
        }
        DType::I32 => {
            ArrayData::I32(elements(raw, if big { i32::from_be_bytes } else { i32::from_le_bytes }))
        }
        DType::U8 => ArrayData::U8(raw.to_vec()),
        // numpy reads any nonzero byte as True.
        DType::Bool => ArrayData::Bool(raw.iter().map(|&b| b != 0).collect()),
    };
    let data = if fortran && shape.len() > 1 { to_c_order(data, shape) } else { data };
    Ok(NdArray::new(shape.to_vec(), data))
}

/// Decode fixed-width elements; `raw.len()` is a multiple of `N` (checked by the caller).
fn elements<T, const N: usize>(raw: &[u8], from_bytes: fn([u8; N]) -> T) -> Vec<T> {
    raw.chunks_exact(N)
        .map(|c| {
            let mut b = [0u8; N];
            b.copy_from_slice(c);
            from_bytes(b)
        })
        .collect()
}

fn to_c_order(data: ArrayData, shape: &[usize]) -> ArrayData {
    match data {
        ArrayData::F32(v) => ArrayData::F32(fortran_to_c(&v, shape)),
        ArrayData::F64(v) => ArrayData::F64(fortran_to_c(&v, shape)),
        ArrayData::I64(v) => ArrayData::I64(fortran_to_c(&v, shape)),
        ArrayData::I32(v) => ArrayData::I32(fortran_to_c(&v, shape)),
        ArrayData::U8(v) => ArrayData::U8(fortran_to_c(&v, shape)),
        ArrayData::Bool(v) => ArrayData::Bool(fortran_to_c(&v, shape)),
    }
}

/// Reorder column-major elements to row-major. Element (i₀, …, iₖ) sits at Σ i_d·s_d in `src`, with
/// Fortran strides s₀ = 1, s_d = s_{d−1}·shape_{d−1}; the C-order walk advances the last axis fastest.
///
/// `src.len()` must be the product of `shape` (the caller checked it).
fn fortran_to_c<T: Copy>(src: &[T], shape: &[usize]) -> Vec<T> {
    let ndim = shape.len();
    let mut stride = vec![1usize; ndim];
    for d in 1..ndim {
        stride[d] = stride[d - 1] * shape[d - 1];
    }
    let mut index = vec![0usize; ndim];
    let mut offset = 0usize;
    let mut out = Vec::with_capacity(src.len());
    for _ in 0..src.len() {
        out.push(src[offset]);
        for d in (0..ndim).rev() {
            index[d] += 1;
            offset += stride[d];
            if index[d] < shape[d] {
                break;
            }
            offset -= stride[d] * shape[d];
            index[d] = 0;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn descr_with_and_without_byte_order() {
        assert_eq!(parse_descr("f4"), Ok(Dtype { dtype: DType::F32, big_endian: false }));
        assert_eq!(parse_descr(">i8"), Ok(Dtype { dtype: DType::I64, big_endian: true }));
        assert_eq!(parse_descr("|b1").map(|d| d.dtype), Ok(DType::Bool));
        let err = parse_descr("c8").unwrap_err();
        assert!(err.contains("complex"), "{err}");
        assert!(parse_descr("O8").unwrap_err().contains("Python objects"));
    }

    #[test]
    fn fortran_order_becomes_c_order() {
        // numpy: np.asfortranarray(np.arange(6).reshape(2, 3)) stores 0 3 1 4 2 5 in memory.
        assert_eq!(fortran_to_c(&[0, 3, 1, 4, 2, 5], &[2, 3]), vec![0, 1, 2, 3, 4, 5]);
        // np.arange(24).reshape(2, 3, 4) in Fortran memory order is arr.ravel(order='F').
        let c: Vec<i32> = (0..24).collect();
        let mut f = vec![0; 24];
        for i in 0..2 {
            for j in 0..3 {
                for k in 0..4 {
                    f[i + 2 * j + 6 * k] = c[12 * i + 4 * j + k];
                }
            }
        }
        assert_eq!(fortran_to_c(&f, &[2, 3, 4]), c);
    }

    #[test]
    fn size_is_checked_before_decoding() {
        let d = Dtype { dtype: DType::F32, big_endian: false };
        let err = decode(d, &[2, 3], false, &[0u8; 20]).unwrap_err();
        assert!(err.contains("needs 24 bytes") && err.contains("holds 20"), "{err}");
        let huge = decode(d, &[usize::MAX, 2], false, &[]).unwrap_err();
        assert!(huge.contains("more than 2^64"), "{huge}");
        let be = Dtype { dtype: DType::F32, big_endian: true };
        let a = decode(be, &[1], false, &1.5f32.to_be_bytes()).unwrap();
        assert_eq!(a.data, ArrayData::F32(vec![1.5]));
    }
}
