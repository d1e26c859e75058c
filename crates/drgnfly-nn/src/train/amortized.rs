//! Amortized homogeneous ab initio (cryoAI): a CNN encoder ([`crate::cnn`]) predicts each image's rotation
//! and shift, and the coordinate decoder renders the slice at that pose (CTF and shift applied); encoder and
//! decoder train together on the image MSE, with no per-particle search or table. Memory and time per
//! image do not depend on the dataset's size.
//!
//! **Symmetrized loss** (cryoAI): each image Y also goes through the pipeline rotated in-plane by π, R_π[Y],
//! and the image's loss is min(‖Ŷ − Γ(Y)‖², ‖R_π[Y] − Γ(R_π[Y])‖²), where Γ is encode-then-render. An
//! encoder stuck on the mirror of the right pose for an image fits its rotated twin instead, which removes the
//! mirror minimum that otherwise traps gradient descent on poses.
//!
//! The encoder sees the real-space image, each image standardised (zero mean, unit variance). The poses it
//! predicts for each batch are kept in a pose table, so the driver writes them as pose.E.pkl; they are the
//! predictions at the time each image was last seen.

use std::path::Path;

use candle_core::{Tensor, D};
use drgnfly_em::pose::Pose;
use drgnfly_em::rotation::Mat3;

use super::batch::{BatchPrep, PreparedBatch};
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::pose_table::{PoseAdamConfig, PoseTable};
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::cnn::{CnnConfig, CnnEncoder};
use crate::decoder::{Decoder, DecoderConfig};
use crate::error::Error;
use crate::params::ParamStore;
use crate::rotation::{rotation_matrices, RotationParam};

/// Encoder, decoder and optimizer of a cryoAI run.
pub struct AmortizedTrainer {
    store: ParamStore,
    encoder: CnnEncoder,
    decoder: Decoder,
    adam: Adam,
    prep: BatchPrep,
    symmetrized: bool,
    /// The latest predicted pose of every particle.
    poses: PoseTable,
}

impl AmortizedTrainer {
    /// A fresh encoder and decoder (homogeneous: `decoder.zdim` 0) from `seed` for `n` particles; the
    /// symmetrized loss unless `symmetrized` is false. Parameters are named `encoder.*` and `decoder.*`.
    pub fn new(
        (encoder, decoder): (&CnnConfig, &DecoderConfig),
        seed: u64,
        adam: AdamConfig,
        prep: BatchPrep,
        n: usize,
        symmetrized: bool,
    ) -> TrainResult<Self> {
        if decoder.zdim != 0 || encoder.zdim != 0 || encoder.d != prep.image_size() {
            return Err(Error::Config {
                field: "amortized model",
                problem: format!(
                    "a homogeneous run takes no latent (encoder zdim {}, decoder zdim {}) and an encoder for the \
                     images' size {} (got {})",
                    encoder.zdim,
                    decoder.zdim,
                    prep.image_size(),
                    encoder.d
                ),
            }
            .into());
        }
        let store = ParamStore::new(seed, prep.device());
        let vb = store.var_builder();
        let enc = CnnEncoder::new(encoder, vb.pp("encoder"))?;
        let dec = Decoder::new(decoder, vb.pp("decoder"))?;
        let adam = Adam::new(store.named_vars(), adam)?;
        let poses = PoseTable::new(&vec![Pose::IDENTITY; n], RotationParam::SixD, PoseAdamConfig::default());
        Ok(Self { store, encoder: enc, decoder: dec, adam, prep, symmetrized, poses })
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The parameters.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Rotations (B, 3, 3) and shifts (B, 2, pixels) the encoder predicts for raw images (B·D·D).
    pub fn predict(&self, raw: &[f32]) -> TrainResult<(Tensor, Tensor)> {
        let d = self.prep.image_size();
        let b = raw.len() / (d * d);
        let mut x = raw.to_vec();
        for img in x.chunks_exact_mut(d * d) {
            let mean = img.iter().map(|&v| f64::from(v)).sum::<f64>() / img.len() as f64;
            let var = img.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / img.len() as f64;
            let scale = 1.0 / var.sqrt().max(1e-12);
            img.iter_mut().for_each(|v| *v = ((f64::from(*v) - mean) * scale) as f32);
        }
        let out = self.encoder.forward(&Tensor::from_vec(x, (b, d, d), self.prep.device())?)?;
        Ok((rotation_matrices(&out.rotation, RotationParam::SixD)?, out.shift))
    }

    /// Per-image MSE (B) of images `raw` (B·D·D) rendered at the encoder's poses, and those poses.
    fn branch(
        &self,
        raw: &[f32],
        ctf: Option<&[drgnfly_em::ctf::CtfParams]>,
    ) -> TrainResult<(Tensor, Tensor, Tensor)> {
        let (rot, shift) = self.predict(raw)?;
        let (sym, ctf) = self.prep.hartley_and_ctf(raw, ctf)?;
        let b = rot.dim(0)?;
        let batch = self.prep.prepare_refinable(sym, ctf, &vec![Pose::IDENTITY; b], (&rot, &shift))?;
        Ok((per_image_mse(&self.decoder, &batch)?, rot, shift))
    }
}

/// ‖CTF·slice − target‖² averaged over each image's mask points: (B).
fn per_image_mse(decoder: &Decoder, batch: &PreparedBatch) -> TrainResult<Tensor> {
    let slice = decoder.forward(&batch.coords, None)?;
    let pred = match &batch.ctf {
        Some(c) => (slice * c)?,
        None => slice,
    };
    Ok((pred - &batch.target)?.sqr()?.mean(D::Minus1)?)
}

/// The image rotated in-plane by π about the centre pixel (D/2, D/2): pixel (y, x) ← (D − y, D − x) mod D.
fn rotate_half_turn(raw: &[f32], d: usize) -> Vec<f32> {
    let mut out = vec![0f32; raw.len()];
    for (img, dst) in raw.chunks_exact(d * d).zip(out.chunks_exact_mut(d * d)) {
        for y in 0..d {
            for x in 0..d {
                dst[y * d + x] = img[((d - y) % d) * d + (d - x) % d];
            }
        }
    }
    out
}

impl Trainer for AmortizedTrainer {
    fn loss_terms(&self) -> &'static [&'static str] {
        &["loss"]
    }

