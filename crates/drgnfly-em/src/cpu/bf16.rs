//! Matrix products with bf16 operands and f32 sums on AVX-512 BF16 CPUs (AMD Zen 4, Intel Sapphire Rapids
//! and later): the CPU counterpart of cryoDRGN's `--amp` (mixed-precision autocast), where the operands of
//! each product are rounded to bfloat16 and the products are summed in float32.
//!
//! `vdpbf16ps` multiplies 32 bf16 pairs and adds them into 16 f32 lanes: lane i gains
//! a₂ᵢ·b₂ᵢ + a₂ᵢ₊₁·b₂ᵢ₊₁. On Zen 4 that is twice the multiply-adds per cycle of an f32 FMA.
//!
//! # Conventions
//! - Rounding f32 → bf16 is round-to-nearest-even by the hardware (`vcvtne2ps2bf16`), which also treats
//!   subnormal inputs as zero; `vdpbf16ps` flushes subnormal results to zero. Neither reads MXCSR.
//! - The k dimension is consumed in pairs (k, k+1), one pair per 32-bit lane, k even in the low half; an
//!   odd k is padded with a zero.
//! - Packed operands (GotoBLAS/BLIS scheme): B in panels of [`NR`] columns, each panel pair-major
//!   (`panel[p·NR + j]` is the pair (2p, 2p+1) of column j); A in rows of pairs (`a[i·kcs + p]`, `kcs` the
//!   block's pair count rounded up to 16), so one 32-bit broadcast of A feeds every B register.
//! - Blocking ([`Tiling`], from the caches): `kc` pairs of k per block (a B panel of kc·NR·4 bytes, streamed
//!   from L2), `mc` rows of A per block (stays in L2). The micro-kernel holds an [`MR`] × [`NR`] tile of C
//!   in registers.
//! - A B operand used by many products (a layer's weights, once per tile) can be packed once
//!   ([`PackedB`]) and shared by every thread.
//!
//! Single-threaded; the caller runs one product per thread.
//!
//! Needs Rust 1.89 (AVX-512 intrinsics and target features were stabilised there).

use std::arch::x86_64::{
    __m512, __m512bh, __m512i, __mmask16, _mm512_add_ps, _mm512_cvtne2ps_pbh, _mm512_dpbf16_ps,
    _mm512_load_si512, _mm512_loadu_ps, _mm512_loadu_si512, _mm512_mask_storeu_ps, _mm512_maskz_loadu_ps,
    _mm512_permutex2var_epi32, _mm512_permutexvar_epi16, _mm512_set1_epi32, _mm512_setzero_ps,
    _mm512_setzero_si512, _mm512_store_si512,
};
use std::cell::RefCell;
use std::sync::OnceLock;

use super::amx;
use super::tiling::{Tiling, MICRO_ROWS, PANEL};

/// Rows of C per micro-kernel tile.
const MR: usize = MICRO_ROWS;
/// Columns of C per micro-kernel tile (a multiple of 16, the f32 lanes of a register).
const NR: usize = PANEL;
/// Registers of 16 lanes across a tile row.
const NV: usize = NR / 16;

/// The loop that runs the packed product: AVX-512 BF16 registers, or AMX tiles ([`super::amx`]), which
/// read the same packing.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kernel {
    /// `vdpbf16ps` on AVX-512 registers.
    Avx512,
    /// `tdpbf16ps` on AMX tiles.
    Amx,
}

impl Kernel {
    /// AMX where the CPU and the system allow it (and `DRGNFLY_AMX=0` is not set), else AVX-512.
    pub fn best() -> Kernel {
        if super::amx::enabled() {
            Kernel::Amx
        } else {
            Kernel::Avx512
        }
    }
}

/// Whether the products run on AMX ([`Kernel::best`]).
pub fn on_amx() -> bool {
    Kernel::best() == Kernel::Amx
}

/// Whether this CPU can run [`matmul`] (runtime detection, cached).
pub fn available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(|| {
        is_x86_feature_detected!("avx512f")
            && is_x86_feature_detected!("avx512bw")
            && is_x86_feature_detected!("avx512bf16")
    })
}

/// dst (m × n, row stride `ld`, unit column stride) = [dst +] a (m × k) · b (k × n), with a and b rounded
/// to bf16 and the products summed in f32. Element (i, j) of a is `a[i·a_rs + j·a_cs]`; same for b.
/// Blocked by `tiling`'s `kc` and `mc`. Single-threaded.
///
/// # Panics
/// If the shapes do not fit the slices (internal shapes: a mismatch is a bug), or if [`available`] is false.
pub fn matmul(
    dst: &mut [f32],
    ld: usize,
    (m, n, k): (usize, usize, usize),
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    accumulate: bool,
    tiling: &Tiling,
) {
    matmul_on(Kernel::best(), dst, ld, (m, n, k), a, b, accumulate, tiling);
}

/// [`matmul`] on a given kernel.
#[allow(clippy::too_many_arguments)]
fn matmul_on(
    kernel: Kernel,
    dst: &mut [f32],
    ld: usize,
    (m, n, k): (usize, usize, usize),
    a: (&[f32], usize, usize),
    b: (&[f32], usize, usize),
    accumulate: bool,
    tiling: &Tiling,
) {
    let b = Operand { data: b.0, x_stride: b.2, k_stride: b.1, x_len: n, k_len: k };
    product(kernel, dst, ld, (m, n, k), a, Source::Pack(b), accumulate, tiling);
}

