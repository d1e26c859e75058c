//! A block of per-particle parameters (rows of `width` numbers) with Adam moments, shared by the pose table
//! and the conformation table, stepped one of two ways ([`Stepping`]).

use std::collections::HashMap;

use candle_core::{DType, Device, Tensor};

use super::error::TrainResult;

/// Adam's moment decays and denominator guard.
#[derive(Clone, Copy, Debug, PartialEq)]
pub(super) struct Moments {
    pub beta1: f64,
    pub beta2: f64,
    pub eps: f64,
}

impl Default for Moments {
    fn default() -> Self {
        Self { beta1: 0.9, beta2: 0.999, eps: 1e-8 }
    }
}

/// How a table's Adam steps.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Stepping {
    /// Only a batch's rows, each bias-corrected by the steps it has taken (PyTorch's SparseAdam, as
    /// cryoDRGN's `--do-pose-sgd`, but with per-row counts).
    #[default]
    Lazy,
    /// Every row at every step, with a zero gradient outside the batch, as PyTorch's dense Adam on an
    /// embedding (cryoDRGN-AI's tables): a row keeps moving along its momentum after its batch, about
    /// 30× further per gradient than a lazy step once the bias correction has faded (6× over the first 50
    /// steps, unit test in `latent_table.rs`), which is what cryoDRGN-AI's learning rates assume.
    /// Costs O(rows) per step.
    Dense,
}

/// Rows of parameters and their first and second moments.
#[derive(Clone, Debug, PartialEq)]
pub(super) struct AdamRows {
    pub width: usize,
    pub value: Vec<f32>,
    m: Vec<f32>,
    v: Vec<f32>,
}

impl AdamRows {
    pub fn new(width: usize, value: Vec<f32>) -> Self {
        let n = value.len();
        Self { width, value, m: vec![0.0; n], v: vec![0.0; n] }
    }

    pub fn rows(&self) -> usize {
        self.value.len() / self.width.max(1)
    }

    pub fn row(&self, i: usize) -> &[f32] {
        &self.value[i * self.width..(i + 1) * self.width]
    }

    /// Row `i` set to `value` with fresh moments (the owner resets its step count).
    pub fn reset_row(&mut self, i: usize, value: &[f32]) {
        let range = i * self.width..(i + 1) * self.width;
        self.value[range.clone()].copy_from_slice(value);
        self.m[range.clone()].fill(0.0);
        self.v[range].fill(0.0);
    }

    pub fn gather(&self, positions: &[usize]) -> Vec<f32> {
        positions.iter().flat_map(|&p| self.row(p).iter().copied()).collect()
    }

    /// One Adam update of row `row` with gradient `g` at the row's step `t` (≥ 1).
    pub fn update(&mut self, row: usize, g: &[f32], t: u32, lr: f64, k: Moments) {
        let (c1, c2) = (1.0 - k.beta1.powi(t as i32), 1.0 - k.beta2.powi(t as i32));
        for (j, &gj) in g.iter().enumerate() {
            let i = row * self.width + j;
            let gj = f64::from(gj);
            let m = k.beta1 * f64::from(self.m[i]) + (1.0 - k.beta1) * gj;
            let v = k.beta2 * f64::from(self.v[i]) + (1.0 - k.beta2) * gj * gj;
            self.m[i] = m as f32;
            self.v[i] = v as f32;
            let step = lr * (m / c1) / ((v / c2).sqrt() + k.eps);
            self.value[i] = (f64::from(self.value[i]) - step) as f32;
        }
    }

