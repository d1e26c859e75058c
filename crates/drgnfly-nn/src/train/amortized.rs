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
//! **Conditional pose prediction** (HetACUMN's CPP, λ_p = [`CppConfig::weight`]): with each batch, the
//! current map (decoded every `refresh_images` images, outside autograd: the decoder is frozen for this
//! task) is projected at uniformly random rotations and shifts, with the CTFs of the batch's particles and
//! Gaussian noise at the dataset's SNR (estimated from the first batch: pixel-to-pixel differences outside the
//! particle circle are noise), and the encoder's poses for those images are supervised:
//! λ_p·(‖R̂ − R‖²_F + ‖t̂ − t‖²/s²), s the largest shift. It teaches the encoder to invert projections
//! everywhere on the sphere, which the reconstruction loss alone does not (its predictions crowd together).
//!
//! The encoder sees the real-space image, each image standardised (zero mean, unit variance) and rolled by
//! whole pixels to its density centroid ([`crate::cnn::centre_by_centroid`]); its shift head predicts the
//! rest of the shift. The poses it
//! predicts for each batch are kept in a pose table, so the driver writes them as pose.E.pkl; they are the
//! predictions at the time each image was last seen.

use std::path::Path;

use candle_core::{Device, Tensor, D};
use drgnfly_em::pose::Pose;

use drgnfly_em::hartley::HartleyPlan;
use drgnfly_em::project::Projector;
use drgnfly_em::simulate::{simulate, CtfSource, SimConfig, States};

use super::batch::{BatchPrep, PreparedBatch};
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::homo::{finite_loss, residual};
use super::pose_table::{PoseAdamConfig, PoseTable};
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::cnn::{centre_by_centroid, CnnConfig, CnnEncoder};
use crate::decoder::{Decoder, DecoderConfig};
use crate::error::Error;
use crate::params::ParamStore;
use crate::rotation::{rotation_matrices, RotationParam};

/// The conditional pose-prediction task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CppConfig {
    /// λ_p; 0 switches the task off.
    pub weight: f64,
    /// Images between decodings of the map the task projects.
    pub refresh_images: u64,
    /// Shifts of the synthetic images are uniform in ±this (pixels).
    pub max_shift_px: f32,
    /// SNR of the synthetic images; `None`: estimated from the data (noiseless when the data are).
    pub snr: Option<f64>,
}

impl AmortizedTrainer {
    /// Project `volume` (D³, real space, the particles' contrast) for the pose-prediction task instead of the
    /// current map: a diagnostic of the encoder alone, or a run that starts from a known reference.
    pub fn with_cpp_reference(mut self, volume: &[f32]) -> TrainResult<Self> {
        let projector = Projector::new(volume, self.prep.image_size(), 1)?;
        self.cpp_map = Some(CppMap { volume: volume.to_vec(), projector, decoded_at: u64::MAX });
        Ok(self)
    }
}

/// The map the CPP task projects (real space, kept for checkpoints), and when it was decoded (`u64::MAX`
/// for a reference map).
struct CppMap {
    volume: Vec<f32>,
    projector: Projector,
    decoded_at: u64,
}

