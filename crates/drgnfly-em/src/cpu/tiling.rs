//! Tile sizes of the bf16 product and of the decoder's fused network (`drgnfly-nn`), chosen at run time from
//! the caches of the CPU it runs on.
//!
//! Two levels are tiled. The bf16 product ([`super::bf16`]) blocks k into `kc` pairs and rows of A into
//! `mc` (GotoBLAS): its B panel (`kc` pairs × 64 columns) is streamed from L2 by the micro-kernel, and its A
//! block stays in L2 while every panel passes it. The network cuts the points into tiles of `rows` that one
//! thread takes through every layer.
//!
//! Measured on AMD Zen 4 (32 KiB L1d, 1 MiB L2; BENCHMARKS.md "Tiles chosen at run time"): the micro-kernel
//! keeps its peak with a B panel far beyond L1 (128 KiB from L2), while every extra k block costs a pass
//! over C, which for a weight gradient is megabytes in memory; and each tile of rows pays one pass over the
//! weight gradients' C too, so tiles shorter than ~512 rows lose time to memory at any width.
//!
//! Every tiling computes the same function: rows are independent, and a different `kc` or `rows` only
//! reorders float32 sums (tested in the kernel's tests).

use std::sync::OnceLock;

/// Columns of a packed B panel of the bf16 product (its micro-kernel's width).
pub const PANEL: usize = 64;
/// Rows of a bf16 micro-kernel tile.
pub const MICRO_ROWS: usize = 6;

/// Sizes of the caches one core sees, in bytes.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Caches {
    pub l1d: usize,
    pub l2: usize,
}

impl Caches {
    /// Sizes assumed where the CPU does not report them (common for x86 server cores of the last decade).
    const FALLBACK: Caches = Caches { l1d: 32 << 10, l2: 1 << 20 };

    /// This CPU's caches (detected once).
    pub fn detect() -> Caches {
        static CACHES: OnceLock<Caches> = OnceLock::new();
        *CACHES.get_or_init(|| detect_cpuid().unwrap_or(Self::FALLBACK))
    }
}

/// L1d and L2 from CPUID's deterministic cache parameters: leaf 4 on Intel, 0x8000_001D on AMD (same
/// layout). Works the same in containers and virtual machines that pass CPUID through.
#[cfg(target_arch = "x86_64")]
// CPUID is a safe function in recent toolchains and unsafe in older ones (within rust-version).
#[allow(unused_unsafe)]
fn detect_cpuid() -> Option<Caches> {
    use std::arch::x86_64::{__cpuid, __cpuid_count};
    // SAFETY: CPUID exists on every x86_64 CPU; leaves above the reported maximum are not queried.
    let leaf = unsafe {
        let vendor = __cpuid(0);
        let amd = vendor.ebx == u32::from_le_bytes(*b"Auth") || vendor.ebx == u32::from_le_bytes(*b"Hygo");
        if amd {
            (__cpuid(0x8000_0000).eax >= 0x8000_001D).then_some(0x8000_001D)
        } else {
            (vendor.eax >= 4).then_some(4)
        }
    }?;
    let (mut l1d, mut l2) = (None, None);
    for sub in 0..16 {
        // SAFETY: as above; the leaf is supported.
        let r = unsafe { __cpuid_count(leaf, sub) };
        let kind = r.eax & 0x1F;
        if kind == 0 {
            break;
        }
        let level = (r.eax >> 5) & 0x7;
        let ways = ((r.ebx >> 22) & 0x3FF) as usize + 1;
        let partitions = ((r.ebx >> 12) & 0x3FF) as usize + 1;
        let line = (r.ebx & 0xFFF) as usize + 1;
        let sets = r.ecx as usize + 1;
        let size = ways * partitions * line * sets;
        match (level, kind) {
            (1, 1) => l1d = Some(size),
            (2, 1 | 3) => l2 = Some(size),
            _ => {}
        }
    }
    let caches = Caches { l1d: l1d?, l2: l2? };
    // A hypervisor may report nonsense: keep only plausible sizes.
    let plausible = (4 << 10..=1 << 20).contains(&caches.l1d) && (64 << 10..=64 << 20).contains(&caches.l2);
    plausible.then_some(caches)
}

