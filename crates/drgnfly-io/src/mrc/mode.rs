//! MRC data modes and their conversion to `f32`.
//!
//! Supported: 0 (int8), 1 (int16), 2 (float32), 6 (uint16), 12 (float16). Mode 0 is *signed* as MRC2014
//! and Python's mrcfile define it (cryoDRGN and old IMOD files treat it as unsigned; IMOD marks signed data
//! with bit 0 of its flags, which is ignored here as mrcfile does). Complex modes 3/4, RGB (16) and 4-bit
//! (101) are refused with [`crate::Error::Unsupported`].

use super::header::ByteOrder;

/// A supported data mode of an MRC file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum MrcMode {
    /// Mode 0: signed 8-bit integers.
    Int8,
    /// Mode 1: signed 16-bit integers.
    Int16,
    /// Mode 2: 32-bit floats.
    Float32,
    /// Mode 6: unsigned 16-bit integers.
    Uint16,
    /// Mode 12: 16-bit (IEEE half) floats.
    Float16,
}

impl MrcMode {
    /// The mode for a header's mode code, if supported.
    pub fn from_code(code: i32) -> Option<Self> {
        match code {
            0 => Some(MrcMode::Int8),
            1 => Some(MrcMode::Int16),
            2 => Some(MrcMode::Float32),
            6 => Some(MrcMode::Uint16),
            12 => Some(MrcMode::Float16),
            _ => None,
        }
    }

    /// The header's mode code.
    pub fn code(self) -> i32 {
        match self {
            MrcMode::Int8 => 0,
            MrcMode::Int16 => 1,
            MrcMode::Float32 => 2,
            MrcMode::Uint16 => 6,
            MrcMode::Float16 => 12,
        }
    }

    /// Bytes per stored value.
    pub fn bytes_per_value(self) -> usize {
        match self {
            MrcMode::Int8 => 1,
            MrcMode::Int16 | MrcMode::Uint16 | MrcMode::Float16 => 2,
            MrcMode::Float32 => 4,
        }
    }

    /// The numpy dtype name of the stored values (what mrcfile reports).
    pub fn dtype_name(self) -> &'static str {
        match self {
            MrcMode::Int8 => "int8",
            MrcMode::Int16 => "int16",
            MrcMode::Float32 => "float32",
            MrcMode::Uint16 => "uint16",
            MrcMode::Float16 => "float16",
        }
    }
}

/// "mode 4 (complex float32)": a mode code with its meaning, for messages.
pub(crate) fn describe_mode(code: i32) -> String {
    let meaning = match MrcMode::from_code(code) {
        Some(m) => m.dtype_name(),
        None => match code {
            3 => "complex int16",
            4 => "complex float32",
            16 => "RGB 3×uint8",
            101 => "4-bit integers",
            _ => "not an MRC2014 mode",
        },
    };
    format!("mode {code} ({meaning})")
}

/// Convert raw values to `f32`: `dst[k]` is value `k` of `src`.
///
/// # Panics
/// In debug builds, when `src.len() != dst.len() * mode.bytes_per_value()` (a caller bug, never file input).
pub(crate) fn decode_into(mode: MrcMode, order: ByteOrder, src: &[u8], dst: &mut [f32]) {
    debug_assert_eq!(src.len(), dst.len() * mode.bytes_per_value());
    use ByteOrder::{Big, Little};
    match (mode, order) {
        (MrcMode::Int8, _) => convert(src, dst, |[b]| f32::from(b as i8)),
        (MrcMode::Int16, Little) => convert(src, dst, |b| f32::from(i16::from_le_bytes(b))),
        (MrcMode::Int16, Big) => convert(src, dst, |b| f32::from(i16::from_be_bytes(b))),
        (MrcMode::Uint16, Little) => convert(src, dst, |b| f32::from(u16::from_le_bytes(b))),
        (MrcMode::Uint16, Big) => convert(src, dst, |b| f32::from(u16::from_be_bytes(b))),
        (MrcMode::Float16, Little) => convert(src, dst, |b| half::f16::from_le_bytes(b).to_f32()),
        (MrcMode::Float16, Big) => convert(src, dst, |b| half::f16::from_be_bytes(b).to_f32()),
        // The hot case: on a little-endian host this loop compiles to a plain copy.
        (MrcMode::Float32, Little) => convert(src, dst, f32::from_le_bytes),
        (MrcMode::Float32, Big) => convert(src, dst, f32::from_be_bytes),
    }
}

/// Apply `f` to each `N`-byte chunk of `src`, writing into `dst`.
#[inline(always)]
fn convert<const N: usize>(src: &[u8], dst: &mut [f32], f: impl Fn([u8; N]) -> f32) {
    for (d, chunk) in dst.iter_mut().zip(src.chunks_exact(N)) {
        let mut b = [0u8; N];
        b.copy_from_slice(chunk);
        *d = f(b);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn codes_round_trip_and_describe() {
        for m in [MrcMode::Int8, MrcMode::Int16, MrcMode::Float32, MrcMode::Uint16, MrcMode::Float16] {
            assert_eq!(MrcMode::from_code(m.code()), Some(m));
        }
        assert_eq!(MrcMode::from_code(4), None);
        assert_eq!(describe_mode(4), "mode 4 (complex float32)");
        assert_eq!(describe_mode(12), "mode 12 (float16)");
    }

    #[test]
    fn decodes_each_mode() {
        let mut out = [0.0f32; 2];
        decode_into(MrcMode::Int8, ByteOrder::Big, &[0xff, 0x7f], &mut out);
        assert_eq!(out, [-1.0, 127.0]);
        decode_into(MrcMode::Int16, ByteOrder::Little, &[0x00, 0x80, 0x01, 0x00], &mut out);
        assert_eq!(out, [-32768.0, 1.0]);
        decode_into(MrcMode::Uint16, ByteOrder::Big, &[0xff, 0xff, 0x00, 0x02], &mut out);
        assert_eq!(out, [65535.0, 2.0]);
        decode_into(MrcMode::Float16, ByteOrder::Little, &[0x00, 0x3c, 0x00, 0xc0], &mut out);
        assert_eq!(out, [1.0, -2.0]);
        let mut src = 1.5f32.to_be_bytes().to_vec();
        src.extend((-0.25f32).to_be_bytes());
        decode_into(MrcMode::Float32, ByteOrder::Big, &src, &mut out);
        assert_eq!(out, [1.5, -0.25]);
    }
}
