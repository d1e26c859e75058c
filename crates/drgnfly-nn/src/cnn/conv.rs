//! 2-D convolution for the CNN encoder as im2col and matrix products on the `gemm` kernels the fused decoder
//! uses, forward and backward, as one candle op.
//!
//! candle 0.11's CPU convolution ran the small encoder's training step 7× slower than PyTorch on one thread
//! (BENCHMARKS.md, "CNN encoder"): its backward goes through a transposed convolution and a convolution with
//! the batch as channels. Here each group of images is unfolded into a (C·k·k) × (images·pixels) matrix and
//! multiplied by the weights; the backward multiplies by the transposed weights and folds back (col2im), and
//! the weights' gradient is the output gradient times the unfolded input. Groups are sized by memory (about
//! 1 MB of unfolded input), not by the thread count, so the result does not depend on the number of
//! threads. float32 on the CPU; other devices and types use candle's convolution, which is also the slow
//! twin the tests compare against.

use candle_core::{CpuStorage, CustomOp3, DType, Device, Layout, Shape, Tensor};
use rayon::prelude::*;

use crate::error::Result;
use crate::fused::{cpu_slice, matmul, View};

/// Unfolded input per group of images (floats): about 1 MB, so a group's products stay in cache.
const GROUP_FLOATS: usize = 1 << 18;

/// `x` (B, C, H, W) convolved with `w` (O, C, k, k) at `stride` and zero `padding`, plus `bias` (O), then
/// a ReLU when `relu`.
pub(crate) fn conv2d(
    x: &Tensor,
    (w, bias): (&Tensor, &Tensor),
    stride: usize,
    padding: usize,
    relu: bool,
) -> Result<Tensor> {
    if matches!(x.device(), Device::Cpu)
        && [x.dtype(), w.dtype(), bias.dtype()].iter().all(|&t| t == DType::F32)
    {
        Ok(x.contiguous()?.apply_op3(
            &w.contiguous()?,
            &bias.contiguous()?,
            Conv { stride, padding, relu },
        )?)
    } else {
        let y = x.conv2d(w, padding, stride, 1, 1)?.broadcast_add(&bias.reshape((1, (), 1, 1))?)?;
        Ok(if relu { y.relu()? } else { y })
    }
}

/// The convolution's shapes.
#[derive(Clone, Copy, Debug)]
struct Geometry {
    b: usize,
    c: usize,
    h: usize,
    w: usize,
    o: usize,
    k: usize,
    stride: usize,
    pad: usize,
    oh: usize,
    ow: usize,
}

impl Geometry {
    fn new(x: &[usize], w: &[usize], stride: usize, pad: usize) -> candle_core::Result<Self> {
        let ([b, c, h, wd], [o, c2, k, k2]) = (x, w) else {
            candle_core::bail!("conv2d: input {x:?} and kernel {w:?} must be 4-D")
        };
        if c != c2 || k != k2 || *k == 0 || stride == 0 || h + 2 * pad < *k || wd + 2 * pad < *k {
            candle_core::bail!(
                "conv2d: input {x:?}, kernel {w:?}, stride {stride}, padding {pad} do not fit"
            );
        }
        let (oh, ow) = ((h + 2 * pad - k) / stride + 1, (wd + 2 * pad - k) / stride + 1);
        Ok(Self { b: *b, c: *c, h: *h, w: *wd, o: *o, k: *k, stride, pad, oh, ow })
    }

    /// Rows of the unfolded input (C·k·k).
    fn rows(&self) -> usize {
        self.c * self.k * self.k
    }

    /// Output pixels per image.
    fn pixels(&self) -> usize {
        self.oh * self.ow
    }

    /// Whether the kernel's gradient is computed transposed (see [`Geometry::backward`]).
    fn transposed_kernel_gradient(&self) -> bool {
        self.o < 64
    }

    /// Images per group.
    fn group(&self) -> usize {
        (GROUP_FLOATS / (self.rows() * self.pixels()).max(1)).clamp(1, self.b.max(1))
    }

