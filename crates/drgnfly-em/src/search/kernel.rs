//! The per-image scoring kernel: translated images × slices as one matrix product.
//!
//! For one image at one band limit (mask of `M` points) and a set of `S` shifts, the translated images
//! `T[s, j] = (C[s, j]·y[j] + Sn[s, j]·y[M−1−j])·ctf[j]` (`C`, `Sn` = cos, sin of `2π k_j·t_s`, tabulated once
//! per level) are multiplied by the slices `Ŷ (R × M)`: `dots = T·Ŷᵀ (S × R)`, with `gemm`. CTF multiplies
//! the image side (`⟨y_t, c·ŷ⟩ = ⟨c·y_t, ŷ⟩`), so one slice table serves every image. (Computed as
//! `Ŷ·Tᵀ (R × S)`, rotation blocks as rows.) The per-rotation
//! terms (`Σ c·ŷ`, `Σ (c·ŷ)²`) come from [`slice_stats`]. Every loss is `f(dot) + g(rotation)` with `f`
//! decreasing, so the best shift of a rotation is the one with the largest dot.

use gemm::Parallelism;

use super::SearchLoss;
use crate::cpu::bf16;
use crate::cpu::tiling::Tiling;
use crate::grid::shift::Shift;
use crate::lattice::Lattice;

/// Rotations per `gemm` block: bounds the `ROT_BLOCK × S` dot buffer.
pub(super) const ROT_BLOCK: usize = 512;

/// One band limit with its shift table.
#[derive(Debug, Clone)]
pub(super) struct Level {
    /// Circular mask of radius `l` (DC dropped), centrosymmetric lattice indices.
    pub mask: Vec<usize>,
    /// `(M, 2)` frequencies of the mask points, cycles/px.
    pub freqs: Vec<f32>,
    /// The `S` shift offsets tabulated at this level.
    pub shifts: Vec<Shift>,
    /// `(S, M)` cos and sin of `2π k·t`.
    pub cos: Vec<f32>,
    pub sin: Vec<f32>,
}

impl Level {
    pub fn new(lattice: &Lattice, l: usize, shifts: Vec<Shift>) -> Self {
        let mask = lattice.circular_mask(l as f32, true);
        let f = lattice.freqs2d();
        let freqs: Vec<f32> = mask.iter().flat_map(|&i| [f[2 * i], f[2 * i + 1]]).collect();
        let m = mask.len();
        let mut cos = vec![0.0f32; shifts.len() * m];
        let mut sin = vec![0.0f32; shifts.len() * m];
        for (s, &t) in shifts.iter().enumerate() {
            phases(&freqs, t, &mut cos[s * m..(s + 1) * m], &mut sin[s * m..(s + 1) * m]);
        }
        Self { mask, freqs, shifts, cos, sin }
    }

    pub fn m(&self) -> usize {
        self.mask.len()
    }

    /// Bytes of the tables.
    pub fn bytes(&self) -> usize {
        4 * (2 * self.cos.len() + 3 * self.mask.len())
    }
}

fn phases(freqs: &[f32], [tx, ty]: Shift, cos: &mut [f32], sin: &mut [f32]) {
    for ((c, s), k) in cos.iter_mut().zip(sin.iter_mut()).zip(freqs.chunks_exact(2)) {
        let (sv, cv) = (std::f32::consts::TAU * (k[0] * tx + k[1] * ty)).sin_cos();
        *c = cv;
        *s = sv;
    }
}

/// Per-thread buffers.
#[derive(Debug, Default)]
pub(super) struct Scratch {
    pub y: Vec<f32>,
    pub yc: Vec<f32>,
    pub yr: Vec<f32>,
    pub ctf: Vec<f32>,
    pub t: Vec<f32>,
    pub dots: Vec<f32>,
    pub stats: Vec<[f32; 2]>,
    pub best: Vec<(f32, u32)>,
}

