//! The inner loop of the bf16 products on Intel AMX (Sapphire Rapids and later), where `vdpbf16ps` runs at
//! the f32 FMA rate and so gains nothing over float32: `tdpbf16ps` multiplies a 16 × 32 bf16 tile by a
//! 32 × 16 one into a 16 × 16 f32 tile, 16 384 flop per instruction.
//!
//! The operands come packed exactly as for the AVX-512 kernel ([`super::bf16`]), which is the layout AMX
//! reads: a tile of A is 16 packed rows of 16 pairs (64 bytes each, at the row stride of the pack), a tile
//! of B is 16 rows of one B panel, each row one pair of k across 16 columns (AMX's "VNNI" layout). Sums are
//! float32 as in the AVX-512 kernel; only their order differs.
//!
//! Linux hands out the 8 KiB of tile state only on request (`arch_prctl(ARCH_REQ_XCOMP_PERM)`), once per
//! process; [`supported`] asks. The tile configuration is per thread: every product loads it
//! ([`configure`]) and releases the tiles at its end ([`release`]), so the kernel saves no tile state
//! across context switches between products.
//!
//! Needs no AMX support from the compiler: the instructions are written as inline assembly.

use std::arch::asm;
use std::sync::OnceLock;

/// Columns of a B panel (the AVX-512 kernel's), so the row stride of a packed panel is `PANEL` pairs.
use super::tiling::PANEL;

/// Whether this CPU has AMX-TILE and AMX-BF16 and the operating system lets this process use the tiles
/// (asked once).
pub(super) fn supported() -> bool {
    static SUPPORTED: OnceLock<bool> = OnceLock::new();
    *SUPPORTED.get_or_init(|| cpu_has_amx_bf16() && request_tile_data())
}

/// Whether the bf16 products run on AMX: where [`supported`], unless the environment sets
/// `DRGNFLY_AMX=0` (to compare with the AVX-512 kernel on the same machine).
pub(super) fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| supported() && std::env::var("DRGNFLY_AMX").map_or(true, |v| v.trim() != "0"))
}

fn cpu_has_amx_bf16() -> bool {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // CPUID leaf 7, sub-leaf 0 (where leaf 0 says it exists): EDX bit 22 is AMX-BF16, bit 24 AMX-TILE.
    if __cpuid(0).eax < 7 {
        return false;
    }
    let edx = __cpuid_count(7, 0).edx;
    edx & (1 << 22) != 0 && edx & (1 << 24) != 0
}

/// Asks Linux for the tile data state (`arch_prctl(ARCH_REQ_XCOMP_PERM, XFEATURE_XTILEDATA)`); false
/// where it refuses (an older kernel, or a hypervisor that does not pass AMX through).
#[cfg(target_os = "linux")]
fn request_tile_data() -> bool {
    const SYS_ARCH_PRCTL: i64 = 158;
    const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
    const XFEATURE_XTILEDATA: i64 = 18;
    let ret: i64;
    // SAFETY: this arch_prctl only changes the process's permission to use an extended state; it reads
    // and writes no memory of ours. The syscall instruction clobbers rcx and r11, declared.
    unsafe {
        asm!(
            "syscall",
            inlateout("rax") SYS_ARCH_PRCTL => ret,
            in("rdi") ARCH_REQ_XCOMP_PERM,
            in("rsi") XFEATURE_XTILEDATA,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret == 0
}

#[cfg(not(target_os = "linux"))]
fn request_tile_data() -> bool {
    false
}

/// Palette 1 with tiles 0–7 all 16 rows × 64 bytes (the `ldtilecfg` layout: bytes 16.. the bytes per row
/// of each tile as u16, bytes 48.. the rows of each tile).
#[repr(C, align(64))]
struct Config([u8; 64]);

static CONFIG: Config = {
    let mut c = [0u8; 64];
    c[0] = 1;
    let mut t = 0;
    while t < 8 {
        c[16 + 2 * t] = 64;
        c[48 + t] = 16;
        t += 1;
    }
    Config(c)
};

/// Loads the tile configuration on this thread.
///
/// # Safety
/// [`supported`] is true.
pub(super) unsafe fn configure() {
    // SAFETY: AMX is usable (the caller's contract); CONFIG is a valid 64-byte configuration.
    unsafe { asm!("ldtilecfg [{}]", in(reg) CONFIG.0.as_ptr(), options(nostack, readonly)) };
}

/// Releases the tiles of this thread (back to the initial state).
///
/// # Safety
/// [`supported`] is true.
pub(super) unsafe fn release() {
    // SAFETY: AMX is usable (the caller's contract).
    unsafe { asm!("tilerelease", options(nostack, nomem)) };
}

/// Rows and columns of the C block one call computes.
pub(super) const BLOCK: usize = 32;

/// `out` (a [`BLOCK`] × [`BLOCK`] f32 block, row-major) = Σ over `groups` groups of 16 pairs of k of rows
/// `a .. a + 32` of a packed A (row stride `a_stride` pairs) times columns `b .. b + 32` of a packed B
/// panel (row stride [`PANEL`] pairs), four tiles of C at a time.
///
/// # Safety
/// [`configure`] ran on this thread; `groups` ≥ 1; A holds 32 rows of `16·groups` pairs from `a`, the
/// panel `16·groups` rows of 32 pairs from `b`; `out` holds 1024 f32.
pub(super) unsafe fn block(a: *const u32, a_stride: usize, b: *const u32, groups: usize, out: *mut f32) {
    debug_assert!(groups >= 1);
    // SAFETY: the caller's contract bounds every tile load and store: A tiles are 16 rows of 64 bytes at
    // the pack's stride, B tiles 16 rows of 64 bytes at the panel's stride, and the four C tiles fill the
    // 32 × 32 block at a row stride of 128 bytes.
    unsafe {
        asm!(
            "tilezero tmm0",
            "tilezero tmm1",
            "tilezero tmm2",
            "tilezero tmm3",
            "2:",
            "tileloadd tmm4, [{a0} + {sa}]",
            "tileloadd tmm5, [{a1} + {sa}]",
            "tileloadd tmm6, [{b} + {sb}]",
            "tileloadd tmm7, [{b} + {sb} + 64]",
            "tdpbf16ps tmm0, tmm4, tmm6",
            "tdpbf16ps tmm1, tmm4, tmm7",
            "tdpbf16ps tmm2, tmm5, tmm6",
            "tdpbf16ps tmm3, tmm5, tmm7",
            "add {a0}, 64",
            "add {a1}, 64",
            "add {b}, {b_step}",
            "dec {n}",
            "jnz 2b",
            "tilestored [{c} + {sc}], tmm0",
            "tilestored [{c} + {sc} + 64], tmm1",
            "tilestored [{c} + {sc} + 2048], tmm2",
            "tilestored [{c} + {sc} + 2112], tmm3",
            a0 = inout(reg) a => _,
            a1 = inout(reg) a.add(16 * a_stride) => _,
            b = inout(reg) b => _,
            n = inout(reg) groups => _,
            sa = in(reg) 4 * a_stride,
            sb = in(reg) 4 * PANEL,
            b_step = const 16 * 4 * PANEL,
            c = in(reg) out,
            sc = in(reg) 4 * BLOCK,
            options(nostack),
        );
    }
}