    /// Output columns `ox` whose input column `ox·stride + kx − pad` lies inside the image, and the first
    /// one's input column.
    fn valid_columns(&self, kx: usize) -> (std::ops::Range<usize>, usize) {
        // ox·s + kx ≥ pad and ox·s + kx − pad < w.
        let lo = self.pad.saturating_sub(kx).div_ceil(self.stride);
        let hi = (self.w + self.pad).saturating_sub(kx).div_ceil(self.stride).min(self.ow);
        let lo = lo.min(hi);
        (lo..hi, (lo * self.stride + kx).saturating_sub(self.pad))
    }

    /// The input row read by output row `oy` at kernel row `ky`, if inside the image.
    fn source_row(&self, oy: usize, ky: usize) -> Option<usize> {
        (oy * self.stride + ky).checked_sub(self.pad).filter(|&v| v < self.h)
    }

    /// Unfolds image `x` (C, H, W) into columns `j·P ..` of `cols` ((C·k·k) × (n·P), row stride `ld`).
    fn im2col(&self, x: &[f32], cols: &mut [f32], ld: usize, j: usize) {
        let (k, p, s) = (self.k, self.pixels(), self.stride);
        for c in 0..self.c {
            let img = &x[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ky in 0..k {
                for kx in 0..k {
                    let row = (c * k + ky) * k + kx;
                    let dst = &mut cols[row * ld + j * p..row * ld + (j + 1) * p];
                    let (valid, ix0) = self.valid_columns(kx);
                    for (oy, out) in dst.chunks_exact_mut(self.ow).enumerate() {
                        let Some(iy) = self.source_row(oy, ky) else {
                            out.fill(0.0);
                            continue;
                        };
                        out[..valid.start].fill(0.0);
                        out[valid.end..].fill(0.0);
                        let src = &img[iy * self.w + ix0..];
                        if s == 1 {
                            out[valid.clone()].copy_from_slice(&src[..valid.len()]);
                        } else {
                            out[valid.clone()]
                                .iter_mut()
                                .zip(src.iter().step_by(s))
                                .for_each(|(o, v)| *o = *v);
                        }
                    }
                }
            }
        }
    }

    /// Folds columns `j·P ..` of `cols` back onto image gradient `dx` (C, H, W), summing overlaps.
    fn col2im(&self, cols: &[f32], ld: usize, j: usize, dx: &mut [f32]) {
        let (k, p, s) = (self.k, self.pixels(), self.stride);
        for c in 0..self.c {
            let img = &mut dx[c * self.h * self.w..(c + 1) * self.h * self.w];
            for ky in 0..k {
                for kx in 0..k {
                    let row = (c * k + ky) * k + kx;
                    let src = &cols[row * ld + j * p..row * ld + (j + 1) * p];
                    let (valid, ix0) = self.valid_columns(kx);
                    for (oy, from) in src.chunks_exact(self.ow).enumerate() {
                        let Some(iy) = self.source_row(oy, ky) else { continue };
                        let dst = &mut img[iy * self.w + ix0..];
                        dst.iter_mut().step_by(s).zip(&from[valid.clone()]).for_each(|(d, v)| *d += v);
                    }
                }
            }
        }
    }

    /// Forward: (B, O, OH, OW), with `bias` (O) added and a ReLU when `relu`.
    fn forward(&self, x: &[f32], w: &[f32], bias: &[f32], relu: bool) -> Vec<f32> {
        let (rows, p, g) = (self.rows(), self.pixels(), self.group());
        let (in_img, out_img) = (self.c * self.h * self.w, self.o * p);
        let mut y = vec![0f32; self.b * out_img];
        y.par_chunks_mut(g * out_img).zip(x.par_chunks(g * in_img)).for_each(|(y, x)| {
            let n = x.len() / in_img;
            let ld = n * p;
            let mut cols = vec![0f32; rows * ld];
            for (j, img) in x.chunks_exact(in_img).enumerate() {
                self.im2col(img, &mut cols, ld, j);
            }
            let mut out = vec![0f32; self.o * ld];
            matmul(&mut out, ld, (self.o, ld, rows), View::rows(w, rows), View::rows(&cols, ld), false);
            // (O, n·P) → n × (O, P).
            for (j, y) in y.chunks_exact_mut(out_img).enumerate() {
                for (o, &b) in bias.iter().enumerate() {
                    let from = &out[o * ld + j * p..o * ld + (j + 1) * p];
                    let to = &mut y[o * p..(o + 1) * p];
                    if relu {
                        to.iter_mut().zip(from).for_each(|(t, v)| *t = (v + b).max(0.0));
                    } else {
                        to.iter_mut().zip(from).for_each(|(t, v)| *t = v + b);
                    }
                }
            }
        });
        y
    }

    /// Backward: gradients of the input (when asked), of the kernel and of the bias, for output gradient
    /// `dy` already masked by the ReLU.
    fn backward(
        &self,
        x: &[f32],
        w: &[f32],
        dy: &[f32],
        want_dx: bool,
    ) -> (Option<Vec<f32>>, Vec<f32>, Vec<f32>) {
        let (rows, p, g) = (self.rows(), self.pixels(), self.group());
        let (in_img, out_img) = (self.c * self.h * self.w, self.o * p);
        let mut dx = vec![0f32; if want_dx { self.b * in_img } else { 0 }];
        let groups: Vec<(usize, &[f32], &[f32])> = x
            .chunks(g * in_img)
            .zip(dy.chunks(g * out_img))
            .enumerate()
            .map(|(i, (x, dy))| (i, x, dy))
            .collect();
        let dx_groups: Vec<&mut [f32]> =
            if want_dx { dx.chunks_mut(g * in_img).collect() } else { Vec::new() };
        let mut dx_slots: Vec<Option<&mut [f32]>> = dx_groups.into_iter().map(Some).collect();
        dx_slots.resize_with(groups.len(), || None);
        // One kernel gradient per group, summed in group order afterwards (the same sum for any thread count).
        let dws: Vec<Vec<f32>> = groups
            .into_par_iter()
            .zip(dx_slots.into_par_iter())
            .map(|((_, x, dy), dx)| {
                let n = x.len() / in_img;
                let ld = n * p;
                let mut cols = vec![0f32; rows * ld];
                for (j, img) in x.chunks_exact(in_img).enumerate() {
                    self.im2col(img, &mut cols, ld, j);
                }
                // n × (O, P) → (O, n·P).
                let mut g_out = vec![0f32; self.o * ld];
                for (j, dy) in dy.chunks_exact(out_img).enumerate() {
                    for o in 0..self.o {
                        g_out[o * ld + j * p..o * ld + (j + 1) * p].copy_from_slice(&dy[o * p..(o + 1) * p]);
                    }
                }
                // The kernel's gradient, as (C·k·k) × O when there are few output channels (the product's
                // 64-row tiles then run along C·k·k; measured 20% faster on the small layout's first stages,
                // 25% slower on ResNet-18's), else O × (C·k·k).
                let mut dw = vec![0f32; rows * self.o];
                if self.transposed_kernel_gradient() {
                    let (a, b) = (View::rows(&cols, ld), View::transposed(&g_out, ld));
                    matmul(&mut dw, self.o, (rows, self.o, ld), a, b, false);
                } else {
                    let (a, b) = (View::rows(&g_out, ld), View::transposed(&cols, ld));
                    matmul(&mut dw, rows, (self.o, rows, ld), a, b, false);
                }
                if let Some(dx) = dx {
                    matmul(
                        &mut cols,
                        ld,
                        (rows, ld, self.o),
                        View::transposed(w, rows),
                        View::rows(&g_out, ld),
                        false,
                    );
                    for (j, dx) in dx.chunks_exact_mut(in_img).enumerate() {
                        self.col2im(&cols, ld, j, dx);
                    }
                }
                dw
            })
            .collect();
        let mut dw = vec![0f32; self.o * rows];
        for part in dws {
            if self.transposed_kernel_gradient() {
                for (r, row) in part.chunks_exact(self.o).enumerate() {
                    row.iter().enumerate().for_each(|(o, v)| dw[o * rows + r] += v);
                }
            } else {
                dw.iter_mut().zip(part).for_each(|(s, v)| *s += v);
            }
        }
        let mut db = vec![0f32; self.o];
        for img in dy.chunks_exact(out_img) {
            db.iter_mut().zip(img.chunks_exact(p)).for_each(|(s, g)| *s += g.iter().sum::<f32>());
        }
        (want_dx.then_some(dx), dw, db)
    }
}

/// The candle op: (input, kernel, bias) → output.
struct Conv {
    stride: usize,
    padding: usize,
    relu: bool,
}

impl CustomOp3 for Conv {
    fn name(&self) -> &'static str {
        "im2col-conv2d"
    }

