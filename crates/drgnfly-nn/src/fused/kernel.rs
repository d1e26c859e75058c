//! Forward and backward of the coordinate network (positional encoding → residual MLP) on raw f32 buffers.
//!
//! Matrix products go to the `gemm` crate (the kernels candle's CPU backend uses), called with strides so
//! that no transpose is ever materialised; the element-wise work (encoding, bias, residual, activation and
//! its derivative) is done in single row-parallel passes instead of one temporary tensor per operation.
//!
//! Row-major throughout. M = B·N points, F encoded features, H hidden width. The first layer's weight is
//! (H, F + zdim) with the z columns last, so its z part W₀ᶻ z_b is one vector per image, added like a bias
//! instead of an M × zdim product; its gradients are sums over each image's points.

use std::sync::Mutex;

use gemm::Parallelism;
use rayon::prelude::*;

/// Rows per task of the element-wise passes (large enough to amortise rayon's scheduling).
const ROWS_PER_TASK: usize = 256;

/// The positional encoding, with its constants copied out of the model (they are never trained).
#[derive(Clone, Debug)]
pub(crate) enum Encoding {
    /// (3K × 3) random directions already scaled by D/2: k_j = Σ_a c_a B_ja, features [sin k | cos k].
    Gaussian(Vec<f32>),
    /// K angular frequencies f: per axis a, [sin(c_a f) | cos(c_a f)].
    PerAxis(Vec<f32>),
}

impl Encoding {
    /// Features per point.
    pub(crate) fn width(&self) -> usize {
        match self {
            Encoding::Gaussian(b) => 2 * (b.len() / 3),
            Encoding::PerAxis(f) => 6 * f.len(),
        }
    }

    /// Encode one point `c` into `out` (length [`Self::width`]).
    fn encode(&self, c: &[f32], out: &mut [f32]) {
        match self {
            Encoding::Gaussian(b) => {
                let k3 = b.len() / 3;
                let (sin, cos) = out.split_at_mut(k3);
                for (j, dir) in b.chunks_exact(3).enumerate() {
                    let k = c[0] * dir[0] + c[1] * dir[1] + c[2] * dir[2];
                    (sin[j], cos[j]) = k.sin_cos();
                }
            }
            Encoding::PerAxis(f) => {
                let k = f.len();
                for (a, block) in out.chunks_exact_mut(2 * k).enumerate() {
                    let (sin, cos) = block.split_at_mut(k);
                    for (j, &fj) in f.iter().enumerate() {
                        (sin[j], cos[j]) = (c[a] * fj).sin_cos();
                    }
                }
            }
        }
    }
}

/// Shape of the network: encoding → Linear(F + zdim, H) → `layers` × ResidLinear(H, H) → Linear(H, out),
/// with ReLU or leaky ReLU (slope 0.01) after every layer but the last.
#[derive(Clone, Debug)]
pub(crate) struct Net {
    pub encoding: Encoding,
    pub zdim: usize,
    pub hidden: usize,
    pub layers: usize,
    pub out: usize,
    pub leaky: bool,
}

/// Large buffers kept from one training step to the next. Every step needs the same few M×H buffers, and
/// a fresh allocation of that size arrives as pages the kernel must zero on first touch (≈12% of a step
/// in a profile); reusing them costs one memset each.
#[derive(Default)]
pub(crate) struct Buffers(Mutex<Vec<Vec<f32>>>);

impl std::fmt::Debug for Buffers {
    // The buffers hold megabytes of activations: show how many there are, not their contents.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let kept = self.0.lock().map(|p| p.len()).unwrap_or(0);
        write!(f, "Buffers({kept} kept)")
    }
}

/// At most this many buffers are kept (a step uses `layers + 3`).
const MAX_POOLED: usize = 16;

impl Buffers {
    /// A zero-filled buffer of `len`, reusing a kept one that is large enough.
    fn take(&self, len: usize) -> Vec<f32> {
        let kept = self.0.lock().ok().and_then(|mut pool| {
            let i = pool.iter().position(|b| b.capacity() >= len)?;
            Some(pool.swap_remove(i))
        });
        match kept {
            Some(mut b) => {
                b.clear();
                b.resize(len, 0.0);
                b
            }
            None => vec![0.0; len],
        }
    }