/// [`matmul`] with a B packed beforehand (k × n, blocked by the same `tiling.kc`).
pub fn matmul_packed(
    dst: &mut [f32],
    ld: usize,
    m: usize,
    a: (&[f32], usize, usize),
    b: &PackedB,
    accumulate: bool,
    tiling: &Tiling,
) {
    matmul_packed_on(Kernel::best(), dst, ld, m, a, b, accumulate, tiling);
}

/// [`matmul_packed`] on a given kernel.
#[allow(clippy::too_many_arguments)]
fn matmul_packed_on(
    kernel: Kernel,
    dst: &mut [f32],
    ld: usize,
    m: usize,
    a: (&[f32], usize, usize),
    b: &PackedB,
    accumulate: bool,
    tiling: &Tiling,
) {
    assert_eq!(b.kc, tiling.kc, "bf16 matmul: B packed with another k blocking");
    product(kernel, dst, ld, (m, b.n, b.k), a, Source::Packed(b), accumulate, tiling);
}

/// A B operand (k × n) packed into bf16 panels, every k block after the other.
pub struct PackedB {
    k: usize,
    n: usize,
    kc: usize,
    lines: Vec<Line>,
}

impl PackedB {
    /// Pack b (k × n; element (i, j) at `b[i·rs + j·cs]`) for products blocked by `tiling.kc`.
    ///
    /// # Panics
    /// As [`matmul`].
    pub fn new(b: (&[f32], usize, usize), (k, n): (usize, usize), tiling: &Tiling) -> PackedB {
        assert!(available(), "bf16 packing called on a CPU without AVX-512 BF16");
        let kc = tiling.kc;
        let mut packed = PackedB { k, n, kc, lines: Vec::new() };
        if k == 0 || n == 0 {
            return packed;
        }
        let b = Operand { data: b.0, x_stride: b.2, k_stride: b.1, x_len: n, k_len: k };
        assert!(fits(b.data.len(), (n, b.x_stride), (k, b.k_stride)), "bf16 pack: b too short for {k} × {n}");
        let (pairs, panels) = (k.div_ceil(2), n.div_ceil(NR));
        let blocks: Vec<usize> =
            (0..pairs).step_by(kc).map(|pc| kc.min(pairs - pc).next_multiple_of(16)).collect();
        packed.lines = vec![Line::default(); blocks.iter().map(|kcs| panels * kcs * NR / 16).sum()];
        let mut at = 0;
        for (i, kcs) in blocks.into_iter().enumerate() {
            // SAFETY: the CPU has the features (asserted); the block's lines lie inside `lines`, and b's
            // indices fit its slice (asserted).
            unsafe { pack_b(b, 2 * i * kc, kcs, panels, packed.lines[at..].as_mut_ptr().cast()) };
            at += panels * kcs * NR / 16;
        }
        packed
    }
}

/// Where the product's B comes from.
#[derive(Clone, Copy)]
enum Source<'s> {
    /// Packed block by block as the product goes.
    Pack(Operand<'s>),
    Packed(&'s PackedB),
}

#[allow(clippy::too_many_arguments)]
fn product(
    kernel: Kernel,
    dst: &mut [f32],
    ld: usize,
    (m, n, k): (usize, usize, usize),
    a: (&[f32], usize, usize),
    b: Source,
    accumulate: bool,
    tiling: &Tiling,
) {
    assert!(available(), "bf16 matmul called on a CPU without AVX-512 BF16");
    assert!(kernel == Kernel::Avx512 || super::amx::supported(), "AMX product on a CPU without AMX");
    assert!(
        tiling.kc.is_multiple_of(16) && tiling.kc > 0 && tiling.mc > 0,
        "bf16 matmul: blocking {tiling:?}"
    );
    if m == 0 || n == 0 {
        return;
    }
    assert!(m == 1 || ld >= n, "bf16 matmul: row stride {ld} below the width {n}");
    assert!(fits(dst.len(), (m, ld), (n, 1)), "bf16 matmul: dst of {} for {m} × {n}, ld {ld}", dst.len());
    if k == 0 {
        if !accumulate {
            (0..m).for_each(|i| dst[i * ld..i * ld + n].fill(0.0));
        }
        return;
    }
    let a = Operand { data: a.0, x_stride: a.1, k_stride: a.2, x_len: m, k_len: k };
    assert!(fits(a.data.len(), (m, a.x_stride), (k, a.k_stride)), "bf16 matmul: a too short for {m} × {k}");
    if let Source::Pack(b) = b {
        assert!(
            fits(b.data.len(), (n, b.x_stride), (k, b.k_stride)),
            "bf16 matmul: b too short for {k} × {n}"
        );
    }
    let mut packs = PACKS.with(RefCell::take);
    // SAFETY: the CPU has the features (asserted), and every index the kernel reads or writes lies inside
    // the slices (asserted above; a packed B holds every block of its k × n); dst cannot alias a or b (it
    // is borrowed mutably).
    unsafe { drive(kernel, dst.as_mut_ptr(), ld, (m, n), a, b, accumulate, tiling, &mut packs) };
    PACKS.with(|p| p.replace(packs));
}

/// Whether `len` elements hold every index i·s₀ + j·s₁ for i < d₀, j < d₁ (both d > 0).
fn fits(len: usize, (d0, s0): (usize, usize), (d1, s1): (usize, usize)) -> bool {
    let last = (d0 - 1).checked_mul(s0).zip((d1 - 1).checked_mul(s1)).and_then(|(x, y)| x.checked_add(y));
    last.is_some_and(|last| last < len)
}

/// One operand as the packing sees it: element (x, κ) is `data[x·x_stride + κ·k_stride]`, where x is a
/// row of A or a column of B and κ runs along the summed dimension.
#[derive(Clone, Copy)]
struct Operand<'s> {
    data: &'s [f32],
    x_stride: usize,
    k_stride: usize,
    x_len: usize,
    k_len: usize,
}

