//! Forward and backward of the coordinate network (positional encoding → residual MLP) on raw f32 buffers.
//!
//! Matrix products go to the `gemm` crate (the kernels candle's CPU backend uses), or with mixed precision
//! to the bf16 kernel of [`super::bf16`], called with strides so that no transpose is ever materialised; the element-wise work (encoding, bias, residual, activation and
//! its derivative) is done in place instead of one temporary tensor per operation.
//!
//! The rows are cut into tiles (their length chosen from the CPU's caches, [`Tiling`]). A thread takes a
//! tile through every layer, so the element-wise passes read cache rather than memory, and threads meet once
//! per forward and once per backward instead of at every product (at 2 threads those joins cost more than
//! the element-wise work itself). With bf16 products, the weights are packed once per pass ([`PackedB`])
//! and shared by every tile, rather than repacked by each.
//!
//! Row-major throughout. M = B·N points, F encoded features, H hidden width. The first layer's weight is
//! (H, F + zdim) with the z columns last, so its z part W₀ᶻ z_b is one vector per image, added like a bias
//! instead of an M × zdim product; its gradients are sums over each image's points.

use std::sync::Mutex;

use gemm::Parallelism;

use super::bf16::PackedB;
use super::sincos::sin_cos_in_place;
use super::tiling::Tiling;
use rayon::prelude::*;

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
                for (k, dir) in sin.iter_mut().zip(b.chunks_exact(3)) {
                    *k = c[0] * dir[0] + c[1] * dir[1] + c[2] * dir[2];
                }
                sin_cos_in_place(sin, cos);
            }
            Encoding::PerAxis(f) => {
                let k = f.len();
                for (a, block) in out.chunks_exact_mut(2 * k).enumerate() {
                    let (sin, cos) = block.split_at_mut(k);
                    sin.iter_mut().zip(f).for_each(|(s, &fj)| *s = c[a] * fj);
                    sin_cos_in_place(sin, cos);
                }
            }
        }
    }

    /// The gradient of one point's coordinates from that of its features `gfeat`, given the features
    /// `feat` themselves: d sin k = cos k dk and d cos k = −sin k dk, with k linear in the coordinates.
    fn coords_grad(&self, feat: &[f32], gfeat: &[f32]) -> [f32; 3] {
        let dk = |s: &[f32], c: &[f32], gs: &[f32], gc: &[f32], j: usize| gs[j] * c[j] - gc[j] * s[j];
        let mut out = [0f32; 3];
        match self {
            Encoding::Gaussian(b) => {
                let k3 = b.len() / 3;
                let (s, c) = feat.split_at(k3);
                let (gs, gc) = gfeat.split_at(k3);
                for (j, dir) in b.chunks_exact(3).enumerate() {
                    let d = dk(s, c, gs, gc, j);
                    out.iter_mut().zip(dir).for_each(|(o, &w)| *o += d * w);
                }
            }
            Encoding::PerAxis(f) => {
                let k = f.len();
                for (a, (block, gblock)) in
                    feat.chunks_exact(2 * k).zip(gfeat.chunks_exact(2 * k)).enumerate()
                {
                    let ((s, c), (gs, gc)) = (block.split_at(k), gblock.split_at(k));
                    out[a] = f.iter().enumerate().map(|(j, &fj)| dk(s, c, gs, gc, j) * fj).sum();
                }
            }
        }
        out
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
    /// Matrix products on bf16 operands with f32 sums ([`super::bf16`]); only set where the CPU has them.
    pub bf16: bool,
    /// Tile sizes ([`Tiling::for_width`] of `hidden` in use; any tiling gives the same function).
    pub tiling: Tiling,
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

/// At most this many buffers are kept (a step uses `layers + 2`, plus one gradient buffer per thread).
const MAX_POOLED: usize = 16;

impl Buffers {
    /// A kept buffer of capacity ≥ `len`, if any.
    fn kept(&self, len: usize) -> Option<Vec<f32>> {
        let mut pool = self.0.lock().ok()?;
        let i = pool.iter().position(|b| b.capacity() >= len)?;
        Some(pool.swap_remove(i))
    }

    /// A zero-filled buffer of `len`, reusing a kept one that is large enough.
    fn take(&self, len: usize) -> Vec<f32> {
        let mut b = self.kept(len).unwrap_or_default();
        b.clear();
        b.resize(len, 0.0);
        b
    }

    /// A buffer of `len` whose contents are stale: for callers that overwrite every element.
    fn take_overwritten(&self, len: usize) -> Vec<f32> {
        let mut b = self.kept(len).unwrap_or_default();
        // Only the part beyond the old length is filled; the rest keeps the last step's values.
        b.truncate(len);
        b.resize(len, 0.0);
        b
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

    /// act(x) in place: branch-free (max) so it vectorises, since ReLU signs are random and a branch would
    /// mispredict half the time. max(v, 0.01 v) is leaky ReLU for a slope below 1.
    fn activate(&self, x: &mut [f32]) {
        let slope = if self.leaky { 0.01 } else { 0.0 };
        x.iter_mut().for_each(|v| *v = v.max(slope * *v));
    }

    /// δ ⊙ act′: the derivative read off the post-activation value (its sign is the pre-activation's).
    fn activation_grad(&self, delta: &mut [f32], post: &[f32]) {
        let slope = if self.leaky { 0.01 } else { 0.0 };
        // A select rather than a branch, for the same reason as in `activate`.
        delta.iter_mut().zip(post).for_each(|(d, &p)| *d *= if p > 0.0 { 1.0 } else { slope });
    }

    /// Whether an m × n × k product runs in bf16. The output layer's products (a side of 2) are
    /// memory-bound: rounding their operands gains nothing.
    fn in_bf16(&self, (m, n, k): (usize, usize, usize)) -> bool {
        self.bf16 && m.min(n).min(k) >= 16
    }

    /// dst (m × n, row stride `ld`) = [dst +] a · b, in bf16 where chosen and worth it; `packed` is b
    /// packed beforehand, if it was.
    #[allow(clippy::too_many_arguments)]
    fn product(
        &self,
        dst: &mut [f32],
        ld: usize,
        shape: (usize, usize, usize),
        a: View,
        b: View,
        packed: Option<&PackedB>,
        accumulate: bool,
    ) {
        let (m, tiling) = (shape.0, &self.tiling);
        let a3 = (a.data, a.rs, a.cs);
        match packed {
            _ if !self.in_bf16(shape) => matmul(dst, ld, shape, a, b, accumulate),
            Some(p) => super::bf16::matmul_packed(dst, ld, m, a3, p, accumulate, tiling),
            None => super::bf16::matmul(dst, ld, shape, a3, (b.data, b.rs, b.cs), accumulate, tiling),
        }
    }

    /// b (k × n) packed for the bf16 products, when products with it run in bf16 (for tiles of full length).
    fn pack(&self, b: View, (k, n): (usize, usize)) -> Option<PackedB> {
        self.in_bf16((self.tiling.rows, n, k))
            .then(|| PackedB::new((b.data, b.rs, b.cs), (k, n), &self.tiling))
    }

    /// The B operands of the forward pass's hidden products, W_lᵀ for l = 0 (its F feature columns) to
    /// `layers`, packed once per pass (in parallel, one layer each).
    fn pack_forward(&self, params: &[f32]) -> Vec<Option<PackedB>> {
        let (f, h, iw) = (self.encoding.width(), self.hidden, self.in_width());
        (0..=self.layers)
            .into_par_iter()
            .map(|l| match l {
                0 => self.pack(View::transposed(self.weight(params, 0), iw), (f, h)),
                _ => self.pack(View::transposed(self.weight(params, l), h), (h, h)),
            })
            .collect()
    }

    /// The B operands of the backward pass's δ products: W₀ᶠ (for the coordinates' gradient, only when
    /// asked for) and W_l for l = 1 to `layers`.
    fn pack_backward(&self, params: &[f32], want_coords: bool) -> Vec<Option<PackedB>> {
        let (f, h, iw) = (self.encoding.width(), self.hidden, self.in_width());
        (0..=self.layers)
            .into_par_iter()
            .map(|l| match l {
                0 if !want_coords => None,
                0 => self.pack(View::rows(self.weight(params, 0), iw), (h, f)),
                _ => self.pack(View::rows(self.weight(params, l), h), (h, h)),
            })
            .collect()
    }

    /// b₀ + W₀ᶻ z_b for each image b (B × H), the first layer's per-image bias; empty without z.
    fn image_bias(&self, z: &[f32], params: &[f32]) -> Vec<f32> {
        let (f, h, iw) = (self.encoding.width(), self.hidden, self.in_width());
        if self.zdim == 0 {
            return Vec::new();
        }
        let (w0, b0) = (self.weight(params, 0), self.bias(params, 0));
        z.chunks_exact(self.zdim)
            .flat_map(|zb| {
                (0..h).map(move |j| {
                    let wz = &w0[j * iw + f..(j + 1) * iw];
                    b0[j] + wz.iter().zip(zb).map(|(w, z)| w * z).sum::<f32>()
                })
            })
            .collect()
    }

    /// Outputs (B·N × out) at `coords` (B·N × 3) for latents `z` (B × zdim); `n` points per image. With
    /// `keep`, the activations are kept (in buffers from `pool`) for [`Self::backward`].
    pub(crate) fn forward(
        &self,
        coords: &[f32],
        z: &[f32],
        params: &[f32],
        n: usize,
        keep: bool,
        pool: &Buffers,
    ) -> (Vec<f32>, Option<Saved>) {
        let (f, h, out, rows) = (self.encoding.width(), self.hidden, self.out, self.tiling.rows);
        let m = coords.len() / 3;
        debug_assert_eq!(params.len(), self.param_count());
        debug_assert_eq!(z.len(), m.checked_div(n).map_or(z.len(), |b| b * self.zdim));
        let bias = self.image_bias(z, params);
        let packed = self.pack_forward(params);
        let mut y = vec![0f32; m * out];
        let tile = |row0: usize, c: &[f32], feat: &mut [f32], hid: &mut [&mut [f32]], y: &mut [f32]| {
            let at = TileInput { row0, n, params, image_bias: &bias, packed: &packed };
            self.forward_tile(at, c, feat, hid, y)
        };
        if !keep {
            // Inference: every tile works in scratch buffers of its own; only the outputs are kept.
            let scratch = || (vec![0f32; rows * f], vec![vec![0f32; rows * h]; self.layers + 1]);
            y.par_chunks_mut(rows * out).zip(coords.par_chunks(rows * 3)).enumerate().for_each_init(
                scratch,
                |(feat, hid), (i, (y, c))| {
                    let t = c.len() / 3;
                    let mut hid: Vec<&mut [f32]> = hid.iter_mut().map(|b| &mut b[..t * h]).collect();
                    tile(i * rows, c, &mut feat[..t * f], &mut hid, y);
                },
            );
            return (y, None);
        }
        let mut features = pool.take_overwritten(m * f);
        let mut hidden: Vec<Vec<f32>> = (0..=self.layers).map(|_| pool.take_overwritten(m * h)).collect();
        let mut hidden_tiles: Vec<_> = hidden.iter_mut().map(|b| b.chunks_mut(rows * h)).collect();
        let tiles: Vec<_> = features
            .chunks_mut(rows * f)
            .zip(y.chunks_mut(rows * out))
            .zip(coords.chunks(rows * 3))
            .map(|((feat, y), c)| {
                let hid: Vec<&mut [f32]> = hidden_tiles.iter_mut().filter_map(|t| t.next()).collect();
                (feat, hid, y, c)
            })
            .collect();
        tiles.into_par_iter().enumerate().for_each(|(i, (feat, mut hid, y, c))| {
            tile(i * rows, c, feat, &mut hid, y);
        });
        (y, Some(Saved { features, hidden }))
    }

    /// The forward pass of one tile of rows: encoded features into `feat`, each layer's post-activation
    /// output into `hid[l]`, outputs into `y`.
    fn forward_tile(
        &self,
        at: TileInput,
        coords: &[f32],
        feat: &mut [f32],
        hid: &mut [&mut [f32]],
        y: &mut [f32],
    ) {
        let (f, h, iw, out) = (self.encoding.width(), self.hidden, self.in_width(), self.out);
        let t = coords.len() / 3;
        debug_assert!(hid.len() == self.layers + 1 && hid.iter().all(|x| x.len() == t * h));
        for (row, c) in feat.chunks_exact_mut(f).zip(coords.chunks_exact(3)) {
            self.encoding.encode(c, row);
        }

        // Layer 0: each row starts from its image's b₀ + W₀ᶻ z_b, then += features · W₀ᶠᵀ.
        let b0 = self.bias(at.params, 0);
        for (i, row) in hid[0].chunks_exact_mut(h).enumerate() {
            let img = (at.row0 + i).checked_div(at.n).unwrap_or(0);
            row.copy_from_slice(at.image_bias.get(img * h..(img + 1) * h).unwrap_or(b0));
        }
        let w0 = self.weight(at.params, 0);
        let packed = |l: usize| at.packed.get(l).and_then(Option::as_ref);
        self.product(hid[0], h, (t, h, f), View::rows(feat, f), View::transposed(w0, iw), packed(0), true);
        self.activate(hid[0]);

        // Residual layers: x ← act(x Wᵀ + b + x).
        for l in 1..=self.layers {
            let (done, rest) = hid.split_at_mut(l);
            let (prev, x) = (&*done[l - 1], &mut *rest[0]);
            let b = self.bias(at.params, l);
            for (x, p) in x.chunks_exact_mut(h).zip(prev.chunks_exact(h)) {
                x.iter_mut().zip(p).zip(b).for_each(|((x, p), b)| *x = p + b);
            }
            self.product(
                x,
                h,
                (t, h, h),
                View::rows(prev, h),
                View::transposed(self.weight(at.params, l), h),
                packed(l),
                true,
            );
            self.activate(x);
        }

        let b_out = self.bias(at.params, self.layers + 1);
        y.chunks_exact_mut(out).for_each(|r| r.copy_from_slice(b_out));
        let w_out = self.weight(at.params, self.layers + 1);
        let (a, b) = (View::rows(hid[self.layers], h), View::transposed(w_out, h));
        self.product(y, out, (t, out, h), a, b, None, true);
    }

    /// Gradients (flat parameters, z, and with `want_coords` the coordinates, B·N × 3) of a loss whose
    /// gradient with respect to the outputs is `grad` (B·N × out), given the forward pass's `saved`
    /// activations. Coordinates need a gradient only when poses are refined; it costs one more product.
    ///
    /// The rows are split evenly into one contiguous run per thread, cut into tiles; each run sums its own
    /// parameter gradients and the runs are added in order, so a given thread count always sums in the
    /// same order (runs are reproducible).
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn backward(
        &self,
        grad: &[f32],
        saved: &Saved,
        z: &[f32],
        params: &[f32],
        n: usize,
        want_coords: bool,
        pool: &Buffers,
    ) -> Gradients {
        let (f, h, iw, rows) = (self.encoding.width(), self.hidden, self.in_width(), self.tiling.rows);
        let m = grad.len() / self.out;
        let packed = self.pack_backward(params, want_coords);
        let runs = rayon::current_num_threads().clamp(1, m.div_ceil(rows).max(1));
        let images = z.len().checked_div(self.zdim).unwrap_or(0);

        let mut partial: Vec<(Vec<f32>, Vec<f32>, Vec<f32>)> = (0..runs)
            .into_par_iter()
            .map(|r| {
                let mut dp = pool.take(self.param_count());
                // Σ over each image's points of the first layer's δ, for the z gradients.
                let mut sums = vec![0f32; images * h];
                let (mut delta, mut next) = (vec![0f32; rows * h], vec![0f32; rows * h]);
                let (start, end) = (r * m / runs, (r + 1) * m / runs);
                let mut dcoords = vec![0f32; if want_coords { (end - start) * 3 } else { 0 }];
                let mut gfeat = vec![0f32; if want_coords { rows * f } else { 0 }];
                for r0 in (start..end).step_by(rows) {
                    let r1 = (r0 + rows).min(end);
                    let t = r1 - r0;
                    let hid: Vec<&[f32]> = saved.hidden.iter().map(|x| &x[r0 * h..r1 * h]).collect();
                    let ws = Workspace { delta: &mut delta[..t * h], next: &mut next[..t * h] };
                    let delta0 = self.backward_tile(
                        &grad[r0 * self.out..r1 * self.out],
                        &saved.features[r0 * f..r1 * f],
                        &hid,
                        ws,
                        (params, &packed),
                        &mut dp,
                    );
                    if images > 0 {
                        for (i, row) in delta0.chunks_exact(h).enumerate() {
                            let img = ((r0 + i) / n.max(1)).min(images - 1);
                            sums[img * h..(img + 1) * h].iter_mut().zip(row).for_each(|(s, d)| *s += d);
                        }
                    }
                    if want_coords {
                        // d features = δ₀ W₀ᶠ, then through the encoding point by point.
                        let t = r1 - r0;
                        let (a, w0) = (View::rows(delta0, h), View::rows(self.weight(params, 0), iw));
                        self.product(&mut gfeat[..t * f], f, (t, f, h), a, w0, packed[0].as_ref(), false);
                        let feat = &saved.features[r0 * f..r1 * f];
                        let out = &mut dcoords[(r0 - start) * 3..(r1 - start) * 3];
                        for ((o, x), g) in
                            out.chunks_exact_mut(3).zip(feat.chunks_exact(f)).zip(gfeat.chunks_exact(f))
                        {
                            o.copy_from_slice(&self.encoding.coords_grad(x, g));
                        }
                    }
                }
                (dp, sums, dcoords)
            })
            .collect();

        let (mut dp, mut sums, mut coords) = partial.remove(0);
        for (d, s, c) in partial {
            dp.iter_mut().zip(&d).for_each(|(a, b)| *a += b);
            sums.iter_mut().zip(&s).for_each(|(a, b)| *a += b);
            coords.extend_from_slice(&c);
            pool.give(d);
        }

        // Through the per-image sums s_b = Σ_{p∈b} δ_p: dW₀ᶻ = Σ_b s_b z_bᵀ, dz_b = W₀ᶻᵀ s_b.
        let mut dz = vec![0f32; z.len()];
        if images > 0 {
            let w0 = self.weight(params, 0);
            for ((s, zb), dzb) in
                sums.chunks_exact(h).zip(z.chunks_exact(self.zdim)).zip(dz.chunks_exact_mut(self.zdim))
            {
                for (j, &sj) in s.iter().enumerate() {
                    let row = j * iw + f;
                    for c in 0..self.zdim {
                        dp[row + c] += sj * zb[c];
                        dzb[c] += w0[row + c] * sj;
                    }
                }
            }
        }
        Gradients { params: dp, z: dz, coords: want_coords.then_some(coords) }
    }

    /// The backward pass of one tile: adds its parameter gradients (all but the first layer's z columns)
    /// into `dp` and returns the first layer's δ (t × H) for the z gradients. `packed[l]`: W_l packed, if
    /// it was ([`Self::pack_backward`]).
    fn backward_tile<'w>(
        &self,
        grad: &[f32],
        feat: &[f32],
        hid: &[&[f32]],
        ws: Workspace<'w>,
        (params, packed): (&[f32], &[Option<PackedB>]),
        dp: &mut [f32],
    ) -> &'w [f32] {
        let (f, h, iw, out) = (self.encoding.width(), self.hidden, self.in_width(), self.out);
        let t = grad.len() / out;
        let Workspace { mut delta, mut next } = ws;

        // Output layer: dW = Gᵀ h_L, db = Σ G, dh = G W.
        let l_out = self.layers + 1;
        let (w, b) = self.offsets(l_out);
        self.product(
            &mut dp[w..b],
            h,
            (out, h, t),
            View::transposed(grad, out),
            View::rows(hid[self.layers], h),
            None,
            true,
        );
        add_column_sums(grad, out, &mut dp[b..b + out]);
        self.product(
            delta,
            h,
            (t, h, out),
            View::rows(grad, out),
            View::rows(self.weight(params, l_out), h),
            None,
            false,
        );

        // Residual layers, last to first: δ ← dh ⊙ act′; dW = δᵀ h_{l−1}; dh_{l−1} = δ W + δ.
        for l in (1..=self.layers).rev() {
            self.activation_grad(delta, hid[l]);
            let (w, b) = self.offsets(l);
            self.product(
                &mut dp[w..b],
                h,
                (h, h, t),
                View::transposed(delta, h),
                View::rows(hid[l - 1], h),
                None,
                true,
            );
            add_column_sums(delta, h, &mut dp[b..b + h]);
            next.copy_from_slice(delta);
            self.product(
                next,
                h,
                (t, h, h),
                View::rows(delta, h),
                View::rows(self.weight(params, l), h),
                packed.get(l).and_then(Option::as_ref),
                true,
            );
            std::mem::swap(&mut delta, &mut next);
        }

        // First layer: dW₀ᶠ = δᵀ features (the first F columns of each row of dW₀), db₀ = Σ δ.
        self.activation_grad(delta, hid[0]);
        let (w, b) = self.offsets(0);
        let (a, b_feat) = (View::transposed(delta, h), View::rows(feat, f));
        self.product(&mut dp[w..b], iw, (h, f, t), a, b_feat, None, true);
        add_column_sums(delta, h, &mut dp[b..b + h]);
        delta
    }
}