    fn cpu_fwd(
        &self,
        s1: &CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<(CpuStorage, Shape)> {
        let g = Geometry::new(l1.dims(), l2.dims(), self.stride, self.padding)?;
        if l3.dims() != [g.o] {
            candle_core::bail!("conv2d: bias {:?} for {} output channels", l3.dims(), g.o);
        }
        let (x, w) = (cpu_slice(s1, l1, "conv2d: input")?, cpu_slice(s2, l2, "conv2d: kernel")?);
        let y = g.forward(x, w, cpu_slice(s3, l3, "conv2d: bias")?, self.relu);
        Ok((CpuStorage::F32(y), Shape::from((g.b, g.o, g.oh, g.ow))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        bias: &Tensor,
        res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let g = Geometry::new(x.dims(), w.dims(), self.stride, self.padding)?;
        let values = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let mut dy = values(grad)?;
        if self.relu {
            // The ReLU passes the gradient where its output is positive.
            dy.iter_mut().zip(values(res)?).for_each(|(d, y)| *d = if y > 0.0 { *d } else { 0.0 });
        }
        let (dx, dw, db) = g.backward(&values(x)?, &values(w)?, &dy, x.track_op());
        let dx = dx.map(|v| Tensor::from_vec(v, x.shape(), x.device())).transpose()?;
        Ok((
            dx,
            Some(Tensor::from_vec(dw, w.shape(), w.device())?),
            Some(Tensor::from_vec(db, bias.shape(), bias.device())?),
        ))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Var;

    use super::*;

    /// Output and the input, kernel and bias gradients of a weighted sum of the output, on both paths.
    fn both_paths(
        x: &[usize; 4],
        w: &[usize; 4],
        stride: usize,
        pad: usize,
        relu: bool,
    ) -> [[Vec<f32>; 4]; 2] {
        let dev = Device::Cpu;
        let xv = Var::from_tensor(&Tensor::randn(0f32, 1.0, x, &dev).unwrap()).unwrap();
        let wv = Var::from_tensor(&Tensor::randn(0f32, 1.0, w, &dev).unwrap()).unwrap();
        let bv = Var::from_tensor(&Tensor::randn(0f32, 1.0, w[0], &dev).unwrap()).unwrap();
        let ours = conv2d(xv.as_tensor(), (wv.as_tensor(), bv.as_tensor()), stride, pad, relu).unwrap();
        let twin = xv.as_tensor().conv2d(wv.as_tensor(), pad, stride, 1, 1).unwrap();
        let twin = twin.broadcast_add(&bv.as_tensor().reshape((1, (), 1, 1)).unwrap()).unwrap();
        let twin = if relu { twin.relu().unwrap() } else { twin };
        assert_eq!(ours.dims(), twin.dims());
        let weights = Tensor::randn(0f32, 1.0, ours.shape(), &dev).unwrap();
        [ours, twin].map(|y| {
            let g = (&y * &weights).unwrap().sum_all().unwrap().backward().unwrap();
            let flat = |t: &Tensor| t.flatten_all().unwrap().to_vec1::<f32>().unwrap();
            [flat(&y), flat(g.get(&xv).unwrap()), flat(g.get(&wv).unwrap()), flat(g.get(&bv).unwrap())]
        })
    }

    /// max |a − b| / max |b|.
    fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    #[test]
    fn im2col_matches_candles_convolution_forward_and_backward() {
        // Strides, paddings, odd sizes, 1×1 shortcuts, a 7×7 stem, batches that span several groups.
        for (x, w, stride, pad) in [
            ([3, 2, 9, 9], [4, 2, 3, 3], 1, 1),
            ([3, 2, 9, 9], [4, 2, 3, 3], 2, 1),
            ([2, 1, 15, 15], [5, 1, 7, 7], 2, 3),
            ([5, 3, 7, 7], [2, 3, 1, 1], 2, 0),
            ([40, 8, 12, 12], [8, 8, 3, 3], 1, 1),
            // Enough output channels for the untransposed kernel gradient.
            ([2, 4, 6, 6], [64, 4, 3, 3], 2, 1),
        ] {
            for relu in [false, true] {
                let [ours, twin] = both_paths(&x, &w, stride, pad, relu);
                for (what, i) in
                    [("output", 0), ("input gradient", 1), ("kernel gradient", 2), ("bias gradient", 3)]
                {
                    let d = rel_diff(&ours[i], &twin[i]);
                    assert!(
                        d < 1e-5,
                        "{x:?} * {w:?} stride {stride} pad {pad} relu {relu}: {what} differs by {d}"
                    );
                }
            }
        }
    }

    /// The backward is the forward's adjoint: ⟨conv(x′; w), dy⟩ = ⟨x′, dx⟩ and ⟨conv(x; w′), dy⟩ = ⟨w′, dw⟩.
    /// This also covers shapes where candle 0.11's own backward fails (a 9×8 input at stride 2: its transposed
    /// convolution's output is one pixel short).
    #[test]
    fn the_backward_is_the_adjoint_of_the_forward() {
        let dot =
            |a: &[f32], b: &[f32]| a.iter().zip(b).map(|(x, y)| f64::from(*x) * f64::from(*y)).sum::<f64>();
        let noise = |n: usize, seed: usize| -> Vec<f32> {
            (0..n).map(|i| (((i + seed) * 2_654_435_761) % 10_007) as f32 / 5003.5 - 1.0).collect()
        };
        for (x, w, stride, pad) in [([3, 2, 8, 8], [4, 2, 3, 3], 2, 1), ([2, 1, 16, 16], [3, 1, 7, 7], 2, 3)]
        {
            let g = Geometry::new(&x, &w, stride, pad).unwrap();
            let (nx, nw) = (x.iter().product(), w.iter().product());
            let (xs, ws) = (noise(nx, 1), noise(nw, 2));
            let dy = noise(g.b * g.o * g.pixels(), 3);
            let (dx, dw, _) = g.backward(&xs, &ws, &dy, true);
            let (x2, w2, zero) = (noise(nx, 4), noise(nw, 5), vec![0f32; g.o]);
            let lhs_x = dot(&g.forward(&x2, &ws, &zero, false), &dy);
            let lhs_w = dot(&g.forward(&xs, &w2, &zero, false), &dy);
            let (rhs_x, rhs_w) = (dot(&x2, &dx.unwrap()), dot(&w2, &dw));
            assert!((lhs_x - rhs_x).abs() < 1e-4 * lhs_x.abs().max(1.0), "{x:?}: {lhs_x} vs {rhs_x}");
            assert!((lhs_w - rhs_w).abs() < 1e-4 * lhs_w.abs().max(1.0), "{x:?}: {lhs_w} vs {rhs_w}");
        }
    }

    #[test]
    fn the_result_does_not_depend_on_the_thread_count() {
        let run = |threads: usize| {
            let pool = rayon::ThreadPoolBuilder::new().num_threads(threads).build().unwrap();
            pool.install(|| {
                let g = Geometry::new(&[40, 8, 12, 12], &[8, 8, 3, 3], 1, 1).unwrap();
                let x: Vec<f32> =
                    (0..40 * 8 * 144).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
                let w: Vec<f32> = (0..8 * 72).map(|i| ((i * 104_729) % 1000) as f32 / 500.0 - 1.0).collect();
                let y = g.forward(&x, &w, &[0.5; 8], true);
                g.backward(&x, &w, &y, true)
            })
        };
        assert!(Geometry::new(&[40, 8, 12, 12], &[8, 8, 3, 3], 1, 1).unwrap().group() < 40);
        assert!(run(1) == run(3));
    }
}