/// A 64-byte aligned line of 16 packed pairs, so that every packed load is aligned.
#[derive(Clone, Copy, Default)]
#[repr(C, align(64))]
struct Line([u32; 16]);

/// Packing buffers reused from call to call on each thread.
#[derive(Default)]
struct Packs {
    a: Vec<Line>,
    b: Vec<Line>,
}

thread_local! {
    static PACKS: RefCell<Packs> = RefCell::default();
}

/// `buf` grown to at least `pairs` (a multiple of 16) packed pairs, as a pointer to the first.
fn lines(buf: &mut Vec<Line>, pairs: usize) -> *mut u32 {
    if buf.len() < pairs / 16 {
        buf.resize(pairs / 16, Line::default());
    }
    buf.as_mut_ptr().cast()
}

/// The blocked product: for each block of `kc` pairs, pack B (unless packed already); for each block of
/// `mc` rows, pack A and run the micro-kernel over every MR × NR tile (AVX-512), or the AMX kernel over
/// every 32 × 32 block.
///
/// # Safety
/// The CPU has AVX-512 F/BW/BF16, and AMX if `kernel` says so; `dst` holds m rows of n at stride `ld`; the
/// operands' indices fit.
#[allow(clippy::too_many_arguments)]
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn drive(
    kernel: Kernel,
    dst: *mut f32,
    ld: usize,
    (m, n): (usize, usize),
    a: Operand,
    b: Source,
    accumulate: bool,
    tiling: &Tiling,
    packs: &mut Packs,
) {
    let (kc, mcb) = (tiling.kc, tiling.mc);
    let pairs = a.k_len.div_ceil(2);
    let panels = n.div_ceil(NR);
    // AMX reads A in blocks of 32 rows: the rows past the last 16-row tile of the pack are read but only
    // feed rows of C that are not stored.
    let a_rows = |mc: usize| match kernel {
        Kernel::Avx512 => mc.next_multiple_of(16).max(mc.next_multiple_of(MR)),
        Kernel::Amx => mc.next_multiple_of(amx::BLOCK),
    };
    if kernel == Kernel::Amx {
        amx::configure();
    }
    for pc in (0..pairs).step_by(kc) {
        let kcp = kc.min(pairs - pc);
        let kcs = kcp.next_multiple_of(16);
        let bpack: *const u32 = match b {
            Source::Pack(b) => {
                let out = lines(&mut packs.b, panels * kcs * NR);
                pack_b(b, 2 * pc, kcs, panels, out);
                out
            }
            // Every block before this one is a full block of kc pairs.
            Source::Packed(p) => p.lines.as_ptr().cast::<u32>().add(pc * panels * NR),
        };
        // The first block overwrites dst unless the caller accumulates; later blocks add to it.
        let add = accumulate || pc > 0;
        for ic in (0..m).step_by(mcb) {
            let mc = mcb.min(m - ic);
            let apack = lines(&mut packs.a, a_rows(mc) * kcs);
            pack_a(a, ic, mc, 2 * pc, kcs, apack);
            for jp in 0..panels {
                let cols = NR.min(n - jp * NR);
                let (panel, c) = (bpack.add(jp * kcs * NR), dst.add(ic * ld + jp * NR));
                match kernel {
                    Kernel::Avx512 => {
                        for ir in (0..mc).step_by(MR) {
                            micro_kernel(
                                kcp,
                                (apack.add(ir * kcs), kcs),
                                panel,
                                (c.add(ir * ld), ld),
                                (MR.min(mc - ir), cols),
                                add,
                            );
                        }
                    }
                    Kernel::Amx => amx_panel((apack, kcs), panel, (c, ld), (mc, cols), add),
                }
            }
        }
    }
    if kernel == Kernel::Amx {
        amx::release();
    }
}