/// What [`Net::backward`] returns.
pub(crate) struct Gradients {
    /// Flat parameters, in the order of the parameter vector.
    pub params: Vec<f32>,
    /// B × zdim latents (empty without z).
    pub z: Vec<f32>,
    /// B·N × 3 coordinates, when asked for.
    pub coords: Option<Vec<f32>>,
}

/// Where a tile sits and what every tile reads.
#[derive(Clone, Copy)]
struct TileInput<'a> {
    /// Index of the tile's first row among all B·N rows.
    row0: usize,
    /// Points per image.
    n: usize,
    params: &'a [f32],
    /// B × H first-layer bias per image, or empty (then b₀).
    image_bias: &'a [f32],
    /// The forward pass's packed weights ([`Net::pack_forward`]).
    packed: &'a [Option<PackedB>],
}

/// Two t × H scratch buffers of a backward tile.
struct Workspace<'w> {
    delta: &'w mut [f32],
    next: &'w mut [f32],
}

/// A read-only matrix view: element (i, j) at `data[i·rs + j·cs]`.
#[derive(Clone, Copy)]
pub(crate) struct View<'a> {
    data: &'a [f32],
    rs: usize,
    cs: usize,
}

impl<'a> View<'a> {
    /// A row-major matrix with `width` columns.
    pub(crate) fn rows(data: &'a [f32], width: usize) -> Self {
        Self { data, rs: width, cs: 1 }
    }

