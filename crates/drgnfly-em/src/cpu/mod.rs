//! Matrix products on the CPU that the `gemm` crate does not offer: bfloat16 operands with float32 sums
//! on AVX-512 BF16 registers or AMX tiles ([`bf16`]), blocked by tiles chosen from the CPU's caches
//! ([`tiling`]). The decoder's fused network (`drgnfly-nn`) and the pose search's base step share them.

#[cfg(target_arch = "x86_64")]
mod amx;
#[cfg(target_arch = "x86_64")]
pub mod bf16;
/// Other CPUs have no AVX-512 BF16: products stay f32.
#[cfg(not(target_arch = "x86_64"))]
pub mod bf16 {
    use super::tiling::Tiling;

    /// False: no AVX-512 BF16 here.
    pub fn available() -> bool {
        false
    }

    /// False: no AMX here.
    pub fn on_amx() -> bool {
        false
    }

    /// Never made: packing is only chosen where `available()`.
    pub enum PackedB {}

    impl PackedB {
        /// Unreachable.
        pub fn new(_: (&[f32], usize, usize), _: (usize, usize), _: &Tiling) -> PackedB {
            unreachable!("bf16 packing is only chosen where `available()`");
        }
    }

    /// Unreachable.
    pub fn matmul(
        _: &mut [f32],
        _: usize,
        _: (usize, usize, usize),
        _: (&[f32], usize, usize),
        _: (&[f32], usize, usize),
        _: bool,
        _: &Tiling,
    ) {
        unreachable!("bf16 products are only chosen where `available()`");
    }

    /// Unreachable.
    pub fn matmul_packed(
        _: &mut [f32],
        _: usize,
        _: usize,
        _: (&[f32], usize, usize),
        b: &PackedB,
        _: bool,
        _: &Tiling,
    ) {
        match *b {}
    }
}
pub mod tiling;