    /// Keep `b` for a later [`Self::take`].
    fn give(&self, b: Vec<f32>) {
        if let Ok(mut pool) = self.0.lock() {
            if pool.len() < MAX_POOLED {
                pool.push(b);
            }
        }
    }
}

/// Activations kept from the forward pass for the backward pass.
pub(crate) struct Saved {
    /// M × F encoded features.
    features: Vec<f32>,
    /// `layers + 1` post-activation hidden states, M × H each.
    hidden: Vec<Vec<f32>>,
}

impl Saved {
    /// Hand the buffers back to `pool`.
    pub(crate) fn recycle(self, pool: &Buffers) {
        pool.give(self.features);
        self.hidden.into_iter().for_each(|h| pool.give(h));
    }
}

impl Net {
    /// Width of the first layer's input.
    fn in_width(&self) -> usize {
        self.encoding.width() + self.zdim
    }

    /// Offsets of weight and bias of layer `l` (0 = first, `layers + 1` = output) in the flat parameter
    /// vector, which holds W₀, b₀, W₁, b₁, …, W_out, b_out in order, each row-major (out, in) as PyTorch.
    fn offsets(&self, l: usize) -> (usize, usize) {
        let (h, first) = (self.hidden, self.hidden * self.in_width() + self.hidden);
        let hidden_block = h * h + h;
        let start = if l == 0 { 0 } else { first + (l - 1) * hidden_block };
        let w_len = if l == 0 {
            h * self.in_width()
        } else if l <= self.layers {
            h * h
        } else {
            self.out * h
        };
        (start, start + w_len)
    }

    /// Length of the flat parameter vector.
    pub(crate) fn param_count(&self) -> usize {
        let (_, b) = self.offsets(self.layers + 1);
        b + self.out
    }