/// Checkpoint names of the pose-prediction task's state.
const CPP_VOLUME: &str = "cpp.volume";
const CPP_DECODED_AT: &str = "cpp.decoded_at";
const CPP_SNR: &str = "cpp.snr";

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
    cpp: CppConfig,
    cpp_map: Option<CppMap>,
    /// The SNR the synthetic images get: `Some(None)` for noiseless data, `None` until estimated.
    cpp_snr: Option<Option<f64>>,
    seed: u64,
    norm: crate::decoder::DataNorm,
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
        (symmetrized, cpp): (bool, CppConfig),
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
        let norm = crate::decoder::DataNorm { mean: prep.norm().mean, std: prep.norm().std };
        let cpp_snr = cpp.snr.map(Some);
        Ok(Self {
            store,
            encoder: enc,
            decoder: dec,
            adam,
            prep,
            symmetrized,
            poses,
            cpp,
            cpp_map: None,
            cpp_snr,
            seed,
            norm,
        })
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
        predict(&self.encoder, raw, self.prep.device())
    }

    /// The poses the encoder predicts for raw images (B·D·D), without keeping anything for a backward pass:
    /// the inference pass at the end of training.
    pub fn infer_poses(&self, raw: &[f32]) -> TrainResult<Vec<Pose>> {
        infer_poses(&self.encoder, raw, self.prep.device())
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

/// Rotations (B, 3, 3) and shifts (B, 2, pixels) `encoder` predicts for raw images (B·D·D). Each image is
/// standardised (zero mean, unit variance) and rolled by whole pixels to its density centroid; the trunk sees
/// that, and the shift head predicts what the roll left.
fn predict(encoder: &CnnEncoder, raw: &[f32], device: &Device) -> TrainResult<(Tensor, Tensor)> {
    let d = encoder.config().d;
    let b = raw.len() / (d * d);
    let mut x = raw.to_vec();
    for img in x.chunks_exact_mut(d * d) {
        let mean = img.iter().map(|&v| f64::from(v)).sum::<f64>() / img.len() as f64;
        let var = img.iter().map(|&v| (f64::from(v) - mean).powi(2)).sum::<f64>() / img.len() as f64;
        let scale = 1.0 / var.sqrt().max(1e-12);
        img.iter_mut().for_each(|v| *v = ((f64::from(*v) - mean) * scale) as f32);
    }
    let rolls = centre_by_centroid(&mut x, d);
    let out = encoder.forward(&Tensor::from_vec(x, (b, d, d), device)?)?;
    let rolls = Tensor::from_vec(rolls.concat(), (b, 2), device)?;
    Ok((rotation_matrices(&out.rotation, RotationParam::SixD)?, (out.shift + rolls)?))
}

/// [`predict`] as poses, outside autograd.
fn infer_poses(encoder: &CnnEncoder, raw: &[f32], device: &Device) -> TrainResult<Vec<Pose>> {
    let (rot, shift) = crate::inference::no_grad(|| predict(encoder, raw, device))?;
    to_poses(&rot, &shift)
}

/// Rotations (B, 3, 3) and shifts (B, 2) as poses.
fn to_poses(rot: &Tensor, shift: &Tensor) -> TrainResult<Vec<Pose>> {
    let (rot, shift) = (rot.to_vec3::<f32>()?, shift.to_vec2::<f32>()?);
    Ok(rot
        .into_iter()
        .zip(shift)
        .map(|(r, t)| Pose {
            rot: std::array::from_fn(|a| std::array::from_fn(|b| f64::from(r[a][b]))),
            shift_px: [t[0], t[1]],
        })
        .collect())
}

/// The encoder of a trained amortized run, for inference on any number of particles (`eval-images`): one
/// streaming pass, a pose per image, nothing per particle kept.
pub struct AmortizedModel {
    store: ParamStore,
    encoder: CnnEncoder,
}

impl AmortizedModel {
    /// An encoder of layout `cfg` with the weights `encoder.*` of `weights` (a checkpoint of the run).
    pub fn load(cfg: &CnnConfig, weights: &Path, device: &Device) -> TrainResult<Self> {
        let store = ParamStore::new(0, device);
        let encoder = CnnEncoder::new(cfg, store.var_builder().pp("encoder"))?;
        let mut state = crate::volume::read_model_state(weights)?;
        // The decoder's weights are not needed to predict poses.
        state.retain(|name, _| name.starts_with("encoder."));
        store.load_state(&state, weights)?;
        Ok(Self { store, encoder })
    }

    /// The poses the encoder predicts for raw images (B·D·D).
    pub fn poses(&self, raw: &[f32]) -> TrainResult<Vec<Pose>> {
        infer_poses(&self.encoder, raw, self.store.device())
    }

    /// Image side D the encoder takes.
    pub fn image_size(&self) -> usize {
        self.encoder.config().d
    }
}

impl AmortizedTrainer {
    /// The CPP term for a batch: synthetic projections of the current map at random poses, with the CTFs of
    /// `ctf` (one per synthetic image), and the encoder's pose error on them.
    fn cpp_loss(
        &mut self,
        step: &Step<'_>,
        ctf: Option<&[drgnfly_em::ctf::CtfParams]>,
    ) -> TrainResult<Tensor> {
        let d = self.prep.image_size();
        let decoded_at = self.cpp_map.as_ref().map(|m| m.decoded_at);
        if needs_decoding(decoded_at, step.images_seen, self.cpp.refresh_images) {
            let ht = self.decoder.eval_volume(&[], d + 1, 0.5, self.norm)?;
            let mut volume = ht.values;
            HartleyPlan::new(d)?.iht3_center(&mut volume)?;
            let projector = Projector::new(&volume, d, 1)?;
            self.cpp_map = Some(CppMap { volume, projector, decoded_at: step.images_seen });
        }
        let snr = *self.cpp_snr.get_or_insert_with(|| estimate_snr(step.images, d));
        let b = step.positions.len();
        let cfg = SimConfig {
            n: b,
            apix: ctf.and_then(|c| c.first()).map_or(1.0, |c| c.angpix),
            snr,
            ctf: ctf.map(|c| CtfSource::Rows(c.to_vec())),
            max_shift_px: self.cpp.max_shift_px,
            rotations: None,
            chunk: b,
            seed: self.seed ^ step.images_seen.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        let Some(map) = &self.cpp_map else { unreachable!("decoded above") };
        let projectors = std::slice::from_ref(&map.projector);
        let mut images = Vec::with_capacity(b * d * d);
        let mut truth = Vec::with_capacity(b);
        simulate::<drgnfly_em::Error>(
            &cfg,
            &States::Projectors { projectors, weights: vec![1.0] },
            |chunk| {
                images.extend_from_slice(chunk.images);
                truth.extend_from_slice(chunk.truth);
                Ok(())
            },
        )?;
        let (rot, shift) = self.predict(&images)?;
        let dev = self.prep.device();
        let r_true: Vec<f32> = truth.iter().flat_map(|t| t.rot.iter().flatten().map(|&v| v as f32)).collect();
        let t_true: Vec<f32> = truth.iter().flat_map(|t| t.shift_px).collect();
        let r_true = Tensor::from_vec(r_true, (b, 3, 3), dev)?;
        let t_true = Tensor::from_vec(t_true, (b, 2), dev)?;
        let rot_err = (rot - r_true)?.sqr()?.sum_all()? / b as f64;
        let scale = f64::from(self.cpp.max_shift_px.max(1.0)).powi(2);
        let shift_err = (shift - t_true)?.sqr()?.sum_all()? / (b as f64 * scale);
        Ok(((rot_err? + shift_err?)? * self.cpp.weight)?)
    }
}

/// Whether the CPP map, decoded after `decoded_at` images (`u64::MAX`: a reference map, kept for good), is due
/// for a new decoding after `seen` images.
fn needs_decoding(decoded_at: Option<u64>, seen: u64, refresh: u64) -> bool {
    match decoded_at {
        None => true,
        Some(u64::MAX) => false,
        Some(at) => seen >= at.saturating_add(refresh),
    }
}

/// The SNR of raw images (B·D·D). The noise variance is half the mean squared difference of horizontally
/// adjacent pixels outside the inscribed circle (white noise: 2σ²; the particle's smooth tails, which fill
/// the corners of a tight box, add little), the signal variance is the variance inside the circle above it;
/// `None` (noiseless) when the outside has no pixel-to-pixel noise.
fn estimate_snr(raw: &[f32], d: usize) -> Option<f64> {
    let r2 = (d as f64 / 2.0).powi(2);
    let outside = |x: usize, y: usize| {
        let (x, y) = (x as f64 - d as f64 / 2.0, y as f64 - d as f64 / 2.0);
        x * x + y * y >= r2
    };
    let (mut diff2, mut pairs) = (0f64, 0usize);
    let (mut s, mut s2, mut n) = (0f64, 0f64, 0usize);
    for img in raw.chunks_exact(d * d) {
        for y in 0..d {
            for x in 0..d {
                let v = f64::from(img[y * d + x]);
                if outside(x, y) {
                    if x + 1 < d && outside(x + 1, y) {
                        diff2 += (f64::from(img[y * d + x + 1]) - v).powi(2);
                        pairs += 1;
                    }
                } else {
                    (s, s2, n) = (s + v, s2 + v * v, n + 1);
                }
            }
        }
    }
    if pairs == 0 || n < 2 {
        return None;
    }
    let noise = diff2 / pairs as f64 / 2.0;
    let total = (s2 / n as f64 - (s / n as f64).powi(2)).max(0.0);
    if noise <= 1e-9 * total.max(1e-30) {
        return None;
    }
    Some(((total - noise) / noise).max(1e-3))
}

/// ‖CTF·slice − target‖² averaged over each image's mask points: (B).
fn per_image_mse(decoder: &Decoder, batch: &PreparedBatch) -> TrainResult<Tensor> {
    Ok(residual(decoder, batch, None)?.sqr()?.mean(D::Minus1)?)
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
        &["gen loss", "pose loss", "total loss"]
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
        let mut loss = per_image.mean_all()?;
        let value = finite_loss(&loss)?;
        let cpp = if self.cpp.weight > 0.0 {
            let term = self.cpp_loss(&step, ctf.as_deref())?;
            let v = term.to_scalar::<f32>()?;
            loss = (loss + term)?;
            v
        } else {
            0.0
        };
        self.adam.backward_step(&loss)?;
        for (&i, pose) in step.positions.iter().zip(to_poses(&rot, &shift)?) {
            self.poses.set_pose(i, pose);
        }
        Ok(vec![value, cpp, value + cpp])
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(&self.store, Some(&self.adam))?;
        ckpt.tables = self.poses.state_tensors()?;
        // The pose-prediction task's map and SNR, so that a resumed run projects what this one would.
        let dev = self.prep.device();
        if let Some(map) = &self.cpp_map {
            let d = self.prep.image_size();
            ckpt.tables.insert(CPP_VOLUME.into(), Tensor::from_vec(map.volume.clone(), (d, d, d), dev)?);
            ckpt.tables.insert(CPP_DECODED_AT.into(), Tensor::new(&[map.decoded_at as f64], dev)?);
        }
        if let Some(snr) = self.cpp_snr {
            ckpt.tables.insert(CPP_SNR.into(), Tensor::new(&[snr.unwrap_or(-1.0)], dev)?);
        }
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(&self.store, Some(&mut self.adam), path)?;
        self.poses.load_state_tensors(&ckpt.tables, path)?;
        let scalar = |name: &str| -> TrainResult<Option<f64>> {
            Ok(match ckpt.tables.get(name) {
                Some(t) => Some(t.flatten_all()?.to_vec1::<f64>()?.first().copied().unwrap_or(f64::NAN)),
                None => None,
            })
        };
        if let (Some(volume), Some(at)) = (ckpt.tables.get(CPP_VOLUME), scalar(CPP_DECODED_AT)?) {
            let volume = volume.flatten_all()?.to_vec1::<f32>()?;
            let projector =
                Projector::new(&volume, self.prep.image_size(), 1).map_err(|e| Error::Config {
                    field: "checkpoint",
                    problem: format!("{}: {CPP_VOLUME}: {e}", path.display()),
                })?;
            self.cpp_map = Some(CppMap { volume, projector, decoded_at: at as u64 });
        }
        if let Some(snr) = scalar(CPP_SNR)? {
            self.cpp_snr = Some((snr > 0.0).then_some(snr));
        }
        Ok(())
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

    #[test]
    fn a_reference_map_is_never_replaced() {
        assert!(needs_decoding(None, 0, 1024));
        assert!(!needs_decoding(Some(100), 1000, 1024) && needs_decoding(Some(100), 1124, 1024));
        assert!(!needs_decoding(Some(u64::MAX), u64::MAX - 1, 1024));
    }

    #[test]
    fn the_snr_estimate_takes_the_corners_as_noise() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, Normal};
        let d = 64;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(1);
        let noise = Normal::new(0.0f32, 1.0).unwrap();
        // A disc of ±2 (signal variance 4 inside the circle) plus unit noise everywhere: SNR 4.
        let imgs: Vec<f32> = (0..8 * d * d)
            .map(|i| {
                let (y, x) = (((i / d) % d) as f32 - 32.0, (i % d) as f32 - 32.0);
                let signal = if x * x + y * y < 900.0 {
                    if (i / (d * d)) % 2 == 0 {
                        2.0
                    } else {
                        -2.0
                    }
                } else {
                    0.0
                };
                signal + noise.sample(&mut rng)
            })
            .collect();
        let snr = estimate_snr(&imgs, d).unwrap();
        // The disc covers 88% of the circle: signal variance 4·0.88 ≈ 3.5.
        assert!((snr - 3.5).abs() < 0.3, "{snr}");
        // A broad particle filling the corners, noise-free: no noise is found there.
        let broad: Vec<f32> = (0..4 * d * d)
            .map(|i| {
                let (y, x) = (((i / d) % d) as f32 - 32.0, (i % d) as f32 - 32.0);
                (-(x * x + y * y) / 800.0).exp()
            })
            .collect();
        let smooth = estimate_snr(&broad, d).unwrap_or(f64::INFINITY);
        assert!(smooth > 100.0, "{smooth}");
        let clean: Vec<f32> = imgs
            .iter()
            .enumerate()
            .map(|(i, _)| if (i % d) == 32 && (i / d) % d == 32 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(estimate_snr(&clean, d), None);
    }
}
