//! The coordinate network (positional encoding → residual MLP, with z) as one candle op on the CPU.
//!
//! candle's generic path builds the decoder out of some twenty tensor operations, each with its own
//! temporary and its own backward node; at cryoDRGN's sizes most of a training step went to those
//! temporaries rather than to the matrix products. [`FusedNet::forward`] computes the same function with a
//! hand-written forward and backward over the `gemm` crate ([`kernel`]), as a `CustomOp3` over
//! (coords, z, flat parameters): candle's autograd sees one node whose backward returns the gradients of
//! z and of the parameters, and of the coordinates when they depend on poses being refined. The flat parameter
//! vector is the concatenation of the model's variables, so their gradients flow back through `cat` and
//! optimizers, checkpoints and cryoDRGN state-dict names are unchanged.
//!
//! Used for f32 on the CPU with the layout cryoDRGN trains (plain first and last layer, residual hidden
//! layers, an encoding other than `none`); everything else takes the generic path. The tests hold the two
//! paths to float32 rounding, outputs and gradients alike.

mod kernel;
pub(crate) mod linear;
mod sincos;

use std::sync::{Arc, Mutex};

use candle_core::backend::BackendStorage;
use candle_core::{CpuStorage, CustomOp3, Layout, Shape, Tensor};
// The mixed-precision products and the cache-derived tiles live in drgnfly-em, shared with the pose search.
use drgnfly_em::cpu::{bf16, tiling};

pub(crate) use bf16::available as bf16_available;
use kernel::Buffers;
pub(crate) use kernel::{matmul, Encoding, Net, View};
pub(crate) use tiling::Tiling;

use crate::error::Result;

/// The instruction set the f32 products use (the `gemm` crate's run-time choice), whether bf16 products
/// run (and on AMX tiles or AVX-512 registers), and the tiling at hidden width `hidden`: what float32
/// sums, and so fixed-seed outputs, depend on.
pub(crate) fn describe_kernels(hidden: usize, bf16: bool) -> String {
    #[cfg(target_arch = "x86_64")]
    let isa = if std::arch::is_x86_feature_detected!("avx512f") {
        "avx512f"
    } else if std::arch::is_x86_feature_detected!("fma") {
        "avx2+fma"
    } else {
        "sse"
    };
    #[cfg(not(target_arch = "x86_64"))]
    let isa = std::env::consts::ARCH;
    let Tiling { kc, mc, rows } = Tiling::for_width(hidden);
    let products = match (bf16, bf16::on_amx()) {
        (false, _) => "",
        (true, false) => " bf16",
        (true, true) => " bf16 on AMX",
    };
    format!("{isa}{products}, tiles kc {kc} mc {mc} rows {rows}")
}

/// A fused network and the variables it reads, in the order of the flat parameter vector.
#[derive(Clone, Debug)]
pub(crate) struct FusedNet {
    /// The network's shape; its encoding constants are read at each call (a checkpoint may replace them).
    net: Net,
    params: Vec<Tensor>,
    /// Activation buffers reused across calls.
    pool: Arc<Buffers>,
}

impl FusedNet {
    /// `params`: W₀, b₀, W₁, b₁, …, W_out, b_out as the model holds them (any shapes; flattened here).
    pub(crate) fn new(net: Net, params: Vec<Tensor>) -> Self {
        Self { net, params, pool: Arc::default() }
    }

    /// Outputs (B, N, out) at coords (B, N, 3) for z (B, zdim) with the current `encoding` constants;
    /// shapes already checked by the caller.
    pub(crate) fn forward(&self, coords: &Tensor, z: Option<&Tensor>, encoding: Encoding) -> Result<Tensor> {
        let (b, n, _) = coords.dims3()?;
        let flat: Vec<Tensor> =
            self.params.iter().map(|p| p.flatten_all()).collect::<candle_core::Result<_>>()?;
        let params = Tensor::cat(&flat, 0)?;
        let z = match z {
            Some(z) if self.net.zdim > 0 => z.contiguous()?,
            _ => Tensor::zeros((b, 0), coords.dtype(), coords.device())?,
        };
        let op = FusedOp {
            net: Arc::new(Net { encoding, ..self.net.clone() }),
            n,
            keep: params.track_op() && crate::inference::grad_enabled(),
            saved: Mutex::new(None),
            pool: self.pool.clone(),
        };
        Ok(coords.contiguous()?.apply_op3(&z, &params, op)?)
    }
}

