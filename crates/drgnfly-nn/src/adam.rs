//! Adam with PyTorch's `torch.optim.Adam` semantics and a state that can be saved and restored, so training
//! resumes exactly (candle's `AdamW` keeps its moments private and decouples weight decay).
//!
//! For each parameter θ with gradient g, at its step t = 1, 2, …:
//!
//! ```text
//! g ← g + λ·θ                      (weight_decay λ: L2 added to the gradient, as torch.optim.Adam)
//! m ← β₁·m + (1 − β₁)·g
//! v ← β₂·v + (1 − β₂)·g²
//! θ ← θ − (lr / (1 − β₁ᵗ)) · m / (√v / √(1 − β₂ᵗ) + ε)
//! ```
//!
//! Parameters without a gradient (frozen ones such as `decoder.rand_freqs`, or unused in the graph) are
//! skipped and keep their step count, as in PyTorch. The step count is kept per parameter.
//!
//! On the CPU the update runs in place, three passes over each parameter ([`MomentOp`], [`UpdateOp`]);
//! candle's generic ops (the GPU's path) allocate a temporary per operation, a dozen per parameter, which
//! cost 5% of a `train-vae` epoch (BENCHMARKS.md). The moments are therefore never shared with another
//! tensor: [`Adam::state_tensors`] hands out copies.

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{CpuStorage, DType, InplaceOp3, Layout, Tensor, Var};
use rayon::prelude::*;

use crate::error::{Error, Result};

/// Adam hyperparameters; `Default` is PyTorch's (lr 1e-3) — cryoDRGN passes lr 1e-4.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AdamConfig {
    /// Learning rate.
    pub lr: f64,
    /// First-moment decay β₁.
    pub beta1: f64,
    /// Second-moment decay β₂.
    pub beta2: f64,
    /// Denominator offset ε.
    pub eps: f64,
    /// L2 penalty λ added to the gradient (`--wd`).
    pub weight_decay: f64,
}

impl Default for AdamConfig {
    fn default() -> Self {
        Self { lr: 1e-3, beta1: 0.9, beta2: 0.999, eps: 1e-8, weight_decay: 0.0 }
    }
}

/// State of one parameter.
#[derive(Debug)]
struct Slot {
    name: String,
    var: Var,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
}

/// The optimizer: parameters by name plus their moment estimates. Not `Clone`: the moments change in place,
/// so a clone would share them.
#[derive(Debug)]
pub struct Adam {
    config: AdamConfig,
    slots: Vec<Slot>,
    /// Whether the CPU update may run in place; tests turn it off to compare with candle's generic ops.
    in_place: bool,
}