    /// One dense Adam step of every row at global step `t` (≥ 1): `grads` holds `(row, gradient)` for the
    /// batch's rows (others have a zero gradient; a row listed twice takes the sum).
    pub fn dense_update(&mut self, grads: &[(usize, &[f32])], t: u32, lr: f64, k: Moments) {
        let mut g = vec![0f32; self.value.len()];
        for &(row, gr) in grads {
            for (j, &v) in gr.iter().enumerate() {
                g[row * self.width + j] += v;
            }
        }
        let (c1, c2) = (1.0 - k.beta1.powi(t as i32), 1.0 - k.beta2.powi(t as i32));
        let (b1, b2) = (k.beta1 as f32, k.beta2 as f32);
        let step_size = (lr / c1) as f32;
        let c2_sqrt = c2.sqrt() as f32;
        let eps = k.eps as f32;
        for (((x, m), v), g) in self.value.iter_mut().zip(&mut self.m).zip(&mut self.v).zip(&g) {
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *x -= step_size * *m / (v.sqrt() / c2_sqrt + eps);
        }
    }

    /// The rows and moments as `name`, `name.m`, `name.v` (`(rows, width)` tensors) in `out`.
    pub fn save(&self, name: &str, out: &mut HashMap<String, Tensor>) -> TrainResult<()> {
        let n = self.rows();
        for (suffix, data) in [("", &self.value), (".m", &self.m), (".v", &self.v)] {
            out.insert(format!("{name}{suffix}"), Tensor::from_slice(data, (n, self.width), &Device::Cpu)?);
        }
        Ok(())
    }

    /// What [`Self::save`] wrote under `name`; `get(name, width)` reads one tensor, checked to have the
    /// table's rows and `width` columns.
    pub fn load(
        name: &str,
        width: usize,
        get: &dyn Fn(&str, usize) -> TrainResult<Vec<f32>>,
    ) -> TrainResult<Self> {
        Ok(Self {
            width,
            value: get(name, width)?,
            m: get(&format!("{name}.m"), width)?,
            v: get(&format!("{name}.v"), width)?,
        })
    }
}

/// `(row, gradient)` of each position of a batch whose gradients are `g`, `w` per row.
pub(super) fn batch_rows<'a>(positions: &[usize], g: &'a [f32], w: usize) -> Vec<(usize, &'a [f32])> {
    positions.iter().enumerate().map(|(j, &p)| (p, &g[j * w..(j + 1) * w])).collect()
}

/// Per-row step counts as an i64 tensor (checkpoints).
pub(super) fn steps_tensor(steps: &[u32]) -> TrainResult<Tensor> {
    let steps: Vec<i64> = steps.iter().map(|&s| i64::from(s)).collect();
    let n = steps.len();
    Ok(Tensor::from_vec(steps, n, &Device::Cpu)?)
}

/// Step counts read back from [`steps_tensor`]'s tensor: `None` unless it holds `n` counts in u32's range.
pub(super) fn steps_from(t: &Tensor, n: usize) -> TrainResult<Option<Vec<u32>>> {
    let steps = t.to_dtype(DType::I64)?.flatten_all()?.to_vec1::<i64>()?;
    if steps.len() != n || steps.iter().any(|&s| !(0..=i64::from(u32::MAX)).contains(&s)) {
        return Ok(None);
    }
    Ok(Some(steps.into_iter().map(|s| s as u32).collect()))
}

/// Entry `name` of a checkpoint's tables as f32 values, checked to have shape `(rows, width)`; the error is
/// what is wrong, for the caller to wrap with the checkpoint's path.
pub(super) fn table_entry(
    tables: &HashMap<String, Tensor>,
    name: &str,
    (rows, width): (usize, usize),
) -> Result<Vec<f32>, String> {
    let t = tables.get(name).ok_or_else(|| format!("no table entry `table.{name}`"))?;
    if t.dims() != [rows, width] {
        return Err(format!("`table.{name}` has shape {:?}, expected [{rows}, {width}]", t.dims()));
    }
    let values = t.to_dtype(DType::F32).and_then(|t| t.flatten_all()).and_then(|t| t.to_vec1::<f32>());
    values.map_err(|e| format!("`table.{name}`: {e}"))
}
