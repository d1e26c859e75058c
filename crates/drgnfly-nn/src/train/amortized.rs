//! Amortized ab initio (cryoAI; HetACUMN with `--zdim`): a CNN encoder ([`crate::cnn`]) predicts each
//! image's rotation and shift (and, heterogeneous, its conformation z), and the coordinate decoder renders the
//! slice there (CTF and shift applied); encoder and decoder train together, with no per-particle search or
//! table. Memory and time per image do not depend on the dataset's size.
//!
//! **Symmetrized loss** (cryoAI): each image Y also goes through the pipeline rotated in-plane by π, R_π[Y],
//! and the image's loss is min(‖Ŷ − Γ(Y)‖², ‖R_π[Y] − Γ(R_π[Y])‖²), where Γ is encode-then-render. An
//! encoder stuck on the mirror of the right pose for an image fits its rotated twin instead, which removes the
//! mirror minimum that otherwise traps gradient descent on poses. (HetACUMN flips horizontally instead; a
//! flipped projection is a projection of the mirrored map, so the half turn, which keeps the hand, is used.)
//! The predicted shifts carry HetACUMN's L1 penalty λ_t·½‖t̂‖₁ (pixels), which keeps the map centred.
//!
//! **Conditional pose prediction** (HetACUMN's CPP, λ_p = [`CppConfig::weight`]): with each batch, maps of
//! the current decoder (decoded every `refresh_images` images, outside autograd: the decoder is frozen for
//! this task) are projected at uniformly random rotations and shifts, with the CTFs of the batch's particles
//! and Gaussian noise, and the encoder's poses for those images are supervised:
//! λ_p·(‖R̂ − R‖²_F + ‖t̂ − t‖²/s²), s the largest shift. It teaches the encoder to invert projections
//! everywhere on the sphere, which the reconstruction loss alone does not (its predictions crowd together).
//! The noise (ASN, HetACUMN Eq. 9–10) is drawn at the dataset's SNR relative to each batch of synthetic
//! images (estimated once: pixel-to-pixel differences outside the particle circle are noise), so it grows as
//! the map gains detail; without ASN its variance is the data's, fixed. Over the first
//! [`CppConfig::noise_warmup_images`] the noise rises geometrically from 1% of that to all of it (drgnfly's
//! addition: at SNR 0.1 an encoder trained on fully noisy projections from the start learns no poses).
//!
//! **Heterogeneity** ([`HetConfig`], HetACUMN): the encoder also predicts q(z|Y) = N(μ, σ²); the decoder
//! renders at z = μ + σε, and the loss adds λ_z·KL(q‖N(0, I)). For the first `fch_epochs` the conformation
//! head is frozen and z comes from the prior (FCH), so that poses settle before conformations. The CPP task
//! projects `conformations` maps, each decoded at a z drawn from the posterior of a random image of the batch
//! (PDS; from the prior without it, or during FCH).
//!
//! The encoder sees the real-space image, each image standardised (zero mean, unit variance) and rolled by
//! whole pixels to its density centroid ([`CnnEncoder::input`]); its shift head predicts the rest of
//! the shift. The poses (and latents) it predicts for each batch are kept per particle, so the driver
//! writes them as pose.E.pkl (and z.E.pkl); they are the predictions at the time each image was last seen.
//! [`AmortizedModel`] is the encoder alone, for inference on any stack.

use std::path::Path;

use candle_core::{Device, Tensor, D};
use drgnfly_em::hartley::HartleyPlan;
use drgnfly_em::pose::Pose;
use drgnfly_em::project::Projector;
use drgnfly_em::simulate::{simulate, CtfSource, SimConfig, States};
use rand::{Rng, SeedableRng};
use rand_distr::{Distribution, StandardNormal};

use super::batch::BatchPrep;
use super::driver::{Step, Trainer};
use super::error::TrainResult;
use super::homo::{finite_loss, residual};
use super::pose_table::{PoseAdamConfig, PoseTable};
use crate::adam::{Adam, AdamConfig};
use crate::checkpoint::Checkpoint;
use crate::cnn::{CnnConfig, CnnEncoder};
use crate::decoder::{Decoder, DecoderConfig};
use crate::error::Error;
use crate::loss::kl_divergence;
use crate::params::ParamStore;
use crate::rotation::{rotation_matrices, RotationParam};
use crate::vae::HetOnlyVae;