/// C (rows × cols ≤ NR, row stride `ldc`) = [C +] packed A (rows of `kcs` pairs) × one packed B panel, in
/// AMX blocks of 32 × 32 (zero pairs past k add nothing).
///
/// # Safety
/// AVX-512 F and AMX, configured on this thread; A holds round_up(rows, 32) rows of `kcs` pairs (`kcs` a
/// positive multiple of 16), the panel `kcs` rows of NR pairs; C holds the tile.
#[target_feature(enable = "avx512f")]
unsafe fn amx_panel(
    (a, kcs): (*const u32, usize),
    panel: *const u32,
    (c, ldc): (*mut f32, usize),
    (rows, cols): (usize, usize),
    add: bool,
) {
    #[repr(C, align(64))]
    struct Block([f32; amx::BLOCK * amx::BLOCK]);
    let mut out = Block([0.0; amx::BLOCK * amx::BLOCK]);
    for j0 in (0..cols).step_by(amx::BLOCK) {
        for i0 in (0..rows).step_by(amx::BLOCK) {
            amx::block(a.add(i0 * kcs), kcs, panel.add(j0), kcs / 16, out.0.as_mut_ptr());
            for r in 0..amx::BLOCK.min(rows - i0) {
                for h in 0..2 {
                    let lanes = cols.saturating_sub(j0 + 16 * h).min(16);
                    if lanes == 0 {
                        break;
                    }
                    let mask = lane_mask(lanes);
                    let sum = _mm512_loadu_ps(out.0.as_ptr().add(r * amx::BLOCK + 16 * h));
                    let at = c.add((i0 + r) * ldc + j0 + 16 * h);
                    let sum = if add { _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, at)) } else { sum };
                    _mm512_mask_storeu_ps(at, mask, sum);
                }
            }
        }
    }
}

/// C tile (rows × cols ≤ MR × NR, row stride `ldc`) = [C +] Σ_p a(·, p) ⊗ b(p, ·) over `kcp` pairs, from
/// packed A rows (`a[r·a_stride + p]`) and a packed B panel (`b[p·NR + j]`).
///
/// # Safety
/// AVX-512 BF16; A holds MR rows of `kcp` pairs, B `kcp` 64-byte aligned lines of NR; C holds the tile.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn micro_kernel(
    kcp: usize,
    (a, a_stride): (*const u32, usize),
    b: *const u32,
    (c, ldc): (*mut f32, usize),
    (rows, cols): (usize, usize),
    add: bool,
) {
    let mut acc = [[_mm512_setzero_ps(); NV]; MR];
    for p in 0..kcp {
        let mut bv: [__m512bh; NV] = [bf16_bits(_mm512_setzero_si512()); NV];
        for (v, reg) in bv.iter_mut().enumerate() {
            *reg = bf16_bits(_mm512_load_si512(b.add(p * NR + 16 * v).cast()));
        }
        for (r, acc_row) in acc.iter_mut().enumerate() {
            // One pair of A, broadcast to all 16 lanes, meets NR columns of B.
            let pair = bf16_bits(_mm512_set1_epi32(*a.add(r * a_stride + p) as i32));
            for (sum, &bq) in acc_row.iter_mut().zip(&bv) {
                *sum = _mm512_dpbf16_ps(*sum, pair, bq);
            }
        }
    }
    for (r, acc_row) in acc.iter().enumerate().take(rows) {
        for (v, &sum) in acc_row.iter().enumerate() {
            let lanes = cols.saturating_sub(16 * v).min(16);
            if lanes == 0 {
                break;
            }
            let mask = lane_mask(lanes);
            let at = c.add(r * ldc + 16 * v);
            let sum: __m512 = if add { _mm512_add_ps(sum, _mm512_maskz_loadu_ps(mask, at)) } else { sum };
            _mm512_mask_storeu_ps(at, mask, sum);
        }
    }
}

/// The first `lanes` (≤ 16) lanes.
fn lane_mask(lanes: usize) -> __mmask16 {
    ((1u32 << lanes) - 1) as __mmask16
}

/// Reinterpret 32 bf16 bit patterns as the type `vdpbf16ps` takes.
#[target_feature(enable = "avx512f")]
fn bf16_bits(v: __m512i) -> __m512bh {
    // SAFETY: both are 64 bytes of plain bits; every bit pattern is a valid value of either.
    unsafe { std::mem::transmute::<__m512i, __m512bh>(v) }
}

/// Pack `panels` panels of B (pairs from k index `k0`, `kcs` pairs each) into `out`.
///
/// # Safety
/// AVX-512 F/BW/BF16; `out` holds panels·kcs·NR pairs, 64-byte aligned; `b`'s indices fit its slice.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_b(b: Operand, k0: usize, kcs: usize, panels: usize, out: *mut u32) {
    for jp in 0..panels {
        for t in 0..NV {
            let x0 = jp * NR + 16 * t;
            for pb in 0..kcs / 16 {
                // The panel wants each register to hold one pair across 16 columns.
                let tile = if b.x_stride == 1 {
                    tile_by_pair(b, x0, k0 + 32 * pb)
                } else {
                    transpose(tile_by_x(b, x0, k0 + 32 * pb))
                };
                for (q, line) in tile.iter().enumerate() {
                    _mm512_store_si512(out.add((jp * kcs + pb * 16 + q) * NR + 16 * t).cast(), *line);
                }
            }
        }
    }
}

/// Pack rows `i0 .. i0 + mc` of A (pairs from k index `k0`, `kcs` pairs each) into `out`, in whole tiles
/// of 16 rows (rows past the operand are zero).
///
/// # Safety
/// AVX-512 F/BW/BF16; `out` holds round_up(mc, 16)·kcs pairs, 64-byte aligned; `a`'s indices fit its slice.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn pack_a(a: Operand, i0: usize, mc: usize, k0: usize, kcs: usize, out: *mut u32) {
    for g in (0..mc).step_by(16) {
        for pb in 0..kcs / 16 {
            // A wants each register to hold 16 pairs of one row.
            let tile = if a.x_stride == 1 && a.k_stride != 1 {
                transpose(tile_by_pair(a, i0 + g, k0 + 32 * pb))
            } else {
                tile_by_x(a, i0 + g, k0 + 32 * pb)
            };
            for (r, line) in tile.iter().enumerate() {
                _mm512_store_si512(out.add((g + r) * kcs + pb * 16).cast(), *line);
            }
        }
    }
}

