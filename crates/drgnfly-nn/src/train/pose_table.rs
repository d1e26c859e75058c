//! A per-particle pose table that a trainer refines by gradient descent (cryoDRGN's `--do-pose-sgd`, the
//! SGD phase of cryoDRGN-AI): one rotation and one shift per dataset position, each with its own sparse Adam
//! state, so a batch updates only its own rows.
//!
//! Rotations are stored as cryoDRGN's 6-D "s2s2" representation (the matrix's first two rows; Gram–Schmidt
//! gives the third) or as a unit quaternion (Hamilton, scalar first); shifts in pixels. Tables are trainer
//! state: they go into checkpoints under `table.pose.*` and are written as pose.E.pkl by the caller via
//! [`PoseTable::poses`] and [`drgnfly_em::pose::Pose::pkl_trans`].
//!
//! Adam here is "lazy": each row counts its own steps for the bias correction, so a particle seen once an
//! epoch is corrected as a parameter stepped once an epoch (PyTorch's SparseAdam shares one step count).

use std::collections::HashMap;
use std::path::Path;

use candle_core::{Device, Tensor, Var};
use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::quaternion::{matrix_from_quaternion, quaternion_from_matrix};

use super::error::TrainResult;
use super::row_adam::{batch_rows, steps_from, steps_tensor, table_entry, AdamRows, Moments, Stepping};
use crate::error::Error;
use crate::rotation::RotationParam;

/// Learning rates and moments of the table's sparse Adam.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct PoseAdamConfig {
    /// Step size of the rotation parameters.
    pub lr_rot: f64,
    /// Step size of the shifts (pixels).
    pub lr_shift: f64,
    /// First-moment decay.
    pub beta1: f64,
    /// Second-moment decay.
    pub beta2: f64,
    /// Denominator guard.
    pub eps: f64,
    /// Lazy (a batch's rows) or dense (every row, every step) Adam.
    pub stepping: Stepping,
}

impl Default for PoseAdamConfig {
    /// cryoDRGN's pose SGD in `train_vae` (SparseAdam, lr 3e-4) for both parts.
    fn default() -> Self {
        Self { lr_rot: 3e-4, lr_shift: 3e-4, beta1: 0.9, beta2: 0.999, eps: 1e-8, stepping: Stepping::Lazy }
    }
}

impl PoseAdamConfig {
    fn moments(&self) -> Moments {
        Moments { beta1: self.beta1, beta2: self.beta2, eps: self.eps }
    }
}

/// Poses of every particle, refinable per batch.
#[derive(Clone, Debug, PartialEq)]
pub struct PoseTable {
    param: RotationParam,
    adam: PoseAdamConfig,
    rot: AdamRows,
    shift: AdamRows,
    /// Adam steps taken by each row.
    steps: Vec<u32>,
}

impl PoseTable {
    /// A table starting at `poses` (from a consensus refinement, a pose search, or random).
    pub fn new(poses: &[Pose], param: RotationParam, adam: PoseAdamConfig) -> Self {
        let rot = poses.iter().flat_map(|p| encode(&p.rot, param)).collect();
        let shift = poses.iter().flat_map(|p| p.shift_px).collect();
        Self {
            param,
            adam,
            rot: AdamRows::new(param.width(), rot),
            shift: AdamRows::new(2, shift),
            steps: vec![0; poses.len()],
        }
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.steps.len()
    }

    /// Whether the table is empty.
    pub fn is_empty(&self) -> bool {
        self.steps.is_empty()
    }

    /// The rotation parametrisation.
    pub fn param(&self) -> RotationParam {
        self.param
    }

    /// The current pose of position `i`.
    pub fn pose(&self, i: usize) -> Pose {
        let r = self.rot.row(i);
        let s = self.shift.row(i);
        Pose { rot: decode(r, self.param), shift_px: [s[0], s[1]] }
    }

    /// Replace the pose of position `i` (a pose-search result) and restart its optimizer state.
    pub fn set_pose(&mut self, i: usize, pose: Pose) {
        self.rot.reset_row(i, &encode(&pose.rot, self.param));
        self.shift.reset_row(i, &pose.shift_px);
        self.steps[i] = 0;
    }

    /// The current poses of `positions`.
    pub fn batch_poses(&self, positions: &[usize]) -> Vec<Pose> {
        positions.iter().map(|&i| self.pose(i)).collect()
    }

    /// Every current pose, in position order (for pose.E.pkl).
    pub fn poses(&self) -> Vec<Pose> {
        (0..self.len()).map(|i| self.pose(i)).collect()
    }