/// How an amortized run trains.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct AmortizedConfig {
    /// cryoAI's symmetrized loss (else plain MSE).
    pub symmetrized: bool,
    /// λ_t, the weight of ½‖t̂‖₁ on the predicted shifts in pixels (HetACUMN: 1e-3).
    pub lambda_t: f64,
    /// The conditional pose-prediction task.
    pub cpp: CppConfig,
    /// The conformations (zdim 0: homogeneous, cryoAI).
    pub het: HetConfig,
}

/// The conditional pose-prediction task.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct CppConfig {
    /// λ_p; 0 switches the task off.
    pub weight: f64,
    /// Images between decodings of the maps the task projects.
    pub refresh_images: u64,
    /// Shifts of the synthetic images are uniform in ±this (pixels).
    pub max_shift_px: f32,
    /// SNR of the synthetic images; `None`: estimated from the data (noiseless when the data are).
    pub snr: Option<f64>,
    /// Noise at a fixed SNR relative to each batch of synthetic images (ASN); false: at the data's noise
    /// variance, fixed.
    pub adaptive_noise: bool,
    /// Images seen over which the synthetic images' noise rises from 1/[`NOISE_WARMUP_START`] of its
    /// variance to the full (geometrically); 0: full from the start.
    pub noise_warmup_images: u64,
}

/// How much higher the synthetic images' SNR is at the start of the noise warm-up: 100×, so the encoder
/// first learns poses from nearly clean projections, which it can, and then keeps them as the noise rises
/// (at the data's SNR from the start it does not learn them: BENCHMARKS.md, "the CPP noise warm-up").
pub const NOISE_WARMUP_START: f64 = 100.0;

/// HetACUMN's conformation parts.
#[derive(Clone, Copy, Debug, PartialEq)]
pub struct HetConfig {
    /// Latent width; 0 for a homogeneous run.
    pub zdim: usize,
    /// λ_z, the weight of the KL term (HetACUMN: 1e-4).
    pub lambda_z: f64,
    /// Epochs (from the first) with the conformation head frozen and z from the prior (FCH); 0: none.
    pub fch_epochs: usize,
    /// The CPP maps at latents drawn from the batch's posteriors (PDS); false: from the prior.
    pub pds: bool,
    /// Maps decoded per CPP refresh, each at its own latent.
    pub conformations: usize,
}

impl HetConfig {
    /// A homogeneous run.
    pub const HOMOGENEOUS: HetConfig =
        HetConfig { zdim: 0, lambda_z: 0.0, fch_epochs: 0, pds: false, conformations: 1 };
}

/// The maps the CPP task projects (real space, kept for checkpoints), and when they were decoded
/// (`u64::MAX` for a reference map).
struct CppMaps {
    volumes: Vec<Vec<f32>>,
    projectors: Vec<Projector>,
    decoded_at: u64,
}

impl CppMaps {
    fn new(volumes: Vec<Vec<f32>>, d: usize, decoded_at: u64) -> TrainResult<Self> {
        let projectors = volumes.iter().map(|v| Projector::new(v, d, 1)).collect::<Result<Vec<_>, _>>()?;
        Ok(Self { volumes, projectors, decoded_at })
    }
}

/// The noise of the synthetic images, estimated from the data once.
#[derive(Clone, Copy, Debug, PartialEq)]
struct NoiseLevel {
    /// The data's SNR; `None` for noiseless data.
    snr: Option<f64>,
    /// The data's noise σ (raw image units); 0 for noiseless data.
    sigma: f64,
}

/// Checkpoint names of the pose-prediction task's state and the latents.
const CPP_VOLUME: &str = "cpp.volume";
const CPP_DECODED_AT: &str = "cpp.decoded_at";
const CPP_SNR: &str = "cpp.snr";
const CPP_SIGMA: &str = "cpp.sigma";
const CPP_WARMUP: &str = "cpp.noise_warmup_images";
const Z_MU: &str = "z.mu";
const Z_LOGVAR: &str = "z.logvar";

/// Encoder, decoder and optimizer of a cryoAI / HetACUMN run.
pub struct AmortizedTrainer {
    store: ParamStore,
    encoder: CnnEncoder,
    decoder: Decoder,
    adam: Adam,
    prep: BatchPrep,
    cfg: AmortizedConfig,
    /// The latest predicted pose of every particle.
    poses: PoseTable,
    /// The latest predicted posterior (μ, log σ²) of every particle, n × zdim each.
    latents: (Vec<f32>, Vec<f32>),
    cpp_maps: Option<CppMaps>,
    /// `None` until estimated.
    noise: Option<NoiseLevel>,
    seed: u64,
    norm: crate::decoder::DataNorm,
}

