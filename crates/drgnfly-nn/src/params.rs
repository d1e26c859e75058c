//! Named model parameters with PyTorch's default initialisation, drawn from a seeded RNG.
//!
//! candle's `VarMap` initialises from the device RNG, which on the CPU cannot be seeded, so runs are not
//! reproducible and the distributions differ from PyTorch's. [`ParamStore`] is a `VarBuilder` backend that
//! creates every variable on first request and fills it from a ChaCha8 stream keyed by the seed **and the
//! parameter name**, so the values do not depend on construction order.
//!
//! Initialisation honoured (the `Init` hint passed by the layer constructors):
//! - `Init::Uniform { lo, up }`: U(lo, up). [`crate::mlp::linear`] passes ±1/√fan_in for both weight and
//!   bias, which is PyTorch's `nn.Linear` default (kaiming_uniform with a = √5 gives bound
//!   √3·√(2/(1+5))/√fan_in = 1/√fan_in).
//! - `Init::Randn { mean, stdev }`: N(mean, stdev²) (the Gaussian positional-encoding frequencies).
//! - `Init::Const(c)`: all c.
//!
//! Names are the PyTorch state-dict keys (`encoder.main.0.weight`, `decoder.rand_freqs`, ...), so the
//! store can be saved, reloaded and filled from a cryoDRGN checkpoint by name.

use std::collections::{BTreeMap, HashMap};
use std::sync::{Arc, Mutex, MutexGuard};

use candle_core::{DType, Device, Shape, Tensor, Var};
use candle_nn::var_builder::SimpleBackend;
use candle_nn::{Init, VarBuilder};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::{Distribution, Normal};

use crate::error::{Error, Result};

/// Trainable (and frozen) parameters of a model, by state-dict name.
///
/// Cloning shares the variables (cheap `Arc` clone).
#[derive(Clone)]
pub struct ParamStore {
    vars: Arc<Mutex<BTreeMap<String, Var>>>,
    seed: u64,
    device: Device,
}

impl ParamStore {
    /// An empty store whose variables will be initialised from `seed` on `device` (f32).
    pub fn new(seed: u64, device: &Device) -> Self {
        Self { vars: Arc::new(Mutex::new(BTreeMap::new())), seed, device: device.clone() }
    }

    /// A `VarBuilder` that creates (or returns) variables in this store. Build a model with it once.
    pub fn var_builder(&self) -> VarBuilder<'static> {
        VarBuilder::from_backend(Box::new(self.clone()), DType::F32, self.device.clone())
    }

    /// The device the variables live on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// All variables sorted by name.
    pub fn named_vars(&self) -> Vec<(String, Var)> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.clone())).collect()
    }

    /// Snapshot of all values by name (the model's state dict).
    pub fn tensors(&self) -> HashMap<String, Tensor> {
        self.lock().iter().map(|(k, v)| (k.clone(), v.as_tensor().clone())).collect()
    }

    /// Number of scalar parameters.
    pub fn num_params(&self) -> usize {
        self.lock().values().map(|v| v.elem_count()).sum()
    }

    /// Overwrite every variable with the tensor of the same name in `state` (converted to f32 and moved to
    /// this store's device). Every variable must be present with the same shape; extra entries in `state`
    /// are an error too, so a checkpoint of a different architecture is never half-loaded.
    /// `origin` names the file for the error message.
    pub fn load_state(&self, state: &HashMap<String, Tensor>, origin: &std::path::Path) -> Result<()> {
        let vars = self.lock();
        let mut problems = Vec::new();
        for (name, var) in vars.iter() {
            match state.get(name) {
                None => problems.push(format!("missing tensor `{name}` {:?}", var.dims())),
                Some(t) if t.dims() != var.dims() => problems.push(format!(
                    "tensor `{name}` has shape {:?}, the model expects {:?}",
                    t.dims(),
                    var.dims()
                )),
                Some(_) => {}
            }
        }
        for name in state.keys().filter(|k| !vars.contains_key(*k)) {
            problems.push(format!("unexpected tensor `{name}`"));
        }
        if !problems.is_empty() {
            problems.sort();
            return Err(Error::Checkpoint {
                path: origin.to_path_buf(),
                problem: problems.join("; "),
                hint: "the file was written for a different architecture: check zdim, layers, dims, \
                       pe_type/pe_dim and domain in the config",
            });
        }
        for (name, var) in vars.iter() {
            if let Some(t) = state.get(name) {
                var.set(&t.to_dtype(DType::F32)?.to_device(&self.device)?)?;
            }
        }
        Ok(())
    }

    fn lock(&self) -> MutexGuard<'_, BTreeMap<String, Var>> {
        // A poisoned lock only means another thread panicked while holding it; the map itself is intact.
        self.vars.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Fresh values for `name` from the seeded stream, following `init`.
    fn sample(&self, shape: &Shape, name: &str, init: Init) -> candle_core::Result<Tensor> {
        let n = shape.elem_count();
        let mut rng = ChaCha8Rng::seed_from_u64(self.seed ^ fnv1a64(name.as_bytes()));
        let values: Vec<f32> = match init {
            Init::Const(c) => vec![c as f32; n],
            Init::Uniform { lo, up } => {
                let (lo, up) = (lo as f32, up as f32);
                (0..n).map(|_| lo + (up - lo) * rng.random::<f32>()).collect()
            }
            Init::Randn { mean, stdev } => {
                let normal = Normal::new(mean, stdev)
                    .map_err(|e| candle_core::Error::Msg(format!("init of `{name}`: {e}")))?;
                (0..n).map(|_| normal.sample(&mut rng) as f32).collect()
            }
            Init::Kaiming { .. } => {
                return Err(candle_core::Error::Msg(format!(
                    "init of `{name}`: Kaiming hints are not used in drgnfly-nn; pass Init::Uniform bounds"
                )))
            }
        };
        Tensor::from_vec(values, shape.clone(), &self.device)
    }
}