/// The 16 × 16 pairs at x0 .. x0 + 16, k indices k0 .. k0 + 32, one register per x (lane q: pair q), as
/// bf16; zero past the operand.
///
/// # Safety
/// AVX-512 F/BW/BF16; `op`'s indices fit its slice.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn tile_by_x(op: Operand, x0: usize, k0: usize) -> [__m512i; 16] {
    let (nx, nk) = (op.x_len.saturating_sub(x0).min(16), op.k_len.saturating_sub(k0).min(32));
    let mut tile = [_mm512_setzero_si512(); 16];
    if nk == 0 {
        return tile;
    }
    for (i, line) in tile.iter_mut().enumerate().take(nx) {
        let start = (x0 + i) * op.x_stride + k0 * op.k_stride;
        let (lo, hi) = if op.k_stride == 1 {
            // Contiguous along k: the masked loads stop at the operand's end.
            let at = op.data.as_ptr().add(start);
            let lo = _mm512_maskz_loadu_ps(lane_mask(nk.min(16)), at);
            let hi = if nk > 16 {
                _mm512_maskz_loadu_ps(lane_mask(nk - 16), at.add(16))
            } else {
                _mm512_setzero_ps()
            };
            (lo, hi)
        } else {
            let mut gathered = [0f32; 32];
            for (kk, g) in gathered.iter_mut().enumerate().take(nk) {
                *g = op.data[start + kk * op.k_stride];
            }
            (_mm512_loadu_ps(gathered.as_ptr()), _mm512_loadu_ps(gathered.as_ptr().add(16)))
        };
        // Low 16 bf16 from `lo`, high 16 from `hi`: k order, so lane q is the pair (2q, 2q+1).
        *line = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(hi, lo));
    }
    tile
}

/// The same 16 × 16 pairs as [`tile_by_x`], one register per pair (lane i: x0 + i), for an operand
/// contiguous along x (`x_stride` = 1).
///
/// # Safety
/// AVX-512 F/BW/BF16; `op.x_stride` is 1 and `op`'s indices fit its slice.
#[target_feature(enable = "avx512f,avx512bw,avx512bf16")]
unsafe fn tile_by_pair(op: Operand, x0: usize, k0: usize) -> [__m512i; 16] {
    // Word i of the result takes word i/2 of the low half (k even) or of the high half (k odd).
    static INTERLEAVE: [u16; 32] = {
        let mut idx = [0u16; 32];
        let mut i = 0;
        while i < 32 {
            idx[i] = (i / 2 + 16 * (i % 2)) as u16;
            i += 1;
        }
        idx
    };
    let nx = op.x_len.saturating_sub(x0).min(16);
    let mut tile = [_mm512_setzero_si512(); 16];
    if nx == 0 {
        return tile;
    }
    let mask = lane_mask(nx);
    // Columns x0 .. x0 + nx of the operand's row kk (zero past its last row); the masked load stops at
    // its last column.
    let row = |kk: usize| match kk < op.k_len {
        true => _mm512_maskz_loadu_ps(mask, op.data.as_ptr().add(x0 + kk * op.k_stride)),
        false => _mm512_setzero_ps(),
    };
    let interleave = _mm512_loadu_si512(INTERLEAVE.as_ptr().cast());
    for (q, line) in tile.iter_mut().enumerate() {
        let (even, odd) = (row(k0 + 2 * q), row(k0 + 2 * q + 1));
        let halves = std::mem::transmute::<__m512bh, __m512i>(_mm512_cvtne2ps_pbh(odd, even));
        *line = _mm512_permutexvar_epi16(interleave, halves);
    }
    tile
}

