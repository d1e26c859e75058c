//! A per-particle conformation table (cryoDRGN-AI's `ConfTable`, an autodecoder): one latent z per dataset
//! position, started at N(0, σ₀²) and optimised by sparse Adam beside the decoder; with `variational`, a
//! log-variance per particle too, and the decoder sees z = μ + ε·exp(½ log σ²).
//!
//! Checkpointed under `table.conf.*`; the means are written as z.E.pkl by the caller.

use std::collections::HashMap;
use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::{Device, Tensor, Var};
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;
use rand_distr::StandardNormal;

use super::error::TrainResult;
use super::pose_table::grad_values;
use super::row_adam::{batch_rows, steps_from, steps_tensor, table_entry, AdamRows, Moments, Stepping};
use crate::error::Error;

/// The latent of every particle.
#[derive(Clone, Debug, PartialEq)]
pub struct LatentTable {
    z: AdamRows,
    logvar: Option<AdamRows>,
    lr: f64,
    stepping: Stepping,
    steps: Vec<u32>,
}

/// A batch's latents as variables: the means and, for a variational table, the log-variances.
pub struct LatentVars {
    /// `(B, zdim)`.
    pub mu: Var,
    /// `(B, zdim)`, for a variational table.
    pub logvar: Option<Var>,
}