/// `out[j] = v[mask[j]]`.
pub(super) fn gather(v: &[f32], mask: &[usize], out: &mut Vec<f32>) {
    out.clear();
    out.extend(mask.iter().map(|&i| v[i]));
}

/// `yc = y` translated by `t` (masked, centrosymmetric: the −k partner of `j` is `M − 1 − j`).
pub(super) fn translate_one(freqs: &[f32], y: &[f32], t: Shift, yc: &mut Vec<f32>) {
    yc.clear();
    yc.extend(y.iter().zip(y.iter().rev()).zip(freqs.chunks_exact(2)).map(|((&a, &b), k)| {
        let (s, c) = (std::f32::consts::TAU * (k[0] * t[0] + k[1] * t[1])).sin_cos();
        c * a + s * b
    }));
}

/// `T[s, ·]` for every shift of `level` (see the module docs), into `t` (`S × M`).
pub(super) fn translate_set(
    level: &Level,
    y: &[f32],
    ctf: Option<&[f32]>,
    yr: &mut Vec<f32>,
    t: &mut Vec<f32>,
) {
    let m = level.m();
    yr.clear();
    yr.extend(y.iter().rev());
    t.resize(level.shifts.len() * m, 0.0);
    for ((row, c), s) in t.chunks_exact_mut(m).zip(level.cos.chunks_exact(m)).zip(level.sin.chunks_exact(m)) {
        match ctf {
            None => {
                for ((((o, &c), &s), &a), &b) in row.iter_mut().zip(c).zip(s).zip(y).zip(yr.iter()) {
                    *o = c * a + s * b;
                }
            }
            Some(w) => {
                for (((((o, &c), &s), &a), &b), &w) in
                    row.iter_mut().zip(c).zip(s).zip(y).zip(yr.iter()).zip(w)
                {
                    *o = (c * a + s * b) * w;
                }
            }
        }
    }
}

/// `(Σ c·ŷ, Σ (c·ŷ)²)` per slice of `slices` (`R × M`) into `out`.
pub(super) fn slice_stats(slices: &[f32], m: usize, ctf: Option<&[f32]>, out: &mut Vec<[f32; 2]>) {
    out.clear();
    if m == 0 {
        out.resize(slices.len(), [0.0; 2]);
        return;
    }
    out.extend(slices.chunks_exact(m).map(|s| {
        // Eight partial sums: vectorizes, and sums in f32 stay accurate over thousands of points.
        let (mut a, mut b) = ([0.0f32; 8], [0.0f32; 8]);
        let mut acc = |j: usize, v: f32| {
            a[j % 8] += v;
            b[j % 8] += v * v;
        };
        match ctf {
            None => s.iter().enumerate().for_each(|(j, &v)| acc(j, v)),
            Some(w) => s.iter().zip(w).enumerate().for_each(|(j, (&v, &w))| acc(j, v * w)),
        }
        [a.iter().sum(), b.iter().sum()]
    }));
}

/// The loss of a dot product given the slice's stats.
#[derive(Debug, Clone, Copy)]
pub(super) struct LossFn {
    pub kind: SearchLoss,
    /// `‖y‖²` on the mask (translation does not change it on a centrosymmetric mask).
    pub y2: f32,
    pub m: usize,
}

impl LossFn {
    #[inline]
    pub fn eval(&self, dot: f32, [s1, s2]: [f32; 2]) -> f32 {
        match self.kind {
            SearchLoss::Msf => -dot + 0.5 * s2,
            SearchLoss::Mse => self.y2 - 2.0 * dot + s2,
            SearchLoss::Cor => {
                // cryoDRGN: −⟨y, ŷ⟩ / std(ŷ), torch's unbiased std over the mask points.
                let m = self.m as f32;
                let var = (s2 - s1 * s1 / m) / (m - 1.0).max(1.0);
                if var > 0.0 {
                    -dot / var.sqrt()
                } else {
                    f32::INFINITY
                }
            }
        }
    }
}