/// One application of the network; keeps its activations between forward and backward.
struct FusedOp {
    net: Arc<Net>,
    /// Points per image.
    n: usize,
    /// Whether to keep the activations (only when a gradient will be asked for).
    keep: bool,
    saved: Mutex<Option<kernel::Saved>>,
    pool: Arc<Buffers>,
}

/// The contiguous f32 data of a CPU storage; `what` names the operand in errors (the op's name first).
/// Shared by the CPU ops of this crate (the fused decoder, the CNN's convolution).
pub(crate) fn cpu_slice<'a>(s: &'a CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a [f32]> {
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what} must be f32, got {:?}", s.dtype()) };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&v[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

impl CustomOp3 for FusedOp {
    fn name(&self) -> &'static str {
        "fused-coordinate-net"
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
        let (coords, z, params) = (
            cpu_slice(s1, l1, "fused coordinate network: coords")?,
            cpu_slice(s2, l2, "fused coordinate network: z")?,
            cpu_slice(s3, l3, "fused coordinate network: parameters")?,
        );
        if params.len() != self.net.param_count() {
            candle_core::bail!(
                "fused coordinate network: {} parameters, expected {}",
                params.len(),
                self.net.param_count()
            );
        }
        let (y, saved) = crate::phases::time(crate::phases::Phase::DecoderForward, || {
            self.net.forward(coords, z, params, self.n, self.keep, &self.pool)
        });
        if let (Some(saved), Ok(mut slot)) = (saved, self.saved.lock()) {
            *slot = Some(saved);
        }
        let mut shape = l1.dims().to_vec();
        if let Some(last) = shape.last_mut() {
            *last = self.net.out;
        }
        Ok((CpuStorage::F32(y), Shape::from(shape)))
    }

    fn bwd(
        &self,
        coords: &Tensor,
        z: &Tensor,
        params: &Tensor,
        _res: &Tensor,
        grad_res: &Tensor,
    ) -> candle_core::Result<(Option<Tensor>, Option<Tensor>, Option<Tensor>)> {
        let saved = self.saved.lock().ok().and_then(|mut s| s.take());
        let values = |t: &Tensor| t.flatten_all()?.to_vec1::<f32>();
        let (p, zv, g) = (values(params)?, values(z)?, values(grad_res)?);
        let saved = match saved {
            Some(s) => s,
            // A second backward through the same node recomputes the activations.
            None => match self.net.forward(&values(coords)?, &zv, &p, self.n, true, &self.pool).1 {
                Some(s) => s,
                None => candle_core::bail!("fused coordinate network: activations were not kept"),
            },
        };
        // Coordinates are constants unless they come from poses being refined.
        let grads = crate::phases::time(crate::phases::Phase::DecoderBackward, || {
            self.net.backward(&g, &saved, &zv, &p, self.n, coords.track_op(), &self.pool)
        });
        saved.recycle(&self.pool);
        let dparams = Tensor::from_vec(grads.params, params.shape(), params.device())?;
        let dz =
            if self.net.zdim > 0 { Some(Tensor::from_vec(grads.z, z.shape(), z.device())?) } else { None };
        let dcoords = match grads.coords {
            Some(c) => Some(Tensor::from_vec(c, coords.shape(), coords.device())?),
            None => None,
        };
        Ok((dcoords, dz, Some(dparams)))
    }
}

#[cfg(test)]
mod tests {
    use candle_core::{Device, Var};
    use rand::{Rng, SeedableRng};
    use rand_chacha::ChaCha8Rng;

    use crate::{Activation, Decoder, DecoderConfig, Domain, ParamStore, PeType};

    /// Random points in the lattice cube, B images of N points each.
    fn points(b: usize, n: usize, rng: &mut ChaCha8Rng) -> Vec<f32> {
        (0..b * n * 3).map(|_| rng.random::<f32>() - 0.5).collect()
    }

    /// max |a − b| / max |b|.
    fn rel_diff(a: &[f32], b: &[f32]) -> f32 {
        assert_eq!(a.len(), b.len());
        let scale = b.iter().fold(0f32, |m, v| m.max(v.abs())).max(1e-12);
        a.iter().zip(b).fold(0f32, |m, (x, y)| m.max((x - y).abs())) / scale
    }

