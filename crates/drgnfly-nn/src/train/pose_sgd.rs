//! Local pose refinement by gradient descent (cryoDRGN's `--do-pose-sgd` in `train_vae` and `train_nn`):
//! the given poses start a [`PoseTable`]; after `start_after` epochs of training on them as they are, each
//! batch's rotations and shifts become variables of the loss and take a sparse Adam step beside the model.
//!
//! The gradient reaches the poses through the slice coordinates (the decoder's input) and the phase shift
//! of the target ([`BatchPrep::prepare_refinable`]). Unlike cryoDRGN, either decoder domain works: the
//! Fourier decoder's mirrored pairs stay exact under a differentiable rotation.

use std::path::Path;

use candle_core::backprop::GradStore;
use candle_core::Var;
use drgnfly_em::pose::Pose;

use super::batch::{BatchPrep, PreparedBatch};
use super::driver::Step;
use super::error::TrainResult;
use super::pose_table::{grad_values, PoseAdamConfig, PoseTable};
use crate::checkpoint::Checkpoint;
use crate::rotation::{rotation_matrices, RotationParam};

/// A pose table and when its refinement starts.
#[derive(Clone, Debug)]
pub struct PoseRefinement {
    table: PoseTable,
    start_after: usize,
}

/// A batch prepared for refinement and the variables its poses are.
pub struct RefinableBatch {
    /// Tensors whose target and coordinates depend on `vars` (or a plain batch before refinement starts).
    pub batch: PreparedBatch,
    /// The batch's rotation parameters and shifts, when refining in this epoch.
    pub vars: Option<(Var, Var)>,
}

/// The batch of `step` for a trainer that may refine poses: at the dataset's poses without a refinement,
/// else at the refinement's (as variables in its refining epochs).
pub(super) fn prepare_step(
    refine: Option<&PoseRefinement>,
    prep: &BatchPrep,
    step: &Step<'_>,
) -> TrainResult<RefinableBatch> {
    crate::phases::time(crate::phases::Phase::Prepare, || match refine {
        Some(r) => r.prepare(prep, step),
        None => Ok(RefinableBatch {
            batch: prep.prepare_positions(step.data, step.positions, step.images)?,
            vars: None,
        }),
    })
}

impl PoseRefinement {
    /// Refine `poses` (one per dataset position) after `start_after` epochs (cryoDRGN's `--pretrain`), with
    /// rotations parametrised as `param` and the table's Adam settings.
    pub fn new(poses: &[Pose], param: RotationParam, adam: PoseAdamConfig, start_after: usize) -> Self {
        Self { table: PoseTable::new(poses, param, adam), start_after }
    }

    /// The current poses.
    pub fn table(&self) -> &PoseTable {
        &self.table
    }

    /// Whether epoch `epoch` (1-based) refines poses.
    pub fn active(&self, epoch: usize) -> bool {
        epoch > self.start_after
    }

    /// The batch of `step` at the table's poses: with its poses as variables in refining epochs.
    pub fn prepare(&self, prep: &BatchPrep, step: &Step<'_>) -> TrainResult<RefinableBatch> {
        let poses = self.table.batch_poses(step.positions);
        let (sym, ctf) = prep.hartley_and_ctf(step.images, step.data.batch_ctf(step.positions).as_deref())?;
        if !self.active(step.epoch) {
            return Ok(RefinableBatch { batch: prep.prepare_hartley(sym, ctf, &poses)?, vars: None });
        }
        let (rot, shift) = self.table.batch_vars(step.positions, prep.device())?;
        let matrices = rotation_matrices(rot.as_tensor(), self.table.param())?;
        let batch = prep.prepare_refinable(sym, ctf, &poses, (&matrices, shift.as_tensor()))?;
        Ok(RefinableBatch { batch, vars: Some((rot, shift)) })
    }

    /// In refining epochs, the sparse Adam step of the batch's rows from the loss's gradients (`vars`, the
    /// step's pose variables; `None` for an empty share). On more than one process, every process steps
    /// the rows of the whole batch with the gradients of the whole batch's mean loss, so the tables stay
    /// identical.
    pub fn update(
        &mut self,
        step: &Step<'_>,
        vars: Option<&(Var, Var)>,
        grads: &GradStore,
    ) -> TrainResult<()> {
        if !self.active(step.epoch) {
            return Ok(());
        }
        let (rot, shift) = match vars {
            Some((r, s)) => (grad_values(r, grads)?, grad_values(s, grads)?),
            None => (Vec::new(), Vec::new()),
        };
        let share = step.share();
        let rot = share.gather_gradient_rows(rot, self.table.param().width())?;
        self.table.step(step.batch, &rot, &share.gather_gradient_rows(shift, 2)?)
    }

    /// Put the table and its optimizer state into `ckpt`'s tables.
    pub fn save(&self, ckpt: &mut Checkpoint) -> TrainResult<()> {
        ckpt.tables.extend(self.table.state_tensors()?);
        Ok(())
    }

    /// Restore the table from a checkpoint written by [`Self::save`].
    pub fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        self.table.load_state_tensors(&ckpt.tables, path)
    }
}