    fn weight<'p>(&self, params: &'p [f32], l: usize) -> &'p [f32] {
        let (w, b) = self.offsets(l);
        &params[w..b]
    }

    fn bias<'p>(&self, params: &'p [f32], l: usize) -> &'p [f32] {
        let (_, b) = self.offsets(l);
        let width = if l <= self.layers { self.hidden } else { self.out };
        &params[b..b + width]
    }

    fn activate(&self, x: &mut [f32]) {
        // Branch-free (max) so it vectorises: ReLU signs are random and a branch mispredicts half the time.
        // max(v, 0.01 v) is leaky ReLU for a slope below 1.
        let slope = if self.leaky { 0.01 } else { 0.0 };
        x.par_chunks_mut(ROWS_PER_TASK * self.hidden).for_each(|chunk| {
            for v in chunk {
                *v = v.max(slope * *v);
            }
        });
    }

    /// δ ⊙ act′: the derivative read off the post-activation value (its sign is the pre-activation's).
    fn activation_grad(&self, delta: &mut [f32], post: &[f32]) {
        let slope = if self.leaky { 0.01 } else { 0.0 };
        let w = ROWS_PER_TASK * self.hidden;
        delta.par_chunks_mut(w).zip(post.par_chunks(w)).for_each(|(d, p)| {
            for (d, &p) in d.iter_mut().zip(p) {
                // A select rather than a branch, for the same reason as in `activate`.
                *d *= if p > 0.0 { 1.0 } else { slope };
            }
        });
    }

    /// Outputs (B·N × out) at `coords` (B·N × 3) for latents `z` (B × zdim); `n` points per image.
    /// Intermediate buffers come from `pool`.
    pub(crate) fn forward(
        &self,
        coords: &[f32],
        z: &[f32],
        params: &[f32],
        n: usize,
        pool: &Buffers,
    ) -> (Vec<f32>, Saved) {
        let (f, h, iw) = (self.encoding.width(), self.hidden, self.in_width());
        let m = coords.len() / 3;
        debug_assert_eq!(params.len(), self.param_count());
        debug_assert_eq!(z.len(), m.checked_div(n).map_or(z.len(), |b| b * self.zdim));

        let mut features = pool.take(m * f);
        features.par_chunks_mut(ROWS_PER_TASK * f).zip(coords.par_chunks(ROWS_PER_TASK * 3)).for_each(
            |(out, c)| {
                for (row, c) in out.chunks_exact_mut(f).zip(c.chunks_exact(3)) {
                    self.encoding.encode(c, row);
                }
            },
        );

        // Layer 0: each image's rows start from b₀ + W₀ᶻ z_b, then += features · W₀ᶠᵀ.
        let w0 = self.weight(params, 0);
        let b0 = self.bias(params, 0);
        let image_bias: Vec<f32> = z
            .chunks_exact(self.zdim.max(1))
            .flat_map(|zb| {
                (0..h).map(move |j| {
                    let wz = &w0[j * iw + f..(j + 1) * iw];
                    b0[j] + wz.iter().zip(zb).map(|(w, z)| w * z).sum::<f32>()
                })
            })
            .collect();
        let mut x = pool.take(m * h);
        x.par_chunks_mut(h).enumerate().for_each(|(p, row)| {
            let img = p.checked_div(n).unwrap_or(0);
            match image_bias.get(img * h..(img + 1) * h) {
                Some(bias) if self.zdim > 0 => row.copy_from_slice(bias),
                _ => row.copy_from_slice(b0),
            }
        });
        matmul(&mut x, h, (m, h, f), View::rows(&features, f), View::transposed(w0, iw), true);
        self.activate(&mut x);
        let mut hidden = Vec::with_capacity(self.layers + 1);
        hidden.push(x);

        // Residual layers: x ← act(x Wᵀ + b + x).
        for l in 1..=self.layers {
            let prev = &hidden[l - 1];
            let b = self.bias(params, l);
            let mut x = pool.take(m * h);
            x.copy_from_slice(prev);
            add_rows(&mut x, b);
            matmul(
                &mut x,
                h,
                (m, h, h),
                View::rows(prev, h),
                View::transposed(self.weight(params, l), h),
                true,
            );
            self.activate(&mut x);
            hidden.push(x);
        }

        let last = &hidden[self.layers];
        let mut y = vec![0f32; m * self.out];
        add_rows(&mut y, self.bias(params, self.layers + 1));
        let w_out = self.weight(params, self.layers + 1);
        matmul(&mut y, self.out, (m, self.out, h), View::rows(last, h), View::transposed(w_out, h), true);
        (y, Saved { features, hidden })
    }

    /// Gradients (flat parameters, z) of a loss whose gradient with respect to the outputs is `grad`
    /// (B·N × out), given the forward pass's `saved` activations.
    pub(crate) fn backward(
        &self,
        grad: &[f32],
        saved: &Saved,
        z: &[f32],
        params: &[f32],
        n: usize,
        pool: &Buffers,
    ) -> (Vec<f32>, Vec<f32>) {
        let (f, h, iw, out) = (self.encoding.width(), self.hidden, self.in_width(), self.out);
        let m = grad.len() / out;
        let mut dp = vec![0f32; self.param_count()];

        // Output layer: dW = Gᵀ h_L, db = Σ G, dh = G W.
        let l_out = self.layers + 1;
        let (w, b) = self.offsets(l_out);
        let last = &saved.hidden[self.layers];
        matmul(&mut dp[w..b], h, (out, h, m), View::transposed(grad, out), View::rows(last, h), false);
        column_sums(grad, out, &mut dp[b..b + out]);
        let mut delta = pool.take(m * h);
        let w_out = self.weight(params, l_out);
        matmul(&mut delta, h, (m, h, out), View::rows(grad, out), View::rows(w_out, h), false);

        // Residual layers, last to first: δ ← dh ⊙ act′; dW = δᵀ h_{l−1}; dh_{l−1} = δ W + δ.
        let mut next = pool.take(m * h);
        for l in (1..=self.layers).rev() {
            self.activation_grad(&mut delta, &saved.hidden[l]);
            let (w, b) = self.offsets(l);
            let prev = &saved.hidden[l - 1];
            matmul(&mut dp[w..b], h, (h, h, m), View::transposed(&delta, h), View::rows(prev, h), false);
            column_sums(&delta, h, &mut dp[b..b + h]);
            next.copy_from_slice(&delta);
            matmul(
                &mut next,
                h,
                (m, h, h),
                View::rows(&delta, h),
                View::rows(self.weight(params, l), h),
                true,
            );
            std::mem::swap(&mut delta, &mut next);
        }

        // First layer: dW₀ᶠ = δᵀ features (into the first F columns of each row of dW₀), db₀ = Σ δ, and
        // through the per-image sums s_b = Σ_{p∈b} δ_p: dW₀ᶻ = Σ_b s_b z_bᵀ, dz_b = W₀ᶻᵀ s_b.
        self.activation_grad(&mut delta, &saved.hidden[0]);
        let (w, b) = self.offsets(0);
        matmul(
            &mut dp[w..b],
            iw,
            (h, f, m),
            View::transposed(&delta, h),
            View::rows(&saved.features, f),
            false,
        );
        column_sums(&delta, h, &mut dp[b..b + h]);
        let mut dz = vec![0f32; z.len()];
        if self.zdim > 0 && n > 0 {
            let w0 = self.weight(params, 0);
            let sums: Vec<Vec<f32>> = delta
                .par_chunks(n * h)
                .map(|img| {
                    let mut s = vec![0f32; h];
                    column_sums(img, h, &mut s);
                    s
                })
                .collect();
            for ((s, zb), dzb) in
                sums.iter().zip(z.chunks_exact(self.zdim)).zip(dz.chunks_exact_mut(self.zdim))
            {
                for (j, &sj) in s.iter().enumerate() {
                    let row = j * iw + f;
                    for c in 0..self.zdim {
                        dp[w + row + c] += sj * zb[c];
                        dzb[c] += w0[row + c] * sj;
                    }
                }
            }
        }
        pool.give(delta);
        pool.give(next);
        (dp, dz)
    }
}