    /// The transpose of a row-major matrix with `width` columns.
    pub(crate) fn transposed(data: &'a [f32], width: usize) -> Self {
        Self { data, rs: 1, cs: width }
    }

    /// Whether a `rows × cols` matrix fits in the data.
    fn fits(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.rs + (cols - 1) * self.cs < self.data.len()
    }
}

/// dst (m × n, row stride `ld`, unit column stride) = [dst +] a (m × k) · b (k × n).
pub(crate) fn matmul(
    dst: &mut [f32],
    ld: usize,
    (m, n, k): (usize, usize, usize),
    a: View,
    b: View,
    accumulate: bool,
) {
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
            // Threads work on whole tiles (see the module's notes), so each product runs on one.
            Parallelism::None,
        );
    }
}

/// out[j] += Σ_i x[i, j] for a row-major x of width `w`.
fn add_column_sums(x: &[f32], w: usize, out: &mut [f32]) {
    for r in x.chunks_exact(w) {
        out.iter_mut().zip(r).for_each(|(s, v)| *s += v);
    }
}

#[cfg(test)]
mod tests {
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    fn random(len: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..len).map(|_| rng.random::<f32>() - 0.5).collect()
    }

    /// A small network and inputs of `b` images × `n` points (rows beyond one tile).
    fn setup(b: usize, n: usize) -> (Net, Vec<f32>, Vec<f32>, Vec<f32>, Vec<f32>) {
        let mut rng = ChaCha8Rng::seed_from_u64(3);
        let net = Net {
            encoding: Encoding::Gaussian(random(3 * 5, &mut rng)),
            zdim: 2,
            hidden: 16,
            layers: 2,
            out: 2,
            leaky: false,
            bf16: false,
            tiling: Tiling { kc: 64, mc: 48, rows: 512 },
        };
        let params = random(net.param_count(), &mut rng);
        let (coords, z, grad) =
            (random(b * n * 3, &mut rng), random(b * 2, &mut rng), random(b * n * 2, &mut rng));
        (net, coords, z, params, grad)
    }

    fn in_pool<T: Send>(threads: usize, f: impl FnOnce() -> T + Send) -> T {
        rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap().install(f)
    }

    #[test]
    fn inference_tiles_give_the_training_outputs() {
        let (net, coords, z, params, _) = setup(5, 1000);
        let pool = Buffers::default();
        let (kept, saved) = net.forward(&coords, &z, &params, 1000, true, &pool);
        let (scratch, none) = net.forward(&coords, &z, &params, 1000, false, &pool);
        assert!(saved.is_some() && none.is_none());
        assert_eq!(kept, scratch);
    }

    /// Outputs and gradients (parameters, z, coordinates) of one forward and backward.
    fn pass(
        net: &Net,
        (coords, z, params, grad): (&[f32], &[f32], &[f32], &[f32]),
        n: usize,
    ) -> [Vec<f32>; 4] {
        let pool = Buffers::default();
        let (y, saved) = net.forward(coords, z, params, n, true, &pool);
        let g = net.backward(grad, &saved.unwrap(), z, params, n, true, &pool);
        [y, g.params, g.z, g.coords.expect("coordinate gradients were asked for")]
    }

    /// max |a − b| ≤ tol · max |b| for each pair of outputs.
    fn assert_close(a: &[Vec<f32>; 4], b: &[Vec<f32>; 4], tol: f32, what: &str) {
        for (i, (a, b)) in a.iter().zip(b).enumerate() {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            eprintln!("{what}: output {i} differs by {:.1e} of its scale", diff / scale);
            assert!(diff <= tol * scale, "{what}: output {i} differs by {diff} (scale {scale})");
        }
    }

    /// Every tiling computes the same function: tile lengths change only where images are cut and in which
    /// order the weight gradients' sums run, and k blocks only the bf16 products' sums; both f32 and (where
    /// the CPU has it) bf16 products, at a width that takes the bf16 path.
    #[test]
    fn every_tiling_gives_the_same_result() {
        let (mut net, coords, z, _, _) = setup(3, 700);
        let mut rng = ChaCha8Rng::seed_from_u64(4);
        net.hidden = 48;
        let params = random(net.param_count(), &mut rng);
        let grad = random(3 * 700 * net.out, &mut rng);
        let inputs = (&coords[..], &z[..], &params[..], &grad[..]);
        let tilings = [
            Tiling { kc: 16, mc: 48, rows: 100 },
            Tiling { kc: 64, mc: 96, rows: 256 },
            Tiling { kc: 512, mc: 96, rows: 1024 },
            Tiling::for_width(48),
        ];
        let precisions: &[bool] = if super::super::bf16::available() { &[false, true] } else { &[false] };
        for &bf16 in precisions {
            net.bf16 = bf16;
            let reference = in_pool(2, || pass(&Net { tiling: tilings[0], ..net.clone() }, inputs, 700));
            for tiling in &tilings[1..] {
                let other = in_pool(2, || pass(&Net { tiling: *tiling, ..net.clone() }, inputs, 700));
                // In f32 only the summation order differs. In bf16, a sum that differs in its last f32
                // bit can round a layer's activation to the neighbouring bf16 value (2⁻⁸ apart), and that
                // difference passes on: bf16's precision, not f32's (measured 1.5e-5; a wrong block gives ~1).
                let tol = if bf16 { 1e-3 } else { 1e-5 };
                assert_close(&other, &reference, tol, &format!("bf16 {bf16}, {tiling:?}"));
            }
        }
    }

    #[test]
    fn gradients_are_reproducible_per_thread_count_and_agree_across_counts() {
        let (net, coords, z, params, grad) = setup(5, 1000);
        let run = |threads| {
            in_pool(threads, || {
                let pool = Buffers::default();
                let (_, saved) = net.forward(&coords, &z, &params, 1000, true, &pool);
                let g = net.backward(&grad, &saved.unwrap(), &z, &params, 1000, true, &pool);
                (g.params, g.z, g.coords.expect("coordinate gradients were asked for"))
            })
        };
        let (one, three) = (run(1), run(3));
        assert_eq!(three, run(3), "same thread count, same sums");
        for (a, b) in [(&one.0, &three.0), (&one.1, &three.1), (&one.2, &three.2)] {
            let scale = b.iter().fold(0f32, |m, v| m.max(v.abs()));
            let diff = a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs()));
            assert!(diff <= 1e-5 * scale, "1 vs 3 threads differ by {diff} (scale {scale})");
        }
    }
}