impl SimpleBackend for ParamStore {
    fn get(&self, s: Shape, name: &str, h: Init, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        if let Some(var) = self.lock().get(name) {
            if var.shape() != &s {
                return Err(candle_core::Error::UnexpectedShape {
                    msg: format!("parameter `{name}` requested twice with different shapes"),
                    expected: s,
                    got: var.shape().clone(),
                });
            }
            return var.as_tensor().to_dtype(dtype)?.to_device(dev);
        }
        let var = Var::from_tensor(&self.sample(&s, name, h)?)?;
        let t = var.as_tensor().to_dtype(dtype)?.to_device(dev)?;
        self.lock().insert(name.to_string(), var);
        Ok(t)
    }

    fn get_unchecked(&self, name: &str, dtype: DType, dev: &Device) -> candle_core::Result<Tensor> {
        match self.lock().get(name) {
            Some(var) => var.as_tensor().to_dtype(dtype)?.to_device(dev),
            None => Err(candle_core::Error::CannotFindTensor { path: name.to_string() }),
        }
    }

    fn contains_tensor(&self, name: &str) -> bool {
        self.lock().contains_key(name)
    }
}

/// FNV-1a hash: a fixed, platform-independent way to give each parameter name its own RNG stream.
fn fnv1a64(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, &b| (h ^ u64::from(b)).wrapping_mul(0x0000_0100_0000_01b3))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn uniform_init_is_seeded_bounded_and_has_uniform_variance() -> Result<()> {
        let dev = Device::Cpu;
        let bound = 1.0 / (256f64).sqrt();
        let draw = |seed| -> Result<Vec<f32>> {
            let store = ParamStore::new(seed, &dev);
            let vb = store.var_builder();
            let w = vb.get_with_hints((512, 256), "w", Init::Uniform { lo: -bound, up: bound })?;
            Ok(w.flatten_all()?.to_vec1::<f32>()?)
        };
        let a = draw(7)?;
        assert_eq!(a, draw(7)?, "same seed must give the same values");
        assert_ne!(a, draw(8)?, "another seed must give other values");
        let n = a.len() as f64;
        assert!(a.iter().all(|&x| (x as f64).abs() <= bound));
        let mean = a.iter().map(|&x| x as f64).sum::<f64>() / n;
        let var = a.iter().map(|&x| (x as f64 - mean).powi(2)).sum::<f64>() / n;
        // U(−b, b): mean 0, variance b²/3; with 131072 samples the standard errors are ~0.1% of b.
        assert!(mean.abs() < 0.01 * bound, "mean {mean}");
        assert!((var / (bound * bound / 3.0) - 1.0).abs() < 0.02, "variance {var}");
        Ok(())
    }

    #[test]
    fn values_depend_on_name_not_on_creation_order() -> Result<()> {
        let dev = Device::Cpu;
        let init = Init::Randn { mean: 0.0, stdev: 0.5 };
        let s1 = ParamStore::new(3, &dev);
        let a1 = s1.var_builder().get_with_hints(4, "a", init)?;
        let b1 = s1.var_builder().get_with_hints(4, "b", init)?;
        let s2 = ParamStore::new(3, &dev);
        let b2 = s2.var_builder().get_with_hints(4, "b", init)?;
        let a2 = s2.var_builder().get_with_hints(4, "a", init)?;
        assert_eq!(a1.to_vec1::<f32>()?, a2.to_vec1::<f32>()?);
        assert_eq!(b1.to_vec1::<f32>()?, b2.to_vec1::<f32>()?);
        Ok(())
    }

    #[test]
    fn load_state_rejects_mismatched_shapes_and_names() -> Result<()> {
        let dev = Device::Cpu;
        let store = ParamStore::new(0, &dev);
        store.var_builder().get_with_hints((2, 3), "w", Init::Const(0.0))?;
        let path = std::path::Path::new("ckpt.safetensors");
        let mut state = HashMap::new();
        state.insert("w".to_string(), Tensor::ones((3, 2), DType::F32, &dev)?);
        assert!(matches!(store.load_state(&state, path), Err(Error::Checkpoint { .. })));
        state.insert("w".to_string(), Tensor::ones((2, 3), DType::F32, &dev)?);
        state.insert("extra".to_string(), Tensor::ones(1, DType::F32, &dev)?);
        assert!(matches!(store.load_state(&state, path), Err(Error::Checkpoint { .. })));
        state.remove("extra");
        store.load_state(&state, path)?;
        assert_eq!(store.tensors()["w"].sum_all()?.to_scalar::<f32>()?, 6.0);
        Ok(())
    }
}