/// A read-only matrix view: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with `width` columns.
    fn rows(data: &'a [f32], width: usize) -> Self {
        Self { data, rs: width, cs: 1 }
    }

    /// The transpose of a row-major matrix with `width` columns.
    fn transposed(data: &'a [f32], width: usize) -> Self {
        Self { data, rs: 1, cs: width }
    }

    /// Whether a `rows × cols` matrix fits in the data.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// dst (m × n, row stride `ld`, unit column stride) = [dst +] a (m × k) · b (k × n).
fn matmul(dst: &mut [f32], ld: usize, (m, n, k): (usize, usize, usize), a: View, b: View, accumulate: bool) {
    if m == 0 || n == 0 {
        return;
    }
    // Internal shapes, derived from the network's own configuration: a mismatch is a bug here.
    assert!(a.fits(m, k) && b.fits(k, n) && (m - 1) * ld + n <= dst.len() && n <= ld, "fused matmul shapes");
    if k == 0 {
        if !accumulate {
            dst.iter_mut().for_each(|v| *v = 0.0);
        }
        return;
    }
    let threads = rayon::current_num_threads();
    let parallelism = if threads > 1 { Parallelism::Rayon(threads) } else { Parallelism::None };
    // SAFETY: the asserts above keep every element the kernel touches inside the three slices, and the
    // destination does not alias the (immutably borrowed) operands.
    unsafe {
        gemm::gemm(
            m,
            n,
            k,
            dst.as_mut_ptr(),
            1,
            ld as isize,
            accumulate,
            a.data.as_ptr(),
            a.cs as isize,
            a.rs as isize,
            b.data.as_ptr(),
            b.cs as isize,
            b.rs as isize,
            1.0,
            1.0,
            false,
            false,
            false,
            parallelism,
        );
    }
}

/// Add `row` to every row of `x` (row-major, width `row.len()`).
fn add_rows(x: &mut [f32], row: &[f32]) {
    let w = row.len();
    x.par_chunks_mut(ROWS_PER_TASK * w).for_each(|chunk| {
        for r in chunk.chunks_exact_mut(w) {
            r.iter_mut().zip(row).for_each(|(v, b)| *v += b);
        }
    });
}

/// out[j] = Σ_i x[i, j] for a row-major x of width `w`.
fn column_sums(x: &[f32], w: usize, out: &mut [f32]) {
    let partial = x
        .par_chunks(ROWS_PER_TASK * w)
        .map(|chunk| {
            let mut s = vec![0f32; w];
            for r in chunk.chunks_exact(w) {
                s.iter_mut().zip(r).for_each(|(s, v)| *s += v);
            }
            s
        })
        .reduce(
            || vec![0f32; w],
            |mut a, b| {
                a.iter_mut().zip(&b).for_each(|(a, b)| *a += b);
                a
            },
        );
    out.copy_from_slice(&partial);
}