    /// Outputs and every gradient (parameters and z) of a weighted sum of the outputs agree between the
    /// fused op and candle's generic path, and a second backward through the same graph (which recomputes
    /// the activations) gives the same gradients again.
    ///
    /// `(b, n)`: images and points per image; more than 512 rows make several tiles, which a two-thread
    /// pool splits into two runs with image boundaries inside tiles.
    fn agree(domain: Domain, pe_type: PeType, activation: Activation, zdim: usize, (b, n): (usize, usize)) {
        let pool = rayon::ThreadPoolBuilder::new().num_threads(2).build().unwrap();
        let mut cfg = DecoderConfig::new(17, zdim);
        (cfg.dim, cfg.layers, cfg.pe_type, cfg.domain, cfg.activation) = (24, 2, pe_type, domain, activation);
        let (y, g) = pool.install(|| fused_and_generic(&cfg, (b, n)));
        assert!(rel_diff(&y[0], &y[1]) < 1e-5, "outputs differ by {}", rel_diff(&y[0], &y[1]));
        assert!(rel_diff(&g[0], &g[1]) < 1e-5, "gradients differ by {}", rel_diff(&g[0], &g[1]));
    }

    /// Outputs and gradients (parameters, z, coordinates) of the fused and the generic path, in that order; checks
    /// that a second backward through the fused graph (which recomputes the activations) gives the same
    /// gradients again.
    fn fused_and_generic(cfg: &DecoderConfig, (b, n): (usize, usize)) -> ([Vec<f32>; 2], [Vec<f32>; 2]) {
        let (domain, zdim) = (cfg.domain, cfg.zdim);
        let dev = Device::Cpu;
        let store = ParamStore::new(5, &dev);
        let fused = Decoder::new(cfg, store.var_builder()).unwrap();
        assert!(fused.is_fused(), "{cfg:?} should take the fused path");
        let generic = fused.clone().with_generic_ops();
        let mut rng = ChaCha8Rng::seed_from_u64(1);
        // A variable, as when poses are refined, so its gradient is checked too.
        let coords = Var::from_vec(points(b, n, &mut rng), (b, n, 3), &dev).unwrap();
        let z = Var::from_vec((0..b * zdim).map(|_| rng.random::<f32>() - 0.5).collect(), (b, zdim), &dev)
            .unwrap();
        let zt = (zdim > 0).then(|| z.as_tensor());
        let outs = if domain == Domain::Fourier { 2 } else { 1 };
        let weights = candle_core::Tensor::from_vec(
            (0..b * n * outs).map(|_| rng.random::<f32>() - 0.5).collect(),
            (b, n, outs),
            &dev,
        )
        .unwrap();

        let mut results = Vec::new();
        for dec in [&fused, &generic] {
            // `decode` evaluates every point (no half-space pairing needed for random points).
            let y = match dec {
                Decoder::Fourier(d) => d.decode(coords.as_tensor(), zt).unwrap(),
                Decoder::Hartley(d) => d.forward(coords.as_tensor(), zt).unwrap().unsqueeze(2).unwrap(),
            };
            let loss = (y.clone() * &weights).unwrap().sum_all().unwrap();
            let grads = [loss.backward().unwrap(), loss.backward().unwrap()];
            let mut grad_values = Vec::new();
            for g in &grads {
                let mut all: Vec<f32> = Vec::new();
                for (name, var) in store.named_vars() {
                    if name.ends_with("rand_freqs") {
                        continue;
                    }
                    let gv = g.get(var.as_tensor()).unwrap_or_else(|| panic!("no gradient for {name}"));
                    all.extend(gv.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                }
                if zdim > 0 {
                    all.extend(
                        g.get(z.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                    );
                }
                let gc = g.get(coords.as_tensor()).expect("no gradient for the coordinates");
                all.extend(gc.flatten_all().unwrap().to_vec1::<f32>().unwrap());
                grad_values.push(all);
            }
            results.push((y.flatten_all().unwrap().to_vec1::<f32>().unwrap(), grad_values));
        }
        let ((y_f, g_f), (y_g, g_g)) = (&results[0], &results[1]);
        assert_eq!(g_f[0], g_f[1], "second backward (recomputed activations)");
        ([y_f.clone(), y_g.clone()], [g_f[0].clone(), g_g[0].clone()])
    }

    #[test]
    fn fused_matches_generic_fourier_gaussian_relu() {
        agree(Domain::Fourier, PeType::Gaussian, Activation::Relu, 3, (3, 40));
    }

    #[test]
    fn fused_matches_generic_hartley_geometric_leaky_homogeneous() {
        agree(Domain::Hartley, PeType::GeomLowf, Activation::LeakyRelu, 0, (3, 40));
    }

    #[test]
    fn fused_matches_generic_fourier_linear_leaky_zdim1() {
        agree(Domain::Fourier, PeType::LinearLowf, Activation::LeakyRelu, 1, (3, 40));
    }

    #[test]
    fn fused_matches_generic_across_tiles_and_threads() {
        // 2100 rows: tiles of 512 and a partial one; runs [0, 1050) and [1050, 2100) cut images 1 and 2.
        agree(Domain::Fourier, PeType::Gaussian, Activation::Relu, 4, (3, 700));
    }

    #[test]
    fn mixed_precision_agrees_with_f32_to_bf16_rounding() {
        if !super::bf16_available() {
            eprintln!("skipped: this CPU has no AVX-512 BF16, so the decoder never uses mixed precision");
            return;
        }
        let mut cfg = DecoderConfig::new(17, 3);
        (cfg.dim, cfg.layers, cfg.mixed_precision) = (48, 2, true);
        let (y, g) = fused_and_generic(&cfg, (3, 300));
        // ‖bf16 − f32‖ / ‖f32‖. bf16 keeps 8 significant bits (relative rounding 2⁻⁹), so outputs land near
        // 1e-3. Gradients differ more: a pre-activation within rounding of 0 flips its ReLU mask, which
        // passes or stops that unit's whole δ (measured 2.8% here; the same happens under PyTorch's AMP).
        // Garbage would be near 100%, and equality would mean the bf16 products were not taken.
        let l2 = |a: &[f32], b: &[f32]| {
            let d: f32 = a.iter().zip(b).map(|(x, y)| (x - y) * (x - y)).sum();
            (d / b.iter().map(|v| v * v).sum::<f32>()).sqrt()
        };
        let (dy, dg) = (l2(&y[0], &y[1]), l2(&g[0], &g[1]));
        assert!(dy < 5e-3 && dy > 1e-6, "outputs: bf16 vs f32 relative difference {dy}");
        assert!(dg < 6e-2 && dg > 1e-6, "gradients: bf16 vs f32 relative difference {dg}");
    }

    #[test]
    fn outputs_made_without_grad_still_backpropagate() {
        let dev = Device::Cpu;
        let mut cfg = DecoderConfig::new(17, 2);
        (cfg.dim, cfg.layers) = (24, 2);
        let store = ParamStore::new(5, &dev);
        let dec = Decoder::new(&cfg, store.var_builder()).unwrap();
        let mut rng = ChaCha8Rng::seed_from_u64(2);
        let coords = candle_core::Tensor::from_vec(points(2, 30, &mut rng), (2, 30, 3), &dev).unwrap();
        let z = candle_core::Tensor::from_vec(vec![0.3f32, -0.2, 0.1, 0.4], (2, 2), &dev).unwrap();
        let grads = |y: candle_core::Tensor| {
            let g = y.sqr().unwrap().sum_all().unwrap().backward().unwrap();
            let w = &store.named_vars()[1].1;
            g.get(w.as_tensor()).unwrap().flatten_all().unwrap().to_vec1::<f32>().unwrap()
        };
        let Decoder::Fourier(d) = &dec else { panic!("fourier decoder expected") };
        let kept = grads(d.decode(&coords, Some(&z)).unwrap());
        // Nothing was kept, so the backward recomputes the activations: the same gradients.
        let recomputed = grads(crate::no_grad(|| d.decode(&coords, Some(&z))).unwrap());
        assert_eq!(kept, recomputed);
    }

    #[test]
    fn unsupported_layouts_take_the_generic_path() {
        let store = ParamStore::new(5, &Device::Cpu);
        let mut cfg = DecoderConfig::new(17, 2);
        (cfg.dim, cfg.pe_type) = (24, PeType::None);
        assert!(!Decoder::new(&cfg, store.var_builder().pp("a")).unwrap().is_fused());
        // Input width 6·8 + 0 equals the hidden width: cryoDRGN makes the first layer residual.
        let mut cfg = DecoderConfig::new(17, 0);
        cfg.dim = 48;
        assert!(!Decoder::new(&cfg, store.var_builder().pp("b")).unwrap().is_fused());
    }
}