    fn step(&mut self, step: Step<'_>) -> TrainResult<Vec<f32>> {
        let ctf = step.data.batch_ctf(step.positions);
        let (mse, rot, shift) = self.branch(step.images, ctf.as_deref())?;
        let per_image = if self.symmetrized {
            let twin = rotate_half_turn(step.images, self.prep.image_size());
            let (mse_twin, _, _) = self.branch(&twin, ctf.as_deref())?;
            mse.minimum(&mse_twin)?
        } else {
            mse
        };
        let loss = per_image.mean_all()?;
        let value = loss.to_scalar::<f32>()?;
        if !value.is_finite() {
            return Err(Error::NonFinite {
                term: "loss",
                value,
                hint: "check the images and the normalisation for NaN/Inf, or lower the learning rate",
            }
            .into());
        }
        self.adam.backward_step(&loss)?;
        let (rot, shift) = (rot.to_vec3::<f32>()?, shift.to_vec2::<f32>()?);
        for ((&i, r), t) in step.positions.iter().zip(rot).zip(shift) {
            let m: Mat3 = std::array::from_fn(|a| std::array::from_fn(|b| f64::from(r[a][b])));
            self.poses.set_pose(i, Pose { rot: m, shift_px: [t[0], t[1]] });
        }
        Ok(vec![value])
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(&self.store, Some(&self.adam))?;
        ckpt.tables = self.poses.state_tensors()?;
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(&self.store, Some(&mut self.adam), path)?;
        self.poses.load_state_tensors(&ckpt.tables, path)
    }

    fn pose_table(&self) -> Option<&PoseTable> {
        Some(&self.poses)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_half_turn_keeps_the_centre_and_twice_is_the_identity() {
        let d = 4;
        let img: Vec<f32> = (0..16).map(|v| v as f32).collect();
        let r = rotate_half_turn(&img, d);
        assert_eq!(r[2 * d + 2], img[2 * d + 2]);
        assert_eq!(r[2 * d + 3], img[2 * d + 1]);
        assert_eq!(r[3 * d + 2], img[d + 2]);
        assert_eq!(rotate_half_turn(&r, d), img);
    }
}