#[cfg(not(target_arch = "x86_64"))]
fn detect_cpuid() -> Option<Caches> {
    None
}

/// How the fused network cuts its work.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Tiling {
    /// k pairs per block of the bf16 product (a multiple of 16).
    pub kc: usize,
    /// Rows of A per block of the bf16 product (a multiple of 16 and of [`MICRO_ROWS`]).
    pub mc: usize,
    /// Points per tile of the network.
    pub rows: usize,
}

impl Tiling {
    /// The tiling for a network of hidden width `hidden` on this CPU.
    pub fn for_width(hidden: usize) -> Tiling {
        Self::from_caches(Caches::detect(), hidden)
    }

    /// The tiling for caches `c`:
    /// - `kc`: a B panel of at most L2/8 (512 pairs at 1 MiB), 64 to 1024 pairs;
    /// - `mc`: an A block of at most L2/4, at least one packing tile of 48 rows;
    /// - `rows`: a tile's activations (rows × hidden floats) in half of L2 where that leaves at least 256
    ///   rows, else 1024 rows (wide networks: the weight gradients' passes over memory then dominate what L2
    ///   residency would save), at most 1024.
    pub fn from_caches(c: Caches, hidden: usize) -> Tiling {
        const STEP: usize = 48; // lcm(16, MICRO_ROWS): whole packing tiles and whole micro-tiles
        let kc = (c.l2 / 8 / (4 * PANEL)).clamp(64, 1024) / 16 * 16;
        let mc = ((c.l2 / 4 / (4 * kc)) / STEP * STEP).max(STEP);
        let fit = c.l2 / 2 / (4 * hidden.max(1));
        let rows = if fit >= 256 { prev_power_of_two(fit).min(1024) } else { 1024 };
        Tiling { kc, mc, rows }
    }
}

fn prev_power_of_two(x: usize) -> usize {
    1 << (usize::BITS - 1 - x.leading_zeros())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tiles_follow_the_caches() {
        let zen4 = Caches { l1d: 32 << 10, l2: 1 << 20 };
        assert_eq!(Tiling::from_caches(zen4, 256), Tiling { kc: 512, mc: 96, rows: 512 });
        assert_eq!(Tiling::from_caches(zen4, 1024), Tiling { kc: 512, mc: 96, rows: 1024 });
        let sapphire = Caches { l1d: 48 << 10, l2: 2 << 20 };
        assert_eq!(Tiling::from_caches(sapphire, 256), Tiling { kc: 1024, mc: 96, rows: 1024 });
        let skylake_client = Caches { l1d: 32 << 10, l2: 256 << 10 };
        assert_eq!(Tiling::from_caches(skylake_client, 256), Tiling { kc: 128, mc: 96, rows: 1024 });
        assert_eq!(Tiling::from_caches(skylake_client, 128), Tiling { kc: 128, mc: 96, rows: 256 });
        for l2 in [64 << 10, 3 << 19, 5 << 20, 64 << 20] {
            for hidden in [1, 16, 256, 1000, 4096] {
                let t = Tiling::from_caches(Caches { l1d: 32 << 10, l2 }, hidden);
                assert!(t.kc.is_multiple_of(16) && (64..=1024).contains(&t.kc), "{t:?}");
                assert!(t.mc.is_multiple_of(48) && t.mc > 0, "{t:?}");
                assert!((256..=1024).contains(&t.rows), "{t:?}");
            }
        }
    }

    #[test]
    fn this_cpu_reports_plausible_caches() {
        let c = Caches::detect();
        eprintln!("caches: {c:?}, tiling at 256: {:?}", Tiling::for_width(256));
        assert!(c.l1d >= 4 << 10 && c.l2 >= 64 << 10);
    }
}
