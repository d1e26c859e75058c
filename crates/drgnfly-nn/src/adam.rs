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

use std::collections::HashMap;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};

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
#[derive(Clone, Debug)]
struct Slot {
    name: String,
    var: Var,
    exp_avg: Tensor,
    exp_avg_sq: Tensor,
    step: u64,
}

/// The optimizer: parameters by name plus their moment estimates.
#[derive(Clone, Debug)]
pub struct Adam {
    config: AdamConfig,
    slots: Vec<Slot>,
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
                let zeros = var.zeros_like()?;
                Ok(Slot { name, exp_avg: zeros.clone(), exp_avg_sq: zeros, var, step: 0 })
            })
            .collect::<Result<Vec<_>>>()?;
        Ok(Self { config, slots })
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
            let grad = if weight_decay != 0.0 { (grad + (&theta * weight_decay)?)? } else { grad };
            slot.step += 1;
            let t = slot.step as f64;
            slot.exp_avg = ((&slot.exp_avg * beta1)? + (&grad * (1.0 - beta1))?)?;
            slot.exp_avg_sq = ((&slot.exp_avg_sq * beta2)? + (grad.sqr()? * (1.0 - beta2))?)?;
            let step_size = lr / (1.0 - beta1.powf(t));
            let bias2_sqrt = (1.0 - beta2.powf(t)).sqrt();
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
            out.insert(format!("{}.exp_avg", s.name), s.exp_avg.clone());
            out.insert(format!("{}.exp_avg_sq", s.name), s.exp_avg_sq.clone());
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
            slot.exp_avg = m.to_dtype(dtype)?.to_device(dev)?;
            slot.exp_avg_sq = v.to_dtype(dtype)?.to_device(dev)?;
            slot.step = step;
        }
        Ok(())
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