    /// The rotation parameters `(B, width)` and shifts `(B, 2)` of a batch as variables to differentiate;
    /// turn the rotation parameters into matrices with [`rotation_matrices`].
    pub fn batch_vars(&self, positions: &[usize], device: &Device) -> TrainResult<(Var, Var)> {
        let b = positions.len();
        let rot = Var::from_vec(self.rot.gather(positions), (b, self.param.width()), device)?;
        let shift = Var::from_vec(self.shift.gather(positions), (b, 2), device)?;
        Ok((rot, shift))
    }

    /// One sparse Adam step on the rows of `positions`, with the gradients of the batch's rotation
    /// parameters `(B, width)` and shifts `(B, 2)`, row-major. A position listed twice is stepped twice.
    pub fn step(&mut self, positions: &[usize], grad_rot: &[f32], grad_shift: &[f32]) -> TrainResult<()> {
        let (b, w) = (positions.len(), self.param.width());
        if grad_rot.len() != b * w || grad_shift.len() != b * 2 || positions.iter().any(|&p| p >= self.len())
        {
            return Err(Error::Config {
                field: "pose table",
                problem: format!(
                    "a step needs {b}×{w} rotation and {b}×2 shift gradients for positions below {}; got {} and {}",
                    self.len(),
                    grad_rot.len(),
                    grad_shift.len()
                ),
            }
            .into());
        }
        let k = self.adam.moments();
        if self.adam.stepping == Stepping::Dense {
            let t = self.steps.iter().copied().max().unwrap_or(0) + 1;
            self.steps.fill(t);
            self.rot.dense_update(&batch_rows(positions, grad_rot, w), t, self.adam.lr_rot, k);
            self.shift.dense_update(&batch_rows(positions, grad_shift, 2), t, self.adam.lr_shift, k);
            return Ok(());
        }
        for (j, &p) in positions.iter().enumerate() {
            self.steps[p] += 1;
            let t = self.steps[p];
            self.rot.update(p, &grad_rot[j * w..(j + 1) * w], t, self.adam.lr_rot, k);
            self.shift.update(p, &grad_shift[j * 2..(j + 1) * 2], t, self.adam.lr_shift, k);
        }
        Ok(())
    }

    /// [`Self::step`] with the gradients of the batch's variables from [`Self::batch_vars`] (zero where the
    /// loss did not depend on them).
    pub fn step_with_grads(
        &mut self,
        positions: &[usize],
        (rot, shift): (&Var, &Var),
        grads: &candle_core::backprop::GradStore,
    ) -> TrainResult<()> {
        self.step(positions, &grad_values(rot, grads)?, &grad_values(shift, grads)?)
    }

    /// The table and its optimizer state as named tensors (`pose.rot`, `pose.shift`, `pose.rot.m`, …), for
    /// [`crate::Checkpoint::tables`].
    pub fn state_tensors(&self) -> TrainResult<HashMap<String, Tensor>> {
        let mut out = HashMap::new();
        self.rot.save("pose.rot", &mut out)?;
        self.shift.save("pose.shift", &mut out)?;
        out.insert("pose.steps".into(), steps_tensor(&self.steps)?);
        Ok(out)
    }

    /// Restore what [`Self::state_tensors`] wrote; the checkpoint at `path` must hold a table of the same
    /// size and parametrisation.
    pub fn load_state_tensors(&mut self, tables: &HashMap<String, Tensor>, path: &Path) -> TrainResult<()> {
        let n = self.len();
        let bad = |problem: String| Error::Checkpoint {
            path: path.to_path_buf(),
            problem,
            hint: "resume with the same particles (--ind) and pose settings as the run that wrote it",
        };
        let get = |name: &str, width: usize| table_entry(tables, name, (n, width)).map_err(|p| bad(p).into());
        let rot = AdamRows::load("pose.rot", self.param.width(), &get)?;
        let shift = AdamRows::load("pose.shift", 2, &get)?;
        let steps =
            tables.get("pose.steps").ok_or_else(|| bad("no pose table entry `table.pose.steps`".into()))?;
        let steps = steps_from(steps, n)?
            .ok_or_else(|| bad(format!("`table.pose.steps` must hold {n} step counts")))?;
        (self.rot, self.shift, self.steps) = (rot, shift, steps);
        Ok(())
    }
}

/// The gradient of `v` in `grads`, row-major (zero where the loss did not depend on it).
pub(super) fn grad_values(v: &Var, grads: &candle_core::backprop::GradStore) -> TrainResult<Vec<f32>> {
    Ok(match grads.get(v.as_tensor()) {
        Some(g) => g.flatten_all()?.to_vec1::<f32>()?,
        None => vec![0.0; v.as_tensor().elem_count()],
    })
}