impl LatentTable {
    /// `n` latents of `zdim` drawn from N(0, `std_init`²) (stream 0 of `seed`); log-variances start at
    /// log(`std_init`²) when `variational`; Adam of step size `lr` steps them as `stepping` says.
    pub fn new(
        n: usize,
        zdim: usize,
        (std_init, variational): (f64, bool),
        (lr, stepping): (f64, Stepping),
        seed: u64,
    ) -> Self {
        let mut rng = ChaCha8Rng::seed_from_u64(seed);
        let z = (0..n * zdim).map(|_| (std_init * rng.sample::<f64, _>(StandardNormal)) as f32).collect();
        let logvar = variational
            .then(|| AdamRows::new(zdim, vec![(std_init * std_init).max(1e-12).ln() as f32; n * zdim]));
        Self { z: AdamRows::new(zdim, z), logvar, lr, stepping, steps: vec![0; n] }
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// Latent dimension.
    pub fn zdim(&self) -> usize {
        self.z.width
    }

    /// Whether each latent has a variance (sampled in training, with a KL term).
    pub fn is_variational(&self) -> bool {
        self.logvar.is_some()
    }

    /// The mean latent of particle `i`.
    pub fn mean(&self, i: usize) -> &[f32] {
        self.z.row(i)
    }

    /// Every particle's mean latent, row-major `(n, zdim)`.
    pub fn means(&self) -> &[f32] {
        &self.z.value
    }

    /// Every particle's log-variance, for a variational table.
    pub fn logvars(&self) -> Option<&[f32]> {
        self.logvar.as_ref().map(|l| l.value.as_slice())
    }

    /// The rows of `positions` as variables to differentiate.
    pub fn batch_vars(&self, positions: &[usize], device: &Device) -> TrainResult<LatentVars> {
        let shape = (positions.len(), self.zdim());
        let mu = Var::from_vec(self.z.gather(positions), shape, device)?;
        let logvar = match &self.logvar {
            Some(l) => Some(Var::from_vec(l.gather(positions), shape, device)?),
            None => None,
        };
        Ok(LatentVars { mu, logvar })
    }

    /// The latents the decoder sees for `vars`: the means, or a sample `μ + ε·exp(½ log σ²)` with ε drawn
    /// from `rng` in row order.
    pub fn sample(vars: &LatentVars, rng: &mut impl Rng) -> TrainResult<Tensor> {
        let mu = vars.mu.as_tensor();
        let Some(logvar) = &vars.logvar else { return Ok(mu.clone()) };
        let (b, zdim) = mu.dims2()?;
        let eps: Vec<f32> = (0..b * zdim).map(|_| rng.sample::<f32, _>(StandardNormal)).collect();
        let eps = Tensor::from_vec(eps, (b, zdim), mu.device())?;
        Ok((mu + (logvar.as_tensor() * 0.5)?.exp()?.mul(&eps)?)?)
    }

    /// The gradients of a batch's variables, row-major (zero where the loss did not depend on them).
    pub fn grads(vars: &LatentVars, grads: &GradStore) -> TrainResult<(Vec<f32>, Option<Vec<f32>>)> {
        let grad = |v: &Var| grad_values(v, grads);
        Ok((grad(&vars.mu)?, vars.logvar.as_ref().map(grad).transpose()?))
    }

    /// Overwrite the rows of `positions` (means, and log-variances of a variational table), row-major: the
    /// record of the latents an image encoder predicted (`abinit --use-conf-encoder`), which take no steps.
    pub fn set_rows(&mut self, positions: &[usize], mu: &[f32], logvar: Option<&[f32]>) -> TrainResult<()> {
        let w = self.zdim();
        let bad_logvar =
            logvar.is_some_and(|l| l.len() != mu.len()) || logvar.is_some() != self.is_variational();
        if positions.iter().any(|&p| p >= self.len()) || mu.len() != positions.len() * w || bad_logvar {
            return Err(Error::Config {
                field: "conformation table",
                problem: format!("{} positions given {} latent values", positions.len(), mu.len()),
            }
            .into());
        }
        for (k, &p) in positions.iter().enumerate() {
            self.z.reset_row(p, &mu[k * w..(k + 1) * w]);
            if let (Some(rows), Some(l)) = (self.logvar.as_mut(), logvar) {
                rows.reset_row(p, &l[k * w..(k + 1) * w]);
            }
        }
        Ok(())
    }

    /// One Adam step from the gradients of the rows of `positions` (means, and log-variances for a
    /// variational table), row-major.
    pub fn step(&mut self, positions: &[usize], g_mu: &[f32], g_logvar: Option<&[f32]>) -> TrainResult<()> {
        let w = self.zdim();
        let bad_logvar = g_logvar.is_some_and(|g| g.len() != g_mu.len());
        if positions.iter().any(|&p| p >= self.len()) || g_mu.len() != positions.len() * w || bad_logvar {
            return Err(Error::Config {
                field: "conformation table",
                problem: format!("a step for {} positions got {} gradients", positions.len(), g_mu.len()),
            }
            .into());
        }
        let k = Moments::default();
        if self.stepping == Stepping::Dense {
            let t = self.steps.iter().copied().max().unwrap_or(0) + 1;
            self.steps.fill(t);
            self.z.dense_update(&batch_rows(positions, g_mu, w), t, self.lr, k);
            if let (Some(l), Some(g)) = (self.logvar.as_mut(), g_logvar) {
                l.dense_update(&batch_rows(positions, g, w), t, self.lr, k);
            }
            return Ok(());
        }
        for (j, &p) in positions.iter().enumerate() {
            self.steps[p] += 1;
            let t = self.steps[p];
            self.z.update(p, &g_mu[j * w..(j + 1) * w], t, self.lr, k);
            if let (Some(l), Some(g)) = (self.logvar.as_mut(), g_logvar) {
                l.update(p, &g[j * w..(j + 1) * w], t, self.lr, k);
            }
        }
        Ok(())
    }

    /// The table and its optimizer state as named tensors (`conf.z`, `conf.z.m`, …) for checkpoints.
    pub fn state_tensors(&self) -> TrainResult<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        self.z.save("conf.z", &mut out)?;
        if let Some(l) = &self.logvar {
            l.save("conf.logvar", &mut out)?;
        }
        out.insert("conf.steps".into(), steps_tensor(&self.steps)?);
        Ok(out)
    }