/// What the encoder predicts for a batch.
pub(super) struct Prediction {
    /// (B, 3, 3).
    pub rot: Tensor,
    /// (B, 2), pixels.
    pub shift: Tensor,
    /// (μ, log σ²), each (B, zdim), with a conformation head.
    pub z: Option<(Tensor, Tensor)>,
}

/// One batch through encode-then-render.
struct Branch {
    /// (B): each image's MSE.
    mse: Tensor,
    /// KL(q‖p) averaged over the batch, when the latent came from the posterior.
    kld: Option<Tensor>,
    prediction: Prediction,
}

impl AmortizedTrainer {
    /// A fresh encoder and decoder from `seed` for `n` particles. Encoder, decoder and `cfg.het` agree on the
    /// latent width. Parameters are named `encoder.*` and `decoder.*`.
    pub fn new(
        (encoder, decoder): (&CnnConfig, &DecoderConfig),
        seed: u64,
        adam: AdamConfig,
        prep: BatchPrep,
        n: usize,
        cfg: AmortizedConfig,
    ) -> TrainResult<Self> {
        let zdim = cfg.het.zdim;
        if decoder.zdim != zdim || encoder.zdim != zdim || encoder.d != prep.image_size() {
            return Err(Error::Config {
                field: "amortized model",
                problem: format!(
                    "encoder zdim {}, decoder zdim {} and zdim {zdim} must agree, and the encoder must take the                      images' size {} (got {})",
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
        let noise = cfg.cpp.snr.map(|snr| NoiseLevel { snr: Some(snr), sigma: 0.0 });
        Ok(Self {
            store,
            encoder: enc,
            decoder: dec,
            adam,
            prep,
            cfg,
            poses,
            latents: (vec![0.0; n * zdim], vec![0.0; n * zdim]),
            cpp_maps: None,
            noise,
            seed,
            norm,
        })
    }

    /// Project `volume` (D³, real space, the particles' contrast) for the pose-prediction task instead of the
    /// current maps: a diagnostic of the encoder alone, or a run that starts from a known reference.
    pub fn with_cpp_reference(mut self, volume: &[f32]) -> TrainResult<Self> {
        self.cpp_maps = Some(CppMaps::new(vec![volume.to_vec()], self.prep.image_size(), u64::MAX)?);
        Ok(self)
    }

    /// The decoder.
    pub fn decoder(&self) -> &Decoder {
        &self.decoder
    }

    /// The parameters.
    pub fn store(&self) -> &ParamStore {
        &self.store
    }

    /// Latent width (0: homogeneous).
    pub fn zdim(&self) -> usize {
        self.cfg.het.zdim
    }

    /// Each particle's latest predicted posterior: μ and log σ², n × zdim each (empty when homogeneous).
    pub fn latents(&self) -> (&[f32], &[f32]) {
        (&self.latents.0, &self.latents.1)
    }

    /// What the encoder predicts for raw images (B·D·D), without keeping anything for a backward pass: the
    /// inference pass at the end of training.
    pub fn infer(&self, raw: &[f32]) -> TrainResult<Inference> {
        infer(&self.encoder, raw, self.prep.device())
    }

    /// Encode raw images (B·D·D), render at the predicted poses (and z: the prior's when `prior_z`, else the
    /// posterior's, both drawn from `rng`), and compare.
    fn branch(
        &self,
        raw: &[f32],
        ctf: Option<&[drgnfly_em::ctf::CtfParams]>,
        prior_z: bool,
        rng: &mut impl Rng,
    ) -> TrainResult<Branch> {
        let prediction = predict(&self.encoder, raw, self.prep.device())?;
        let (sym, ctf) = self.prep.hartley_and_ctf(raw, ctf)?;
        let b = prediction.rot.dim(0)?;
        let batch = self.prep.prepare_refinable(
            sym,
            ctf,
            &vec![Pose::IDENTITY; b],
            (&prediction.rot, &prediction.shift),
        )?;
        let (z, kld) = match &prediction.z {
            None => (None, None),
            Some((mu, _)) if prior_z => (Some(normals(mu.dims(), rng, mu.device())?), None),
            Some((mu, logvar)) => {
                (Some(HetOnlyVae::latent(mu, logvar, true, rng)?), Some(kl_divergence(mu, logvar)?))
            }
        };
        let mse = residual(&self.decoder, &batch, z.as_ref())?.sqr()?.mean(D::Minus1)?;
        Ok(Branch { mse, kld, prediction })
    }
}

/// Standard normals of `dims` from `rng`.
fn normals(dims: &[usize], rng: &mut impl Rng, device: &Device) -> TrainResult<Tensor> {
    let n: usize = dims.iter().product();
    let v: Vec<f32> = (0..n).map(|_| StandardNormal.sample(rng)).collect();
    Ok(Tensor::from_vec(v, dims, device)?)
}

/// What `encoder` predicts for raw images (B·D·D): the trunk sees [`CnnEncoder::input`] (each image
/// standardised and rolled by whole pixels to its density centroid), and the shift head predicts what the
/// roll left.
pub(super) fn predict(encoder: &CnnEncoder, raw: &[f32], device: &Device) -> TrainResult<Prediction> {
    let (x, rolls) = encoder.input(raw, device)?;
    let out = encoder.forward(&x)?;
    let rolls = Tensor::from_vec(rolls.concat(), (x.dims()[0], 2), device)?;
    Ok(Prediction {
        rot: rotation_matrices(&out.rotation, RotationParam::SixD)?,
        shift: (out.shift + rolls)?,
        z: out.z,
    })
}

/// The encoder's predictions for a batch, as plain values.
#[derive(Clone, Debug, Default)]
pub struct Inference {
    /// One pose per image.
    pub poses: Vec<Pose>,
    /// μ of q(z|Y), B × zdim (empty when homogeneous).
    pub mu: Vec<f32>,
    /// log σ² of q(z|Y), B × zdim (empty when homogeneous).
    pub logvar: Vec<f32>,
}

/// [`predict`] as values, outside autograd.
fn infer(encoder: &CnnEncoder, raw: &[f32], device: &Device) -> TrainResult<Inference> {
    let p = crate::inference::no_grad(|| predict(encoder, raw, device))?;
    let (mu, logvar) = match &p.z {
        Some((m, l)) => (m.flatten_all()?.to_vec1()?, l.flatten_all()?.to_vec1()?),
        None => (Vec::new(), Vec::new()),
    };
    Ok(Inference { poses: to_poses(&p.rot, &p.shift)?, mu, logvar })
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
/// streaming pass, a pose (and posterior) per image, nothing per particle kept.
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

    /// What the encoder predicts for raw images (B·D·D).
    pub fn infer(&self, raw: &[f32]) -> TrainResult<Inference> {
        infer(&self.encoder, raw, self.store.device())
    }

    /// Latent width (0: homogeneous).
    pub fn zdim(&self) -> usize {
        self.encoder.config().zdim
    }
}

impl AmortizedTrainer {
    /// The CPP term for a batch: synthetic projections of the current maps at random poses, with the CTFs of
    /// `ctf` (one per synthetic image), and the encoder's pose error on them. `posterior` is the batch's
    /// (μ, log σ²) for PDS, `None` for latents from the prior.
    fn cpp_loss(
        &mut self,
        step: &mut Step<'_>,
        ctf: Option<&[drgnfly_em::ctf::CtfParams]>,
        posterior: Option<(&[f32], &[f32])>,
    ) -> TrainResult<Tensor> {
        let d = self.prep.image_size();
        let decoded_at = self.cpp_maps.as_ref().map(|m| m.decoded_at);
        if needs_decoding(decoded_at, step.images_seen, self.cfg.cpp.refresh_images) {
            let latents = cpp_latents(&self.cfg.het, posterior, step.rng);
            let mut volumes = Vec::with_capacity(latents.len());
            for z in &latents {
                let mut volume = self.decoder.eval_volume(z, d + 1, 0.5, self.norm)?.values;
                HartleyPlan::new(d)?.iht3_center(&mut volume)?;
                volumes.push(volume);
            }
            self.cpp_maps = Some(CppMaps::new(volumes, d, step.images_seen)?);
        }
        let noise = *self.noise.get_or_insert_with(|| estimate_noise(step.images, d));
        let noise = noise.warmed_up(step.images_seen, self.cfg.cpp.noise_warmup_images);
        let b = step.positions.len();
        let cfg = SimConfig {
            n: b,
            apix: ctf.and_then(|c| c.first()).map_or(1.0, |c| c.angpix),
            snr: if self.cfg.cpp.adaptive_noise { noise.snr } else { None },
            ctf: ctf.map(|c| CtfSource::Rows(c.to_vec())),
            max_shift_px: self.cfg.cpp.max_shift_px,
            rotations: None,
            chunk: b,
            seed: self.seed ^ step.images_seen.wrapping_mul(0x9E37_79B9_7F4A_7C15),
        };
        let Some(maps) = &self.cpp_maps else { unreachable!("decoded above") };
        let mut images = Vec::with_capacity(b * d * d);
        let mut truth = Vec::with_capacity(b);
        simulate::<drgnfly_em::Error>(
            &cfg,
            &States::Projectors { projectors: &maps.projectors, weights: vec![1.0; maps.projectors.len()] },
            |chunk| {
                images.extend_from_slice(chunk.images);
                truth.extend_from_slice(chunk.truth);
                Ok(())
            },
        )?;
        if !self.cfg.cpp.adaptive_noise && noise.sigma > 0.0 {
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(cfg.seed);
            let sigma = noise.sigma as f32;
            images.iter_mut().for_each(|v| {
                let e: f32 = StandardNormal.sample(&mut rng);
                *v += sigma * e;
            });
        }
        let p = predict(&self.encoder, &images, self.prep.device())?;
        let dev = self.prep.device();
        let r_true: Vec<f32> = truth.iter().flat_map(|t| t.rot.iter().flatten().map(|&v| v as f32)).collect();
        let t_true: Vec<f32> = truth.iter().flat_map(|t| t.shift_px).collect();
        let r_true = Tensor::from_vec(r_true, (b, 3, 3), dev)?;
        let t_true = Tensor::from_vec(t_true, (b, 2), dev)?;
        let rot_err = (p.rot - r_true)?.sqr()?.sum_all()? / b as f64;
        let scale = f64::from(self.cfg.cpp.max_shift_px.max(1.0)).powi(2);
        let shift_err = (p.shift - t_true)?.sqr()?.sum_all()? / (b as f64 * scale);
        Ok(((rot_err? + shift_err?)? * self.cfg.cpp.weight)?)
    }
}

/// The latents of the maps a CPP refresh decodes: one empty latent for a homogeneous run; else one per map,
/// each drawn from the posterior (μ, log σ², B × zdim) of a random image of the batch (PDS), or from the
/// prior when `posterior` is `None`.
fn cpp_latents(het: &HetConfig, posterior: Option<(&[f32], &[f32])>, rng: &mut impl Rng) -> Vec<Vec<f32>> {
    let zdim = het.zdim;
    if zdim == 0 {
        return vec![Vec::new()];
    }
    (0..het.conformations.max(1))
        .map(|_| match posterior {
            Some((mu, logvar)) if !mu.is_empty() => {
                let i = rng.random_range(0..mu.len() / zdim);
                (0..zdim)
                    .map(|k| {
                        let e: f32 = StandardNormal.sample(rng);
                        mu[i * zdim + k] + (0.5 * logvar[i * zdim + k]).exp() * e
                    })
                    .collect()
            }
            _ => (0..zdim).map(|_| StandardNormal.sample(rng)).collect(),
        })
        .collect()
}

/// Whether the CPP maps, decoded after `decoded_at` images (`u64::MAX`: a reference map, kept for good), is due
/// for a new decoding after `seen` images.
fn needs_decoding(decoded_at: Option<u64>, seen: u64, refresh: u64) -> bool {
    match decoded_at {
        None => true,
        Some(u64::MAX) => false,
        Some(at) => seen >= at.saturating_add(refresh),
    }
}

impl NoiseLevel {
    /// The noise after `seen` of `warmup` images of the warm-up: the SNR higher by
    /// [`NOISE_WARMUP_START`]^(1 − seen/warmup) (σ lower by its square root), as is once `seen ≥ warmup`.
    fn warmed_up(self, seen: u64, warmup: u64) -> NoiseLevel {
        if seen >= warmup {
            return self;
        }
        let factor = NOISE_WARMUP_START.powf(1.0 - seen as f64 / warmup as f64);
        NoiseLevel { snr: self.snr.map(|s| s * factor), sigma: self.sigma / factor.sqrt() }
    }
}

/// The noise of raw images (B·D·D). The noise variance is half the mean squared difference of horizontally
/// adjacent pixels outside the inscribed circle (white noise: 2σ²; the particle's smooth tails, which fill
/// the corners of a tight box, add little), the signal variance is the variance inside the circle above it;
/// noiseless (SNR `None`, σ 0) when the outside has no pixel-to-pixel noise.
fn estimate_noise(raw: &[f32], d: usize) -> NoiseLevel {
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
    const NOISELESS: NoiseLevel = NoiseLevel { snr: None, sigma: 0.0 };
    if pairs == 0 || n < 2 {
        return NOISELESS;
    }
    let noise = diff2 / pairs as f64 / 2.0;
    let total = (s2 / n as f64 - (s / n as f64).powi(2)).max(0.0);
    if noise <= 1e-9 * total.max(1e-30) {
        return NOISELESS;
    }
    NoiseLevel { snr: Some(((total - noise) / noise).max(1e-3)), sigma: noise.sqrt() }
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
        if self.cfg.het.zdim > 0 {
            &["gen loss", "KLD", "pose loss", "total loss"]
        } else {
            &["gen loss", "pose loss", "total loss"]
        }
    }

    fn step(&mut self, mut step: Step<'_>) -> TrainResult<Vec<f32>> {
        let ctf = step.data.batch_ctf(step.positions);
        let zdim = self.cfg.het.zdim;
        // FCH: z from the prior, the conformation head out of the graph (so frozen) for the first epochs.
        let prior_z = zdim > 0 && step.epoch <= self.cfg.het.fch_epochs;
        let main = self.branch(step.images, ctf.as_deref(), prior_z, step.rng)?;
        let mut kld = main.kld.clone();
        let per_image = if self.cfg.symmetrized {
            let twin = rotate_half_turn(step.images, self.prep.image_size());
            let other = self.branch(&twin, ctf.as_deref(), prior_z, step.rng)?;
            kld = match (kld, other.kld) {
                (Some(a), Some(b)) => Some(((a + b)? * 0.5)?),
                (k, _) => k,
            };
            main.mse.minimum(&other.mse)?
        } else {
            main.mse.clone()
        };
        let gen = per_image.mean_all()?;
        let gen_value = finite_loss(&gen)?;
        let shift_l1 = (main.prediction.shift.abs()?.sum(1)?.mean_all()? * (0.5 * self.cfg.lambda_t))?;
        let mut loss = (gen + shift_l1)?;
        let kld_value = match &kld {
            Some(k) => {
                loss = (loss + (k * self.cfg.het.lambda_z)?)?;
                k.to_scalar::<f32>()?
            }
            None => 0.0,
        };
        let posterior = match &main.prediction.z {
            Some((mu, logvar)) if !prior_z && self.cfg.het.pds => {
                Some((mu.flatten_all()?.to_vec1::<f32>()?, logvar.flatten_all()?.to_vec1::<f32>()?))
            }
            _ => None,
        };
        let cpp = if self.cfg.cpp.weight > 0.0 {
            let posterior = posterior.as_ref().map(|(m, l)| (m.as_slice(), l.as_slice()));
            let term = self.cpp_loss(&mut step, ctf.as_deref(), posterior)?;
            let v = term.to_scalar::<f32>()?;
            loss = (loss + term)?;
            v
        } else {
            0.0
        };
        self.adam.backward_step(&loss)?;
        let total = finite_loss(&loss)?;
        for (&i, pose) in step.positions.iter().zip(to_poses(&main.prediction.rot, &main.prediction.shift)?) {
            self.poses.set_pose(i, pose);
        }
        if let Some((mu, logvar)) = &main.prediction.z {
            let (mu, logvar) = (mu.to_vec2::<f32>()?, logvar.to_vec2::<f32>()?);
            for ((&i, m), l) in step.positions.iter().zip(mu).zip(logvar) {
                self.latents.0[i * zdim..(i + 1) * zdim].copy_from_slice(&m);
                self.latents.1[i * zdim..(i + 1) * zdim].copy_from_slice(&l);
            }
        }
        Ok(if zdim > 0 { vec![gen_value, kld_value, cpp, total] } else { vec![gen_value, cpp, total] })
    }

    fn state(&self) -> TrainResult<Checkpoint> {
        let mut ckpt = Checkpoint::capture(&self.store, Some(&self.adam))?;
        ckpt.tables = self.poses.state_tensors()?;
        // The pose-prediction task's maps and noise, so that a resumed run projects what this one would.
        let dev = self.prep.device();
        if let Some(maps) = &self.cpp_maps {
            let d = self.prep.image_size();
            let k = maps.volumes.len();
            ckpt.tables
                .insert(CPP_VOLUME.into(), Tensor::from_vec(maps.volumes.concat(), (k, d, d, d), dev)?);
            ckpt.tables.insert(CPP_DECODED_AT.into(), Tensor::new(&[maps.decoded_at as f64], dev)?);
        }
        if let Some(noise) = self.noise {
            ckpt.tables.insert(CPP_SNR.into(), Tensor::new(&[noise.snr.unwrap_or(-1.0)], dev)?);
            ckpt.tables.insert(CPP_SIGMA.into(), Tensor::new(&[noise.sigma], dev)?);
        }
        // The warm-up's length, so that a run resumed with another --num-epochs keeps its noise schedule.
        ckpt.tables.insert(CPP_WARMUP.into(), Tensor::new(&[self.cfg.cpp.noise_warmup_images as f64], dev)?);
        let zdim = self.cfg.het.zdim;
        if let Some(n) = self.latents.0.len().checked_div(zdim) {
            ckpt.tables.insert(Z_MU.into(), Tensor::from_vec(self.latents.0.clone(), (n, zdim), dev)?);
            ckpt.tables.insert(Z_LOGVAR.into(), Tensor::from_vec(self.latents.1.clone(), (n, zdim), dev)?);
        }
        Ok(ckpt)
    }

    fn restore(&mut self, ckpt: &Checkpoint, path: &Path) -> TrainResult<()> {
        ckpt.restore(&self.store, Some(&mut self.adam), path)?;
        self.poses.load_state_tensors(&ckpt.tables, path)?;
        let bad = |what: &str, problem: String| Error::Config {
            field: "checkpoint",
            problem: format!("{}: {what}: {problem}", path.display()),
        };
        let scalar = |name: &str| -> TrainResult<Option<f64>> {
            Ok(match ckpt.tables.get(name) {
                Some(t) => Some(t.flatten_all()?.to_vec1::<f64>()?.first().copied().unwrap_or(f64::NAN)),
                None => None,
            })
        };
        if let (Some(volumes), Some(at)) = (ckpt.tables.get(CPP_VOLUME), scalar(CPP_DECODED_AT)?) {
            let d = self.prep.image_size();
            let flat = volumes.flatten_all()?.to_vec1::<f32>()?;
            if flat.is_empty() || flat.len() % (d * d * d) != 0 {
                return Err(
                    bad(CPP_VOLUME, format!("{:?} is not a stack of {d}³ maps", volumes.dims())).into()
                );
            }
            let volumes = flat.chunks_exact(d * d * d).map(<[f32]>::to_vec).collect();
            self.cpp_maps =
                Some(CppMaps::new(volumes, d, at as u64).map_err(|e| bad(CPP_VOLUME, e.to_string()))?);
        }
        if let Some(snr) = scalar(CPP_SNR)? {
            let sigma = scalar(CPP_SIGMA)?.unwrap_or(0.0);
            self.noise = Some(NoiseLevel { snr: (snr > 0.0).then_some(snr), sigma });
        }
        if let Some(images) = scalar(CPP_WARMUP)?.filter(|v| v.is_finite() && *v >= 0.0) {
            self.cfg.cpp.noise_warmup_images = images.round() as u64;
        }
        let zdim = self.cfg.het.zdim;
        if let Some(n) = self.latents.0.len().checked_div(zdim) {
            for (name, dst) in [(Z_MU, &mut self.latents.0), (Z_LOGVAR, &mut self.latents.1)] {
                let t = ckpt
                    .tables
                    .get(name)
                    .ok_or_else(|| bad(name, "missing; was it written by a run with --zdim?".into()))?;
                if t.dims() != [n, zdim] {
                    return Err(bad(name, format!("shape {:?}, expected [{n}, {zdim}]", t.dims())).into());
                }
                *dst = t.flatten_all()?.to_vec1::<f32>()?;
            }
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

    /// A checkpoint carries the CPP noise warm-up, so a run resumed with another --num-epochs (whose default
    /// warm-up is half of it) keeps its noise schedule.
    #[test]
    fn a_resumed_run_keeps_its_noise_warm_up() {
        use crate::train::batch::EncoderInput;
        use drgnfly_em::preprocess::{Normalization, PreprocessConfig};
        let d = 8;
        let trainer = |warmup| {
            let prep = BatchPrep::new(
                d,
                &PreprocessConfig::default(),
                Normalization { mean: 0.0, std: 1.0 },
                EncoderInput::None,
                &Device::Cpu,
            )
            .unwrap();
            let cpp = CppConfig {
                weight: 0.1,
                refresh_images: 16,
                max_shift_px: 0.0,
                snr: None,
                adaptive_noise: true,
                noise_warmup_images: warmup,
            };
            let cfg = AmortizedConfig { symmetrized: true, lambda_t: 0.0, cpp, het: HetConfig::HOMOGENEOUS };
            let dec = DecoderConfig { layers: 1, dim: 8, ..DecoderConfig::new(d + 1, 0) };
            AmortizedTrainer::new((&CnnConfig::small(d, 0), &dec), 1, AdamConfig::default(), prep, 4, cfg)
                .unwrap()
        };
        let ckpt = trainer(300).state().unwrap();
        let mut resumed = trainer(7);
        resumed.restore(&ckpt, Path::new("weights.1.safetensors")).unwrap();
        assert_eq!(resumed.cfg.cpp.noise_warmup_images, 300);
    }

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
    fn the_noise_warm_up_rises_geometrically_to_the_datas_noise() {
        let noise = NoiseLevel { snr: Some(0.1), sigma: 2.0 };
        let start = noise.warmed_up(0, 1000);
        assert!((start.snr.unwrap() - 10.0).abs() < 1e-9 && (start.sigma - 0.2).abs() < 1e-9);
        let half = noise.warmed_up(500, 1000);
        assert!((half.snr.unwrap() - 1.0).abs() < 1e-9 && (half.sigma - 2.0 / 10f64.sqrt()).abs() < 1e-9);
        assert_eq!(noise.warmed_up(1000, 1000), noise);
        assert_eq!(noise.warmed_up(5, 0), noise);
        let noiseless = NoiseLevel { snr: None, sigma: 0.0 };
        assert_eq!(noiseless.warmed_up(0, 1000), noiseless);
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
        let snr = estimate_noise(&imgs, d).snr.unwrap();
        // The disc covers 88% of the circle: signal variance 4·0.88 ≈ 3.5.
        assert!((snr - 3.5).abs() < 0.3, "{snr}");
        // A broad particle filling the corners, noise-free: no noise is found there.
        let broad: Vec<f32> = (0..4 * d * d)
            .map(|i| {
                let (y, x) = (((i / d) % d) as f32 - 32.0, (i % d) as f32 - 32.0);
                (-(x * x + y * y) / 800.0).exp()
            })
            .collect();
        let smooth = estimate_noise(&broad, d).snr.unwrap_or(f64::INFINITY);
        assert!(smooth > 100.0, "{smooth}");
        let clean: Vec<f32> = imgs
            .iter()
            .enumerate()
            .map(|(i, _)| if (i % d) == 32 && (i / d) % d == 32 { 1.0 } else { 0.0 })
            .collect();
        assert_eq!(estimate_noise(&clean, d), NoiseLevel { snr: None, sigma: 0.0 });
    }

    #[test]
    fn pds_draws_the_maps_latents_from_the_batch_posteriors() {
        use rand::SeedableRng;
        let het = HetConfig { zdim: 2, lambda_z: 1e-4, fch_epochs: 0, pds: true, conformations: 64 };
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
        // Two images with tight posteriors at (5, 5) and (−5, 5): every latent lies near one of them.
        let (mu, logvar) = ([5.0f32, 5.0, -5.0, 5.0], [-10.0f32; 4]);
        let drawn = cpp_latents(&het, Some((&mu, &logvar)), &mut rng);
        assert_eq!(drawn.len(), 64);
        assert!(
            drawn.iter().all(|z| (z[0].abs() - 5.0).abs() < 0.1 && (z[1] - 5.0).abs() < 0.1),
            "{drawn:?}"
        );
        assert!(drawn.iter().any(|z| z[0] > 0.0) && drawn.iter().any(|z| z[0] < 0.0), "both images drawn");
        // From the prior: centred, unit spread.
        let prior = cpp_latents(&het, None, &mut rng);
        let mean = prior.iter().map(|z| z[1]).sum::<f32>() / 64.0;
        assert!(mean.abs() < 0.5 && prior.iter().any(|z| z[1] < 0.0), "{prior:?}");
        assert_eq!(cpp_latents(&HetConfig::HOMOGENEOUS, None, &mut rng), vec![Vec::<f32>::new()]);
    }
}