impl Adam {
    /// Optimise `params` (name, variable); names key the saved state.
    pub fn new(params: Vec<(String, Var)>, config: AdamConfig) -> Result<Self> {
        let checks = [
            ("lr", config.lr >= 0.0),
            ("beta1", (0.0..1.0).contains(&config.beta1)),
            ("beta2", (0.0..1.0).contains(&config.beta2)),
            ("eps", config.eps >= 0.0),
            ("weight_decay", config.weight_decay >= 0.0),
        ];
        if let Some((field, _)) = checks.iter().find(|(_, ok)| !ok) {
            return Err(Error::config(field, format!("invalid Adam setting in {config:?}")));
        }
        let slots = params
            .into_iter()
            .map(|(name, var)| {
                // Two tensors: the CPU update writes each in place.
                let (exp_avg, exp_avg_sq) = (var.zeros_like()?, var.zeros_like()?);
                Ok(Slot { name, exp_avg, exp_avg_sq, var, step: 0 })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { config, slots, in_place: true })
    }

    /// Current hyperparameters.
    pub fn config(&self) -> AdamConfig {
        self.config
    }

    /// Change the learning rate (schedules).
    pub fn set_lr(&mut self, lr: f64) {
        self.config.lr = lr;
    }

    /// Back-propagate `loss` and take one step.
    pub fn backward_step(&mut self, loss: &Tensor) -> Result<()> {
        let grads = loss.backward()?;
        self.step(&grads)
    }

    /// One update of every parameter that has a gradient in `grads` (module docs).
    pub fn step(&mut self, grads: &GradStore) -> Result<()> {
        let AdamConfig { lr, beta1, beta2, eps, weight_decay } = self.config;
        for slot in &mut self.slots {
            let Some(grad) = grads.get(slot.var.as_tensor()) else { continue };
            // A variable's gradient can carry the graph it was computed from (candle detaches the gradients
            // of intermediate nodes only: a conv2d's kernel gradient refers to its input activations), and
            // the moments would then hold every step's graph: memory grew by ~1 GB per epoch.
            let grad = grad.detach();
            let theta = slot.var.as_tensor().detach();
            slot.step += 1;
            let t = slot.step as f64;
            let step_size = lr / (1.0 - beta1.powf(t));
            let bias2_sqrt = (1.0 - beta2.powf(t)).sqrt();
            if self.in_place && in_place(&theta, &grad) {
                let grad = grad.contiguous()?;
                let (m, v) = (&slot.exp_avg, &slot.exp_avg_sq);
                m.inplace_op3(&grad, &theta, &MomentOp { beta: beta1, weight_decay, square: false })?;
                v.inplace_op3(&grad, &theta, &MomentOp { beta: beta2, weight_decay, square: true })?;
                theta.inplace_op3(m, v, &UpdateOp { step_size, bias2_sqrt, eps })?;
                continue;
            }
            let grad = if weight_decay != 0.0 { (grad + (&theta * weight_decay)?)? } else { grad };
            slot.exp_avg = ((&slot.exp_avg * beta1)? + (&grad * (1.0 - beta1))?)?;
            slot.exp_avg_sq = ((&slot.exp_avg_sq * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let denom = ((slot.exp_avg_sq.sqrt()? / bias2_sqrt)? + eps)?;
            let update = ((&slot.exp_avg / denom)? * step_size)?;
            slot.var.set(&(theta - update)?)?;
        }
        Ok(())
    }

    /// The state as tensors: `{name}.exp_avg`, `{name}.exp_avg_sq` (like the parameter) and `{name}.step`
    /// (i64, shape (1,)) for every parameter.
    pub fn state_tensors(&self) -> Result<HashMap<String, Tensor>> {
        let mut out = HashMap::with_capacity(3 * self.slots.len());
        for s in &self.slots {
            // Copies: the moments change in place at the next step.
            out.insert(format!("{}.exp_avg", s.name), s.exp_avg.copy()?);
            out.insert(format!("{}.exp_avg_sq", s.name), s.exp_avg_sq.copy()?);
            let step = i64::try_from(s.step).unwrap_or(i64::MAX);
            out.insert(format!("{}.step", s.name), Tensor::new(&[step], s.var.device())?);
        }
        Ok(out)
    }

    /// Restore a state written by [`Adam::state_tensors`]; every parameter must be present with matching
    /// shapes. `origin` names the file for errors.
    pub fn load_state_tensors(
        &mut self,
        state: &HashMap<String, Tensor>,
        origin: &std::path::Path,
    ) -> Result<()> {
        let mut problems = Vec::new();
        let mut restored = Vec::with_capacity(self.slots.len());
        for s in &self.slots {
            let get = |suffix: &str| state.get(&format!("{}.{suffix}", s.name));
            match (get("exp_avg"), get("exp_avg_sq"), get("step")) {
                (Some(m), Some(v), Some(step)) if m.dims() == s.var.dims() && v.dims() == s.var.dims() => {
                    let step = step.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?;
                    match step.as_slice() {
                        [n] if *n >= 0 => restored.push((m.clone(), v.clone(), *n as u64)),
                        _ => problems.push(format!("`{}.step` must hold one non-negative count", s.name)),
                    }
                }
                (Some(_), Some(_), Some(_)) => problems.push(format!(
                    "moments of `{}` do not have the parameter's shape {:?}",
                    s.name,
                    s.var.dims()
                )),
                _ => problems.push(format!("no optimizer state for `{}`", s.name)),
            }
        }
        if !problems.is_empty() {
            return Err(Error::Checkpoint {
                path: origin.to_path_buf(),
                problem: problems.join("; "),
                hint:
                    "the checkpoint belongs to another model; start without --load or match the architecture",
            });
        }
        for (slot, (m, v, step)) in self.slots.iter_mut().zip(restored) {
            let (dev, dtype) = (slot.var.device(), slot.var.dtype());
            // Copies, for the same reason as in `state_tensors`.
            slot.exp_avg = m.to_dtype(dtype)?.to_device(dev)?.copy()?;
            slot.exp_avg_sq = v.to_dtype(dtype)?.to_device(dev)?.copy()?;
            slot.step = step;
        }
        Ok(())
    }
}

/// Whether the in-place CPU update applies: f32 on the CPU, contiguous parameter.
fn in_place(theta: &Tensor, grad: &Tensor) -> bool {
    theta.device().is_cpu()
        && theta.dtype() == DType::F32
        && grad.dtype() == DType::F32
        && theta.is_contiguous()
}

/// Elements per task of the parallel passes: large parameters use every thread (the passes are
/// memory-bound, and one core does not reach the memory bandwidth), small ones stay on one.
const CHUNK: usize = 1 << 15;

/// m ← β·m + (1 − β)·g′ (g′² with `square`), g′ = g + λ·θ: one moment, in place; sources (g, θ).
struct MomentOp {
    beta: f64,
    weight_decay: f64,
    square: bool,
}

impl InplaceOp3 for MomentOp {
    fn name(&self) -> &'static str {
        "adam-moment"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let (m, g, theta) = operands((s1, l1), (s2, l2), (s3, l3), ["moment", "gradient", "parameter"])?;
        // The factors rounded from f64 as candle's scalar ops round them, so both paths agree to the bit.
        let (keep, take, lambda) = (self.beta as f32, (1.0 - self.beta) as f32, self.weight_decay as f32);
        let square = self.square;
        m.par_chunks_mut(CHUNK).zip(g.par_chunks(CHUNK)).zip(theta.par_chunks(CHUNK)).for_each(
            |((m, g), theta)| {
                for ((m, &g), &th) in m.iter_mut().zip(g).zip(theta) {
                    let g = g + lambda * th;
                    *m = keep * *m + take * if square { g * g } else { g };
                }
            },
        );
        Ok(())
    }
}

/// θ ← θ − step_size · m / (√v / bias2_sqrt + ε), in place; sources (m, v).
struct UpdateOp {
    step_size: f64,
    bias2_sqrt: f64,
    eps: f64,
}

impl InplaceOp3 for UpdateOp {
    fn name(&self) -> &'static str {
        "adam-update"
    }

    fn cpu_fwd(
        &self,
        s1: &mut CpuStorage,
        l1: &Layout,
        s2: &CpuStorage,
        l2: &Layout,
        s3: &CpuStorage,
        l3: &Layout,
    ) -> candle_core::Result<()> {
        let (theta, m, v) =
            operands((s1, l1), (s2, l2), (s3, l3), ["parameter", "first moment", "second moment"])?;
        // Dividing by √(1 − β₂ᵗ) is a product with its f64 reciprocal rounded to f32, as in candle's `x / s`.
        let (step, inv_b2, eps) = (self.step_size as f32, (1.0 / self.bias2_sqrt) as f32, self.eps as f32);
        theta.par_chunks_mut(CHUNK).zip(m.par_chunks(CHUNK)).zip(v.par_chunks(CHUNK)).for_each(
            |((theta, m), v)| {
                for ((th, &m), &v) in theta.iter_mut().zip(m).zip(v) {
                    *th -= step * (m / (v.sqrt() * inv_b2 + eps));
                }
            },
        );
        Ok(())
    }
}

/// The data of an in-place op's three operands (written, read, read), which must have one length; `names`
/// for errors.
fn operands<'a>(
    (s1, l1): (&'a mut CpuStorage, &Layout),
    (s2, l2): (&'a CpuStorage, &Layout),
    (s3, l3): (&'a CpuStorage, &Layout),
    names: [&str; 3],
) -> candle_core::Result<(&'a mut [f32], &'a [f32], &'a [f32])> {
    let a = cpu_slice_mut(s1, l1, &format!("adam: {}", names[0]))?;
    let b = crate::fused::cpu_slice(s2, l2, &format!("adam: {}", names[1]))?;
    let c = crate::fused::cpu_slice(s3, l3, &format!("adam: {}", names[2]))?;
    if b.len() != a.len() || c.len() != a.len() {
        candle_core::bail!(
            "adam: {} {}, {} {}, {} {}",
            a.len(),
            names[0],
            b.len(),
            names[1],
            c.len(),
            names[2]
        );
    }
    Ok((a, b, c))
}

/// The contiguous f32 data of a CPU storage, to write in place.
fn cpu_slice_mut<'a>(s: &'a mut CpuStorage, l: &Layout, what: &str) -> candle_core::Result<&'a mut [f32]> {
    let dtype = candle_core::backend::BackendStorage::dtype(&*s);
    let CpuStorage::F32(v) = s else { candle_core::bail!("{what} must be f32, got {dtype:?}") };
    match l.contiguous_offsets() {
        Some((a, b)) => Ok(&mut v[a..b]),
        None => candle_core::bail!("{what} must be contiguous"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use candle_core::Device;

    /// A conv2d's kernel gradient refers to the layer's input (candle detaches only the gradients of
    /// intermediate nodes): Adam must not keep that graph in its moments, or every step's activations stay
    /// alive (memory grew ~1 GB per epoch with candle's conv2d, and a GPU ran out of memory).
    #[test]
    fn the_moments_keep_no_graph_of_the_step() {
        let dev = Device::Cpu;
        let v = Var::from_tensor(&Tensor::arange(0f32, 64., &dev).unwrap().reshape((1, 1, 8, 8)).unwrap())
            .unwrap();
        let w = Var::from_tensor(&Tensor::ones((2, 1, 3, 3), DType::F32, &dev).unwrap()).unwrap();
        let x = v.as_tensor().relu().unwrap();
        let loss = x.conv2d(w.as_tensor(), 1, 1, 1, 1).unwrap().sqr().unwrap().mean_all().unwrap();
        let grads = loss.backward().unwrap();
        assert!(
            grads.get(w.as_tensor()).unwrap().track_op(),
            "the premise: candle's kernel gradient has a graph"
        );
        let mut adam = Adam::new(vec![("w".into(), w.clone())], AdamConfig::default()).unwrap();
        adam.step(&grads).unwrap();
        let slot = &adam.slots[0];
        assert!(!slot.exp_avg.track_op() && !slot.exp_avg_sq.track_op());
        assert!(!w.as_tensor().detach().track_op());
    }

    /// Scalar Adam by hand, following the module docs.
    fn reference(theta0: f64, grads: &[f64], c: AdamConfig) -> f64 {
        let (mut theta, mut m, mut v) = (theta0, 0.0, 0.0);
        for (i, &g) in grads.iter().enumerate() {
            let t = (i + 1) as f64;
            let g = g + c.weight_decay * theta;
            m = c.beta1 * m + (1.0 - c.beta1) * g;
            v = c.beta2 * v + (1.0 - c.beta2) * g * g;
            theta -= c.lr / (1.0 - c.beta1.powf(t)) * m / (v.sqrt() / (1.0 - c.beta2.powf(t)).sqrt() + c.eps);
        }
        theta
    }

    /// The in-place update of a parameter large enough to be split over threads, with weight decay, follows
    /// the hand computation element by element; moments handed out before a step keep their values.
    #[test]
    fn in_place_steps_of_a_large_parameter_match_hand_computation() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = AdamConfig { lr: 0.05, weight_decay: 0.02, ..Default::default() };
        let n = 3 * CHUNK + 17;
        let start: Vec<f32> = (0..n).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let x = Var::from_vec(start.clone(), n, &dev)?;
        let mut adam = Adam::new(vec![("x".into(), x.clone())], cfg)?;
        // loss = Σ x³ / 3 → g = x², recomputed each step from the current x.
        let mut history = vec![Vec::new(); n];
        let mut before = None;
        for step in 0..4 {
            let now = x.as_tensor().to_vec1::<f32>()?;
            now.iter().zip(&mut history).for_each(|(&v, h)| h.push(f64::from(v * v)));
            if step == 2 {
                before = Some(adam.state_tensors()?["x.exp_avg"].to_vec1::<f32>()?);
                let handed_out = adam.state_tensors()?;
                adam.backward_step(&(x.as_tensor().powf(3.0)? / 3.0)?.sum_all()?)?;
                assert_eq!(handed_out["x.exp_avg"].to_vec1::<f32>()?, before.clone().unwrap());
                continue;
            }
            adam.backward_step(&(x.as_tensor().powf(3.0)? / 3.0)?.sum_all()?)?;
        }
        assert!(before.is_some());
        let got = x.as_tensor().to_vec1::<f32>()?;
        for i in (0..n).step_by(997).chain([n - 1]) {
            let want = reference(f64::from(start[i]), &history[i], cfg);
            assert!((f64::from(got[i]) - want).abs() < 1e-5, "x[{i}] = {} vs {want}", got[i]);
        }
        Ok(())
    }

    /// The in-place CPU update and candle's generic ops (the GPU's path) give the same bits: fixed-seed
    /// outputs must not depend on which path ran.
    #[test]
    fn in_place_and_generic_updates_agree_to_the_bit() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = AdamConfig { lr: 0.05, weight_decay: 0.02, ..Default::default() };
        let start: Vec<f32> = (0..4099).map(|i| ((i * 7919) % 1000) as f32 / 500.0 - 1.0).collect();
        let run = |in_place: bool| -> Result<Vec<u32>> {
            let x = Var::from_vec(start.clone(), start.len(), &dev)?;
            let mut adam = Adam::new(vec![("x".into(), x.clone())], cfg)?;
            adam.in_place = in_place;
            for _ in 0..5 {
                adam.backward_step(&(x.as_tensor().powf(3.0)? / 3.0)?.sum_all()?)?;
            }
            Ok(x.as_tensor().to_vec1::<f32>()?.iter().map(|v| v.to_bits()).collect())
        };
        assert_eq!(run(true)?, run(false)?);
        Ok(())
    }

    #[test]
    fn steps_match_hand_computation() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = AdamConfig { lr: 0.1, weight_decay: 0.01, ..Default::default() };
        let x = Var::new(&[1.5f32, -0.5], &dev)?;
        let frozen = Var::new(&[2.0f32], &dev)?;
        let mut adam = Adam::new(vec![("x".into(), x.clone()), ("frozen".into(), frozen.clone())], cfg)?;
        // loss = Σ x³ → g = 3x², recomputed each step from the current x.
        let mut history: [Vec<f64>; 2] = [vec![], vec![]];
        let mut want = [1.5f64, -0.5];
        for _ in 0..3 {
            let cur = x.as_tensor().to_vec1::<f32>()?;
            for i in 0..2 {
                history[i].push(3.0 * (cur[i] as f64).powi(2));
            }
            adam.backward_step(&x.as_tensor().powf(3.0)?.sum_all()?)?;
            for i in 0..2 {
                want[i] = reference([1.5, -0.5][i], &history[i], cfg);
            }
        }
        let got = x.as_tensor().to_vec1::<f32>()?;
        for i in 0..2 {
            assert!((got[i] as f64 - want[i]).abs() < 1e-5, "x[{i}] = {} vs {}", got[i], want[i]);
        }
        assert_eq!(frozen.as_tensor().to_vec1::<f32>()?, [2.0], "a parameter without gradient must not move");
        Ok(())
    }