/// Transpose a 16 × 16 block of 32-bit lanes (register i, lane j → register j, lane i) in four butterfly
/// stages: stage `h` (8, 4, 2, 1) swaps the off-diagonal h × h blocks of each 2h × 2h block.
///
/// # Safety
/// AVX-512 F.
#[target_feature(enable = "avx512f")]
unsafe fn transpose(mut t: [__m512i; 16]) -> [__m512i; 16] {
    /// For stage h: lane j of the first output is lane j of the first input if j & h = 0, else lane j − h
    /// of the second (index 16 + j − h); the second output is lane j + h of the first, or lane j of the
    /// second.
    const fn indices(h: usize) -> [[i32; 16]; 2] {
        let mut idx = [[0i32; 16]; 2];
        let mut j = 0;
        while j < 16 {
            let low = j & h == 0;
            idx[0][j] = if low { j } else { 16 + j - h } as i32;
            idx[1][j] = if low { j + h } else { 16 + j } as i32;
            j += 1;
        }
        idx
    }
    static STAGES: [[[i32; 16]; 2]; 4] = [indices(8), indices(4), indices(2), indices(1)];
    for (s, idx) in STAGES.iter().enumerate() {
        let h = 8 >> s;
        let (first, second) =
            (_mm512_loadu_si512(idx[0].as_ptr().cast()), _mm512_loadu_si512(idx[1].as_ptr().cast()));
        for i in (0..16).filter(|i| i & h == 0) {
            let (x, y) = (t[i], t[i + h]);
            t[i] = _mm512_permutex2var_epi32(x, first, y);
            t[i + h] = _mm512_permutex2var_epi32(x, second, y);
        }
    }
    t
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::{available, matmul_on, matmul_packed_on, Kernel, PackedB};
    use crate::cpu::amx;
    use crate::cpu::tiling::Tiling;

    /// Small blocks, so that modest shapes cross several k blocks and row blocks.
    const SMALL: Tiling = Tiling { kc: 64, mc: 48, rows: 256 };

    /// Whether the CPU lacks AVX-512 BF16 (then the test prints a notice and passes).
    fn skip(test: &str) -> bool {
        let skip = !available();
        if skip {
            eprintln!("{test}: skipped, this CPU has no AVX-512 BF16");
        }
        skip
    }

    /// The kernels this CPU runs: AVX-512 always (where not skipped), AMX where supported (else a notice).
    fn kernels(test: &str) -> Vec<Kernel> {
        if amx::supported() {
            vec![Kernel::Avx512, Kernel::Amx]
        } else {
            eprintln!("{test}: AMX part skipped, this CPU or system has no AMX");
            vec![Kernel::Avx512]
        }
    }

    /// f32 → bf16 → f32, round to nearest even: the reference for the hardware conversion (finite, normal
    /// inputs).
    fn round_bf16(x: f32) -> f32 {
        let bits = x.to_bits();
        f32::from_bits(bits.wrapping_add(0x7fff + ((bits >> 16) & 1)) & 0xffff_0000)
    }

    /// A product to check: a (m × k) and b (k × n) stored row-major or transposed, dst with `pad` extra
    /// columns per row, and `spread` ≥ 1 spacing every operand element (neither stride 1 when > 1).
    #[derive(Clone, Copy, Debug)]
    struct Case {
        m: usize,
        n: usize,
        k: usize,
        a_transposed: bool,
        b_transposed: bool,
        accumulate: bool,
        pad: usize,
        spread: usize,
    }

    /// Strides (rs, cs) of a rows × cols matrix stored row-major or transposed, elements `spread` apart.
    fn strides(rows: usize, cols: usize, transposed: bool, spread: usize) -> (usize, usize) {
        if transposed {
            (spread, rows * spread)
        } else {
            (cols * spread, spread)
        }
    }

    /// Σ_κ x(i, κ)·y(κ, j) in f64 over operands mapped by `f`, plus `c`.
    fn reference(
        case: Case,
        a: (&[f32], usize, usize),
        b: (&[f32], usize, usize),
        c: f64,
        f: fn(f32) -> f32,
        (i, j): (usize, usize),
    ) -> (f64, f64) {
        let (mut sum, mut abs) = (c, c.abs());
        for kk in 0..case.k {
            let p = f(a.0[i * a.1 + kk * a.2]) as f64 * f(b.0[kk * b.1 + j * b.2]) as f64;
            (sum, abs) = (sum + p, abs + p.abs());
        }
        (sum, abs)
    }

    /// Run `case` on random operands; returns (dst before, dst after, a, b) with their strides.
    #[allow(clippy::type_complexity)]
    fn run(
        kernel: Kernel,
        case: Case,
        tiling: &Tiling,
        rng: &mut ChaCha8Rng,
    ) -> (Vec<f32>, Vec<f32>, (Vec<f32>, usize, usize), (Vec<f32>, usize, usize)) {
        let Case { m, n, k, spread, .. } = case;
        let mut random = |len: usize| (0..len).map(|_| rng.random::<f32>() * 2.0 - 1.0).collect::<Vec<f32>>();
        let (a_rs, a_cs) = strides(m, k, case.a_transposed, spread);
        let (b_rs, b_cs) = strides(k, n, case.b_transposed, spread);
        let (a, b) = (random(m * k * spread), random(k * n * spread));
        let ld = n + case.pad;
        let before = random(m * ld);
        let mut dst = before.clone();
        matmul_on(
            kernel,
            &mut dst,
            ld,
            (m, n, k),
            (&a, a_rs, a_cs),
            (&b, b_rs, b_cs),
            case.accumulate,
            tiling,
        );
        (before, dst, (a, a_rs, a_cs), (b, b_rs, b_cs))
    }

    /// Worst |dst − reference| / (|c| + Σ|products|) over the tile, with the reference summed in f64 over
    /// operands mapped by `f`; panics if the padding columns changed.
    fn worst_error(
        kernel: Kernel,
        case: Case,
        tiling: &Tiling,
        rng: &mut ChaCha8Rng,
        f: fn(f32) -> f32,
    ) -> f64 {
        let (before, dst, a, b) = run(kernel, case, tiling, rng);
        let ld = case.n + case.pad;
        let mut worst = 0f64;
        for i in 0..case.m {
            for j in 0..ld {
                let (got, old) = (dst[i * ld + j], before[i * ld + j]);
                if j >= case.n {
                    assert_eq!(got, old, "{case:?}: padding ({i}, {j}) changed");
                    continue;
                }
                let c = if case.accumulate { old as f64 } else { 0.0 };
                let (want, scale) = reference(case, (&a.0, a.1, a.2), (&b.0, b.1, b.2), c, f, (i, j));
                worst = worst.max((got as f64 - want).abs() / scale.max(1e-30));
            }
        }
        worst
    }

    /// Against an f64 sum of the bf16-rounded operands: only f32 summation order differs, for every
    /// shape class (tails of the 6 × 64 tile, of the 16 × 16 packing tile, odd k, several k blocks and row
    /// blocks), all four layouts, accumulate or not, a row stride above n and strides other than 1.
    #[test]
    fn matches_f64_product_of_rounded_operands() {
        if skip("matches_f64_product_of_rounded_operands") {
            return;
        }
        const DIMS: [usize; 14] = [0, 1, 2, 3, 7, 15, 16, 17, 31, 33, 63, 65, 200, 256];
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let mut cases = Vec::new();
        for (mi, &m) in DIMS.iter().enumerate() {
            for (ni, &n) in DIMS.iter().enumerate() {
                // 3 is prime to 14, so each m meets every k.
                let (k, i) = (DIMS[(7 * mi + 3 * ni) % DIMS.len()], mi * DIMS.len() + ni);
                let (a_transposed, b_transposed) = (i % 2 == 1, (i / 2) % 2 == 1);
                cases.push(Case {
                    m,
                    n,
                    k,
                    a_transposed,
                    b_transposed,
                    accumulate: i % 3 != 0,
                    pad: i % 5,
                    spread: 1,
                });
            }
        }
        // More than one block of k pairs and of rows (with either tiling), in every layout, and a
        // general-stride one.
        for layout in 0..4 {
            let (a_transposed, b_transposed) = (layout % 2 == 1, layout / 2 == 1);
            cases.push(Case {
                m: 100,
                n: 70,
                k: 601,
                a_transposed,
                b_transposed,
                accumulate: layout < 2,
                pad: 3,
                spread: 1,
            });
        }
        cases.push(Case {
            m: 20,
            n: 35,
            k: 41,
            a_transposed: false,
            b_transposed: true,
            accumulate: true,
            pad: 1,
            spread: 3,
        });
        for kernel in kernels("matches_f64_product_of_rounded_operands") {
            for tiling in [SMALL, Tiling::for_width(256)] {
                for &case in &cases {
                    let worst = worst_error(kernel, case, &tiling, &mut rng, round_bf16);
                    assert!(
                        worst < 1e-5,
                        "{kernel:?} {case:?} {tiling:?}: relative error {worst:e} against the rounded operands"
                    );
                }
            }
        }
    }

    /// Against the exact product of the unrounded operands the error is that of bf16 (unit roundoff 2⁻⁹):
    /// well above f32's, well below garbage.
    #[test]
    fn error_against_exact_product_is_bf16_level() {
        if skip("error_against_exact_product_is_bf16_level") {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(11);
        let case = Case {
            m: 40,
            n: 50,
            k: 300,
            a_transposed: false,
            b_transposed: true,
            accumulate: false,
            pad: 0,
            spread: 1,
        };
        for kernel in kernels("error_against_exact_product_is_bf16_level") {
            let (_, dst, a, b) = run(kernel, case, &Tiling::for_width(256), &mut rng);
            let (mut err, mut norm) = (0f64, 0f64);
            for i in 0..case.m {
                for j in 0..case.n {
                    let (exact, _) = reference(case, (&a.0, a.1, a.2), (&b.0, b.1, b.2), 0.0, |x| x, (i, j));
                    (err, norm) = (err + (dst[i * case.n + j] as f64 - exact).powi(2), norm + exact.powi(2));
                }
            }
            let relative = (err / norm).sqrt();
            assert!(
                (2f64.powi(-12)..2f64.powi(-7)).contains(&relative),
                "{kernel:?}: relative error {relative:e}"
            );
        }
    }

    /// Operands are rounded to nearest even, through both packing paths (a is read along k, b across n).
    #[test]
    fn rounding_is_to_nearest_even() {
        if skip("rounding_is_to_nearest_even") {
            return;
        }
        let h = 2f32.powi(-8); // half a bf16 ulp at 1
        let cases = [
            (1.0 + h, 1.0),                            // tie: down to the even 1.0
            (1.0 + 3.0 * h, 1.0 + 4.0 * h),            // tie: up to the even 1 + 2⁻⁶
            (1.0 + h + 2f32.powi(-20), 1.0 + 2.0 * h), // above the tie: up
            (1.0 + h - 2f32.powi(-20), 1.0),           // below the tie: down
            (-(1.0 + h), -1.0),                        // sign symmetric
            (3.0 * 2f32.powi(-130), 0.0),              // subnormal input: treated as zero
            (f32::MAX, f32::INFINITY),                 // overflows to infinity
            (0.1, f32::from_bits(0x3dcd_0000)),        // 0x3dcc_cccd: low half above the tie, up
        ];
        for kernel in kernels("rounding_is_to_nearest_even") {
            for (x, want) in cases {
                for x_in_a in [true, false] {
                    let (mut dst, one, v) = ([f32::NAN], [1f32], [x]);
                    let (a, b) = if x_in_a { (&v, &one) } else { (&one, &v) };
                    matmul_on(kernel, &mut dst, 1, (1, 1, 1), (a, 1, 1), (b, 1, 1), false, &SMALL);
                    assert_eq!(
                        dst[0].to_bits(),
                        want.to_bits(),
                        "{kernel:?}: {x:e} (in a: {x_in_a}) → {:e}, want {want:e}",
                        dst[0]
                    );
                }
            }
        }
    }

    /// A B packed once gives the bits of one packed on the fly, and so does any row blocking (each element's
    /// sum runs over the same k blocks in the same order); only `kc` may change the rounding.
    #[test]
    fn prepacked_and_row_blocking_change_no_bit() {
        if skip("prepacked_and_row_blocking_change_no_bit") {
            return;
        }
        let mut rng = ChaCha8Rng::seed_from_u64(5);
        let (m, n, k) = (100, 130, 333);
        let a: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>() - 0.5).collect();
        let b: Vec<f32> = (0..k * n).map(|_| rng.random::<f32>() - 0.5).collect();
        for (kernel, b_transposed) in kernels("prepacked_and_row_blocking_change_no_bit")
            .into_iter()
            .flat_map(|kernel| [(kernel, false), (kernel, true)])
        {
            let (b_rs, b_cs) = strides(k, n, b_transposed, 1);
            let product = |tiling: &Tiling, prepacked: bool| {
                let mut dst = vec![0.25f32; m * n];
                if prepacked {
                    let packed = PackedB::new((&b, b_rs, b_cs), (k, n), tiling);
                    matmul_packed_on(kernel, &mut dst, n, m, (&a, k, 1), &packed, true, tiling);
                } else {
                    matmul_on(kernel, &mut dst, n, (m, n, k), (&a, k, 1), (&b, b_rs, b_cs), true, tiling);
                }
                dst
            };
            let reference = product(&SMALL, false);
            assert_eq!(
                product(&SMALL, true),
                reference,
                "{kernel:?} prepacked, b transposed: {b_transposed}"
            );
            let rows = Tiling { mc: 96, ..SMALL };
            assert_eq!(product(&rows, false), reference, "{kernel:?} mc 96, b transposed: {b_transposed}");
            assert_eq!(
                product(&rows, true),
                reference,
                "{kernel:?} mc 96 prepacked, b transposed: {b_transposed}"
            );
            // A single k block: different sums, the same product to f32 rounding.
            let one_block = product(&Tiling { kc: 512, ..SMALL }, true);
            let worst = one_block.iter().zip(&reference).fold(0f32, |w, (x, y)| w.max((x - y).abs()));
            assert!(worst < 1e-4, "{kernel:?}: kc 512 vs 64 differ by {worst}");
        }
    }

    /// GFLOP/s of the decoder's product layouts against the `gemm` crate's f32 product, one thread; run with
    /// `cargo test --release -p drgnfly-em bf16 -- --ignored --nocapture`.
    #[test]
    #[ignore = "benchmark"]
    fn bench_against_f32_gemm() {
        if skip("bench_against_f32_gemm") {
            return;
        }
        let t = 256;
        for h in [256, 1024] {
            // (name, (m, n, k), a's strides, b's strides) for x·Wᵀ, δ·W and δᵀ·h.
            let layouts = [
                ("forward x·Wᵀ", (t, h, h), (h, 1), (1, h)),
                ("backward δ·W", (t, h, h), (h, 1), (h, 1)),
                ("weight grad δᵀ·h", (h, h, t), (1, h), (h, 1)),
            ];
            for (name, (m, n, k), (a_rs, a_cs), (b_rs, b_cs)) in layouts {
                let mut rng = ChaCha8Rng::seed_from_u64(3);
                let a: Vec<f32> = (0..m * k).map(|_| rng.random::<f32>() - 0.5).collect();
                let b: Vec<f32> = (0..k * n).map(|_| rng.random::<f32>() - 0.5).collect();
                let mut dst = vec![0f32; m * n];
                let flop = 2.0 * (m * n * k) as f64;
                let best = |f: &mut dyn FnMut()| {
                    (0..30)
                        .map(|_| {
                            let start = Instant::now();
                            f();
                            start.elapsed().as_secs_f64()
                        })
                        .fold(f64::INFINITY, f64::min)
                };
                let tiling = Tiling::for_width(h);
                let (bf16, amx) = {
                    let mut on = |kernel| {
                        best(&mut || {
                            let (a, b) = ((&a[..], a_rs, a_cs), (&b[..], b_rs, b_cs));
                            matmul_on(kernel, &mut dst, n, (m, n, k), a, b, true, &tiling)
                        })
                    };
                    (on(Kernel::Avx512), amx::supported().then(|| on(Kernel::Amx)))
                };
                let f32 = best(&mut || {
                    // SAFETY: the strides keep every index of the m × k, k × n and m × n matrices in bounds.
                    unsafe {
                        gemm::gemm(
                            m,
                            n,
                            k,
                            dst.as_mut_ptr(),
                            1,
                            n as isize,
                            true,
                            a.as_ptr(),
                            a_cs as isize,
                            a_rs as isize,
                            b.as_ptr(),
                            b_cs as isize,
                            b_rs as isize,
                            1.0,
                            1.0,
                            false,
                            false,
                            false,
                            gemm::Parallelism::None,
                        )
                    }
                });
                let amx = amx.map_or("-".to_string(), |t| format!("{:.1}", flop / t / 1e9));
                println!(
                    "H={h:4} {name:18} {m}×{n}×{k}: bf16 {:6.1}, AMX {amx:>6}, gemm f32 {:6.1} GFLOP/s",
                    flop / bf16 / 1e9,
                    flop / f32 / 1e9,
                );
            }
        }
    }
}