/// For every slice `r` of `slices` (`R × M`): the best shift index `s` and its loss, into `best`.
/// `t` is the translated set (`S × M`), `stats` the slices' stats; with `bf16` (its blocking), the dot
/// products have bfloat16 operands and float32 sums.
pub(super) fn score(
    t: &[f32],
    m: usize,
    slices: &[f32],
    stats: &[[f32; 2]],
    loss: LossFn,
    (dots, best): (&mut Vec<f32>, &mut Vec<(f32, u32)>),
    bf16: Option<&Tiling>,
) {
    let n_s = t.len().checked_div(m).unwrap_or(0);
    let n_r = stats.len();
    best.clear();
    if n_s == 0 || m == 0 {
        best.extend(stats.iter().map(|&st| (loss.eval(0.0, st), 0)));
        return;
    }
    debug_assert_eq!(slices.len(), n_r * m);
    for r0 in (0..n_r).step_by(ROT_BLOCK) {
        let rb = ROT_BLOCK.min(n_r - r0);
        dots.resize(rb * n_s, 0.0);
        // Rotations as the rows: blocks of 512 fill gemm's 16-row kernels exactly, where shifts as rows
        // (196 = 3·64 + 4) spent an eighth of the time in a mostly empty remainder kernel.
        let block = &slices[r0 * m..(r0 + rb) * m];
        match bf16 {
            // t read as the k × n operand: element (j, s) at t[s·M + j].
            Some(tiling) => bf16::matmul(dots, n_s, (rb, n_s, m), (block, m, 1), (t, 1, m), false, tiling),
            None => matmul_abt(block, t, (rb, n_s, m), dots),
        }
        best.extend(dots.chunks_exact(n_s).zip(&stats[r0..r0 + rb]).map(|(row, &st)| {
            let (mut bd, mut bs) = (row[0], 0);
            for (s, &v) in row.iter().enumerate().skip(1) {
                if v > bd {
                    bd = v;
                    bs = s;
                }
            }
            (loss.eval(bd, st), bs as u32)
        }));
    }
}

/// `dst (m × n) = a (m × k) · bᵀ` with `b` row-major `n × k`, all contiguous.
fn matmul_abt(a: &[f32], b: &[f32], (m, n, k): (usize, usize, usize), dst: &mut [f32]) {
    // Internal shapes, derived by the callers from validated inputs: a mismatch is a bug here.
    assert!(a.len() >= m * k && b.len() >= n * k && dst.len() >= m * n, "search matmul shapes");
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        dst[..m * n].fill(0.0);
        return;
    }
    // SAFETY: the assert above keeps every element gemm touches inside the three slices
    // (a: (i, kk) at i·k + kk; b as k × n: (kk, j) at j·k + kk; dst: (i, j) at i·n + j), and dst does
    // not alias the immutably borrowed operands.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            n as isize,
            false,
            a.as_ptr(),
            1,
            k as isize,
            b.as_ptr(),
            k as isize,
            1,
            0.0,
            1.0,
            false,
            false,
            false,
            // Images run in parallel; each product stays on its thread.
            Parallelism::None,
        );
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn matmul_abt_matches_naive() {
        let (m, n, k) = (5, 7, 13);
        let a: Vec<f32> = (0..m * k).map(|i| ((i * 7) % 11) as f32 - 5.0).collect();
        let b: Vec<f32> = (0..n * k).map(|i| ((i * 5) % 13) as f32 - 6.0).collect();
        let mut d = vec![f32::NAN; m * n];
        matmul_abt(&a, &b, (m, n, k), &mut d);
        for i in 0..m {
            for j in 0..n {
                let want: f32 = (0..k).map(|kk| a[i * k + kk] * b[j * k + kk]).sum();
                assert_eq!(d[i * n + j], want, "({i}, {j})");
            }
        }
    }
}
