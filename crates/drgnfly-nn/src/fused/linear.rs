//! y = x Wᵀ + b for a small batch of rows on the CPU (the encoder's layers: 8 images × 4096 pixels into
//! 256–1024 units), forward and backward as one candle op.
//!
//! candle's `Linear` multiplies by the transposed view Wᵀ, so its backward produces the weight gradient
//! transposed and then adds it into a zeroed gradient through a strided copy: at width 1024 that pass over
//! 13 MB, not the products, was most of the encoder's backward (BENCHMARKS.md, issue 17). Here every
//! product is laid out so that W and its gradient are read and written in W's own (out, in) row-major
//! order, and the work is split over the threads by output units (batch rows are too few to split).

use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Storage, Tensor};
use rayon::prelude::*;

use super::{cpu_slice, matmul, View};
use crate::error::Result;

/// Rows up to which [`forward`] takes this op; beyond, candle's product splits rows over threads itself.
const MAX_ROWS: usize = 256;

/// x (m, in) · Wᵀ + b with W (out, in), b (out,): this op where it applies (f32 on the CPU, at most
/// [`MAX_ROWS`] rows), candle's generic ops otherwise.
pub(crate) fn forward(x: &Tensor, w: &Tensor, b: &Tensor) -> Result<Tensor> {
    let applies = x.device().is_cpu()
        && [x, w, b].iter().all(|t| t.dtype() == candle_core::DType::F32)
        && x.rank() == 2
        && w.rank() == 2
        && x.dim(0)? <= MAX_ROWS
        && x.dim(1)? == w.dim(1)?
        && b.dims() == [w.dim(0)?];
    if !applies {
        return Ok(x.broadcast_matmul(&w.t()?)?.broadcast_add(b)?);
    }
    Ok(x.contiguous()?.apply_op3(&w.contiguous()?, &b.contiguous()?, LinearOp)?)
}

struct LinearOp;

/// Output units per task: every thread gets work, and a task's rows of W stay whole.
fn unit_chunk(units: usize) -> usize {
    units.div_ceil(rayon::current_num_threads().max(1)).max(1)
}

/// The f32 data of a tensor's CPU storage.
fn storage_slice<'a>(s: &'a Storage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    match s {
        Storage::Cpu(s) => cpu_slice(s, l, what),
        _ => candle_core::bail!("{what} must be on the CPU"),
    }
}

/// The transpose of a row-major (rows, cols) matrix.
fn transpose(a: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut t = vec![0f32; a.len()];
    for (r, row) in a.chunks_exact(cols).enumerate() {
        for (c, &v) in row.iter().enumerate() {
            t[c * rows + r] = v;
        }
    }
    t
}