fn encode(r: &drgnfly_em::rotation::Mat3, param: RotationParam) -> Vec<f32> {
    match param {
        RotationParam::SixD => r[..2].iter().flatten().map(|&v| v as f32).collect(),
        RotationParam::Quaternion => quaternion_from_matrix(r).iter().map(|&v| v as f32).collect(),
    }
}

fn decode(p: &[f32], param: RotationParam) -> drgnfly_em::rotation::Mat3 {
    let p: Vec<f64> = p.iter().map(|&v| f64::from(v)).collect();
    match param {
        RotationParam::SixD => {
            let norm = |v: [f64; 3]| {
                let n = v.iter().map(|c| c * c).sum::<f64>().sqrt().max(1e-12);
                v.map(|c| c / n)
            };
            let e1 = norm([p[0], p[1], p[2]]);
            let dot = e1[0] * p[3] + e1[1] * p[4] + e1[2] * p[5];
            let e2 = norm([p[3] - dot * e1[0], p[4] - dot * e1[1], p[5] - dot * e1[2]]);
            let e3 =
                [e1[1] * e2[2] - e1[2] * e2[1], e1[2] * e2[0] - e1[0] * e2[2], e1[0] * e2[1] - e1[1] * e2[0]];
            [e1, e2, e3]
        }
        RotationParam::Quaternion => matrix_from_quaternion([p[0], p[1], p[2], p[3]]),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::rotation::rotation_matrices;
    use drgnfly_em::rotation::random::random_rotations;

    fn close(a: &drgnfly_em::rotation::Mat3, b: &drgnfly_em::rotation::Mat3, tol: f64) -> bool {
        a.iter().flatten().zip(b.iter().flatten()).all(|(x, y)| (x - y).abs() < tol)
    }

    #[test]
    fn both_parametrisations_hold_poses_and_match_the_tensor_map() {
        let rots = random_rotations(5, 11);
        let poses: Vec<Pose> =
            rots.iter().enumerate().map(|(i, &rot)| Pose { rot, shift_px: [i as f32, -0.5] }).collect();
        for param in [RotationParam::SixD, RotationParam::Quaternion] {
            let table = PoseTable::new(&poses, param, PoseAdamConfig::default());
            for (i, p) in poses.iter().enumerate() {
                assert!(close(&table.pose(i).rot, &p.rot, 1e-6), "{param:?} row {i}");
                assert_eq!(table.pose(i).shift_px, p.shift_px);
            }
            let (r, _) = table.batch_vars(&[3, 1], &Device::Cpu).unwrap();
            let m = rotation_matrices(r.as_tensor(), param).unwrap().to_vec3::<f32>().unwrap();
            for (k, &i) in [3usize, 1].iter().enumerate() {
                let mk =
                    m[k].iter().map(|row| [row[0] as f64, row[1] as f64, row[2] as f64]).collect::<Vec<_>>();
                assert!(close(&[mk[0], mk[1], mk[2]], &poses[i].rot, 1e-5), "{param:?} tensor map, row {i}");
            }
        }
    }

    #[test]
    fn sparse_steps_move_only_their_rows_and_fit_a_target() {
        // Fit shifts to a target with the gradient of ½‖s − target‖².
        let poses = vec![Pose::IDENTITY; 4];
        let adam = PoseAdamConfig { lr_shift: 0.05, ..PoseAdamConfig::default() };
        let mut table = PoseTable::new(&poses, RotationParam::SixD, adam);
        let target = [3.0f32, -2.0];
        for _ in 0..400 {
            let s = table.pose(2).shift_px;
            table.step(&[2], &[0.0; 6], &[s[0] - target[0], s[1] - target[1]]).unwrap();
        }
        let s = table.pose(2).shift_px;
        assert!((s[0] - 3.0).abs() < 0.05 && (s[1] + 2.0).abs() < 0.05, "{s:?}");
        assert_eq!(table.pose(1), Pose::IDENTITY, "rows outside the batch keep their pose and state");
        assert_eq!(table.steps, [0, 0, 400, 0]);
        assert!(table.step(&[4], &[0.0; 6], &[0.0; 2]).is_err(), "out-of-range position");

        // The state round-trips through checkpoint tensors exactly.
        let state = table.state_tensors().unwrap();
        let mut other = PoseTable::new(&poses, RotationParam::SixD, adam);
        other.load_state_tensors(&state, Path::new("ckpt")).unwrap();
        assert_eq!(other, table);
        let mut quat = PoseTable::new(&poses, RotationParam::Quaternion, adam);
        assert!(
            quat.load_state_tensors(&state, Path::new("ckpt")).is_err(),
            "6-D state into a quaternion table"
        );
    }
}