    #[test]
    fn saved_state_resumes_exactly() -> Result<()> {
        let dev = Device::Cpu;
        let cfg = AdamConfig { lr: 0.05, ..Default::default() };
        let loss = |x: &Var| -> Result<Tensor> { Ok((x.as_tensor() - 3.0)?.sqr()?.sum_all()?) };
        let run = |steps_before: usize, restore: bool| -> Result<Vec<f32>> {
            let x = Var::new(&[0.0f32, 1.0, 2.0], &dev)?;
            let mut adam = Adam::new(vec![("x".into(), x.clone())], cfg)?;
            for _ in 0..steps_before {
                adam.backward_step(&loss(&x)?)?;
            }
            if restore {
                // Round trip through safetensors bytes on disk, then into a fresh optimizer.
                let dir = tempfile::tempdir().map_err(|e| Error::Io { path: "tempdir".into(), source: e })?;
                let path = dir.path().join("adam.safetensors");
                candle_core::safetensors::save(&adam.state_tensors()?, &path)?;
                let state = candle_core::safetensors::load(&path, &dev)?;
                adam = Adam::new(vec![("x".into(), x.clone())], cfg)?;
                adam.load_state_tensors(&state, &path)?;
            }
            for _ in steps_before..5 {
                adam.backward_step(&loss(&x)?)?;
            }
            Ok(x.as_tensor().to_vec1::<f32>()?)
        };
        let straight = run(5, false)?;
        assert_eq!(run(2, true)?, straight);
        let mut empty = Adam::new(vec![("x".into(), Var::new(&[0f32], &dev)?)], cfg)?;
        let err = empty.load_state_tensors(&HashMap::new(), std::path::Path::new("a.safetensors"));
        assert!(matches!(err, Err(Error::Checkpoint { .. })));
        Ok(())
    }
}