impl CustomOp3 for LinearOp {
    fn name(&self) -> &'static str {
        "linear"
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
        let (x, w, b) = (
            cpu_slice(s1, l1, "linear: input")?,
            cpu_slice(s2, l2, "linear: weight")?,
            cpu_slice(s3, l3, "linear: bias")?,
        );
        let (m, k) = l1.shape().dims2()?;
        let n = b.len();
        // yᵀ (n, m) = W (n, k) · xᵀ (k, m), a block of output units per task; then y = (yᵀ)ᵀ + b.
        let chunk = unit_chunk(n);
        let mut yt = vec![0f32; n * m];
        yt.par_chunks_mut(chunk * m).zip(w.par_chunks(chunk * k)).for_each(|(dst, w)| {
            let units = dst.len() / m.max(1);
            matmul(dst, m, (units, m, k), View::rows(w, k), View::transposed(x, k), false);
        });
        let mut y = transpose(&yt, n, m);
        y.chunks_exact_mut(n).for_each(|row| row.iter_mut().zip(b).for_each(|(v, b)| *v += b));
        Ok((CpuStorage::F32(y), Shape::from((m, n))))
    }

    fn bwd(
        &self,
        x: &Tensor,
        w: &Tensor,
        _b: &Tensor,
        _res: &Tensor,
        grad: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let (m, k) = x.dims2()?;
        let n = w.dim(0)?;
        // Read in place: W is megabytes, and a copy would be one more pass over it.
        let grad = grad.contiguous()?;
        let (xs, xl) = x.storage_and_layout();
        let (ws, wl) = w.storage_and_layout();
        let (gs, gl) = grad.storage_and_layout();
        let xv = storage_slice(&xs, xl, "linear: input")?;
        let wv = storage_slice(&ws, wl, "linear: weight")?;
        let g = storage_slice(&gs, gl, "linear: output gradient")?;
        let chunk = unit_chunk(n);
        // dW (n, k) = δᵀ (n, m) · x (m, k), rows of dW per task, written in W's layout.
        let mut dw = vec![0f32; n * k];
        dw.par_chunks_mut(chunk * k).enumerate().for_each(|(i, dst)| {
            let units = dst.len() / k.max(1);
            let gt = View::transposed(&g[i * chunk..], n);
            matmul(dst, k, (units, k, m), gt, View::rows(xv, k), false);
        });
        let mut db = vec![0f32; n];
        g.chunks_exact(n).for_each(|row| db.iter_mut().zip(row).for_each(|(s, v)| *s += v));
        // dx only where the input needs it (hidden layers; not the images): dxᵀ (k, m) = Wᵀ (k, n) · δᵀ (n, m).
        let dx = if x.track_op() {
            let kchunk = unit_chunk(k);
            let mut dxt = vec![0f32; k * m];
            dxt.par_chunks_mut(kchunk * m).enumerate().for_each(|(i, dst)| {
                let cols = dst.len() / m.max(1);
                let wt = View::transposed(&wv[i * kchunk..], k);
                matmul(dst, m, (cols, m, n), wt, View::transposed(g, n), false);
            });
            Some(Tensor::from_vec(transpose(&dxt, k, m), (m, k), x.device())?)
        } else {
            None
        };
        let dw = Tensor::from_vec(dw, (n, k), w.device())?;
        Ok((dx, Some(dw), Some(Tensor::from_vec(db, n, w.device())?)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use super::*;

    /// Outputs and the gradients of x, W and b equal candle's generic product to float32 rounding, for
    /// shapes that split unevenly over three threads, with and without a gradient for x.
    #[test]
    fn matches_the_generic_product() -> Result<()> {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(3).build().expect("pool");
        let mut rng = ChaCha8Rng::seed_from_u64(7);
        let dev = Device::Cpu;
        for (m, k, n, x_var) in [(8, 37, 29, true), (1, 5, 1, false), (8, 300, 64, false), (3, 16, 100, true)]
        {
            let mut rand = |len: usize| (0..len).map(|_| rng.random::<f32>() - 0.5).collect::<Vec<_>>();
            let x = Var::from_vec(rand(m * k), (m, k), &dev)?;
            let w = Var::from_vec(rand(n * k), (n, k), &dev)?;
            let b = Var::from_vec(rand(n), n, &dev)?;
            let weights = Tensor::from_vec(rand(m * n), (m, n), &dev)?;
            let x_in = if x_var { x.as_tensor().clone() } else { x.as_tensor().detach() };
            let run = |fused: bool| -> Result<Vec<Vec<f32>>> {
                let y = if fused {
                    pool.install(|| forward(&x_in, w.as_tensor(), b.as_tensor()))?
                } else {
                    x_in.matmul(&w.as_tensor().t()?)?.broadcast_add(b.as_tensor())?
                };
                let grads = (&y * &weights)?.sum_all()?.backward()?;
                let mut out = vec![y.flatten_all()?.to_vec1::<f32>()?];
                for v in [&w, &b] {
                    out.push(grads.get(v.as_tensor()).expect("gradient").flatten_all()?.to_vec1::<f32>()?);
                }
                out.push(match grads.get(x.as_tensor()) {
                    Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
                    None => Vec::new(),
                });
                Ok(out)
            };
            let (ours, theirs) = (run(true)?, run(false)?);
            for (what, (a, b)) in ["y", "dW", "db", "dx"].iter().zip(ours.iter().zip(&theirs)) {
                assert_eq!(a.len(), b.len(), "{what} at {m}×{k}→{n}");
                let diff = a.iter().zip(b).fold(0f32, |d, (a, b)| d.max((a - b).abs()));
                assert!(diff < 1e-5, "{what} at {m}×{k}→{n} differs by {diff}");
            }
            assert_eq!(ours[3].is_empty(), !x_var, "dx only where x needs it");
        }
        Ok(())
    }
}