    /// Restore what [`Self::state_tensors`] wrote (read from `path`).
    pub fn load_state_tensors(&mut self, tables: &HashMap<String, Tensor>, path: &Path) -> TrainResult<()> {
        let (n, w) = (self.len(), self.zdim());
        let bad = |problem: String| {
            Error::Checkpoint {
            path: path.to_path_buf(),
            problem,
            hint: "resume with the same particles (--ind), --zdim and --variational-het as the run that wrote it",
        }
        };
        let get = |name: &str, width: usize| table_entry(tables, name, (n, width)).map_err(|p| bad(p).into());
        let z = AdamRows::load("conf.z", w, &get)?;
        let logvar = match self.logvar {
            Some(_) => Some(AdamRows::load("conf.logvar", w, &get)?),
            None => None,
        };
        let steps =
            tables.get("conf.steps").ok_or_else(|| bad("no table entry `table.conf.steps`".into()))?;
        let steps =
            steps_from(steps, n)?.ok_or_else(|| bad(format!("`table.conf.steps` must hold {n} counts")))?;
        (self.z, self.logvar, self.steps) = (z, logvar, steps);
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_step_moves_only_the_batch_rows_and_state_round_trips() {
        let mut t = LatentTable::new(5, 2, (0.1, true), (1e-2, Stepping::Lazy), 3);
        let before = t.clone();
        let vars = t.batch_vars(&[1, 3], &Device::Cpu).unwrap();
        let loss = (vars.mu.as_tensor().sqr().unwrap().sum_all().unwrap()
            + vars.logvar.as_ref().unwrap().as_tensor().sum_all().unwrap())
        .unwrap();
        let (g_mu, g_logvar) = LatentTable::grads(&vars, &loss.backward().unwrap()).unwrap();
        t.step(&[1, 3], &g_mu, g_logvar.as_deref()).unwrap();
        for i in 0..5 {
            let moved = t.mean(i) != before.mean(i);
            assert_eq!(moved, i == 1 || i == 3, "row {i}");
        }
        // Adam's first step moves each coordinate by lr against the gradient's sign.
        for (a, b) in t.mean(1).iter().zip(before.mean(1)) {
            assert!((a - b).abs() > 0.9e-2 && (a - b).abs() < 1.1e-2 && a.abs() < b.abs(), "{a} {b}");
        }
        let mut fresh = LatentTable::new(5, 2, (0.1, true), (1e-2, Stepping::Lazy), 99);
        fresh.load_state_tensors(&t.state_tensors().unwrap(), Path::new("w")).unwrap();
        assert_eq!(fresh, t);
        let mut wrong = LatentTable::new(4, 2, (0.1, true), (1e-2, Stepping::Lazy), 0);
        let err = wrong.load_state_tensors(&t.state_tensors().unwrap(), Path::new("w")).unwrap_err();
        assert!(err.to_string().contains("expected [4, 2]"), "{err}");
    }

    #[test]
    fn dense_steps_keep_moving_rows_outside_the_batch() {
        // PyTorch's Adam on an embedding: after one gradient, the row drifts along its momentum while
        // other rows are stepped (m decays by 0.9 per step, √v by 0.9995).
        let mut dense = LatentTable::new(3, 1, (0.1, false), (1e-2, Stepping::Dense), 1);
        let mut lazy = LatentTable::new(3, 1, (0.1, false), (1e-2, Stepping::Lazy), 1);
        let start = dense.mean(0)[0];
        for t in [&mut dense, &mut lazy] {
            t.step(&[0], &[1.0], None).unwrap();
            for _ in 0..50 {
                t.step(&[2], &[0.0], None).unwrap();
            }
        }
        assert!((lazy.mean(0)[0] - (start - 1e-2)).abs() < 1e-6);
        let moved = start - dense.mean(0)[0];
        // The first step's 1e-2 (the bias-corrected Adam step) then Σ 0.9^k·0.1/√(0.001·0.999^k)·1e-2.
        let expected: f64 = 1e-2
            + (1..=50)
                .map(|k| {
                    0.9f64.powi(k) / 0.999f64.powi(k).sqrt() * 0.1 / (1.0 - 0.9f64.powi(k + 1)) * 1e-2
                        / (0.001f64.sqrt() / (1.0 - 0.999f64.powi(k + 1)).sqrt())
                })
                .sum::<f64>();
        // Five times the lazy table's single step.
        assert!(
            moved > 0.05 && (f64::from(moved) - expected).abs() < 0.05 * expected,
            "{moved} vs {expected}"
        );
    }
}
