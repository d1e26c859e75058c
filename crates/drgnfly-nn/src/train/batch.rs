//! From raw particle images to training tensors (cryoDRGN `ImageDataset._process` followed by
//! `train_vae.preprocess_input` / `run_batch`, reference §2.2, §2.5, §2.7).
//!
//! For each image of a batch, with `L = D + 1` the lattice side:
//! 1. window, invert, centred Hartley transform, symmetrize to `L²`, normalize
//!    ([`drgnfly_em::preprocess::Preprocessor`]);
//! 2. translate by the pose shift `t` (pixels) on the whole lattice: `H′(k) = cos(2πk·t)H(k) + sin(2πk·t)H(−k)`,
//!    so the image is centred ([`drgnfly_em::translate`]);
//! 3. CTF `c(k)` on the lattice (when given);
//! 4. **target** = `H′` on the loss mask (the disc of radius D/2 without DC, `M` points, raster order, so
//!    point `j` and `M − 1 − j` are mirrors as the Fourier decoder needs), **ctf** = `c` there;
//! 5. **encoder input** = `H′·sign(c)` (phase flipping) on the encoder mask;
//! 6. **coords** = the mask's lattice coordinates rotated by the pose, row vector times matrix
//!    `(x, y, 0)·R` (cryoDRGN `coords @ rot`), so the slice is the volume's transform at `Rᵀ(kx, ky, 0)`.

use candle_core::{Device, Tensor};
use drgnfly_em::ctf::{compute_batch, CtfParams};
use drgnfly_em::lattice::Lattice;
use drgnfly_em::pose::Pose;
use drgnfly_em::preprocess::{Normalization, PreprocessConfig, Preprocessor};
use drgnfly_em::rotation::to_f32;
use drgnfly_em::translate::translate_ht_batch;

use super::driver::Step;
use super::error::TrainResult;
use crate::data::Dataset;
use crate::error::Error;

/// Which lattice points feed the encoder (`--enc-mask`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum EncoderInput {
    /// No encoder (homogeneous training).
    None,
    /// The disc of this radius in lattice steps, DC excluded (cryoDRGN default: D/2; must be ≤ D/2).
    Disc(usize),
    /// Every lattice point (`--enc-mask -1`): `(D+1)²` inputs.
    FullLattice,
}

/// One batch ready for a model: all tensors on the trainer's device, f32.
#[derive(Clone, Debug)]
pub struct PreparedBatch {
    /// Phase-flipped, translated Hartley values on the encoder mask (B, encoder inputs); `None` without
    /// an encoder.
    pub encoder_input: Option<Tensor>,
    /// Translated, normalized Hartley values on the loss mask (B, M).
    pub target: Tensor,
    /// CTF on the loss mask (B, M), when CTF parameters were given.
    pub ctf: Option<Tensor>,
    /// Rotated lattice coordinates of the loss mask (B, M, 3).
    pub coords: Tensor,
}

impl PreparedBatch {
    /// The batch on the loss-mask points `points` (indices into the mask, `u32`): the smaller output mask of
    /// frequency marching. Indices in increasing order keep mirrored points paired.
    pub fn select_points(&self, points: &Tensor) -> TrainResult<Self> {
        let pick = |t: &Tensor| t.index_select(points, 1);
        Ok(Self {
            encoder_input: self.encoder_input.clone(),
            target: pick(&self.target)?,
            ctf: self.ctf.as_ref().map(pick).transpose()?,
            coords: pick(&self.coords)?,
        })
    }

    /// Images `start..start + len` of the batch (views of the same tensors).
    pub fn narrow(&self, start: usize, len: usize) -> TrainResult<Self> {
        let part = |t: &Tensor| t.narrow(0, start, len);
        Ok(Self {
            encoder_input: self.encoder_input.as_ref().map(part).transpose()?,
            target: part(&self.target)?,
            ctf: self.ctf.as_ref().map(part).transpose()?,
            coords: part(&self.coords)?,
        })
    }

    /// Number of images.
    pub fn len(&self) -> usize {
        self.target.dims().first().copied().unwrap_or(0)
    }

    /// Whether the batch holds no image.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }
}

/// The planned preparation for one box size, normalization and encoder mask.
#[derive(Debug)]
pub struct BatchPrep {
    d: usize,
    lattice: Lattice,
    preprocessor: Preprocessor,
    /// Loss mask: lattice indices of the disc of radius D/2 without DC.
    mask: Vec<usize>,
    /// (x, y) lattice coordinates of the mask points.
    mask_xy: Vec<[f32; 2]>,
    /// Lattice indices fed to the encoder.
    encoder: Option<Vec<usize>>,
    device: Device,
}

impl BatchPrep {
    /// Plan for `D × D` images (D even) with the given preprocessing, normalization and encoder input.
    pub fn new(
        d: usize,
        preprocess: &PreprocessConfig,
        norm: Normalization,
        encoder: EncoderInput,
        device: &Device,
    ) -> TrainResult<Self> {
        let preprocessor = Preprocessor::new(d, preprocess, norm)?;
        let lattice = Lattice::new(d + 1, 0.5)?;
        let mask = lattice.circular_mask((d / 2) as f32, true);
        let coords = lattice.coords();
        let mask_xy = mask.iter().map(|&i| [coords[3 * i], coords[3 * i + 1]]).collect();
        let encoder = match encoder {
            EncoderInput::None => None,
            EncoderInput::FullLattice => Some((0..lattice.len()).collect()),
            EncoderInput::Disc(r) if r >= 1 && r <= d / 2 => Some(lattice.circular_mask(r as f32, true)),
            EncoderInput::Disc(r) => {
                return Err(Error::Config {
                    field: "enc_mask",
                    problem: format!(
                        "radius {r} must be between 1 and D/2 = {} (or -1 for the whole lattice)",
                        d / 2
                    ),
                }
                .into())
            }
        };
        Ok(Self { d, lattice, preprocessor, mask, mask_xy, encoder, device: device.clone() })
    }

    /// Indices into the loss mask of its points within `radius` lattice steps of the centre, in order.
    pub fn mask_within(&self, radius: f64) -> Vec<u32> {
        let d = self.d as f64;
        let r2 = radius * radius;
        let inside =
            |&[x, y]: &[f32; 2]| (f64::from(x) * d).powi(2) + (f64::from(y) * d).powi(2) <= r2 + 1e-6;
        (0..self.mask_xy.len() as u32).filter(|&j| inside(&self.mask_xy[j as usize])).collect()
    }

    /// The device the tensors are put on.
    pub fn device(&self) -> &Device {
        &self.device
    }

    /// Image side D.
    pub fn image_size(&self) -> usize {
        self.d
    }

    /// Lattice side D + 1.
    pub fn lattice_size(&self) -> usize {
        self.d + 1
    }

    /// Points of the loss mask (M).
    pub fn mask_len(&self) -> usize {
        self.mask.len()
    }

    /// Encoder input width (0 without an encoder).
    pub fn encoder_dim(&self) -> usize {
        self.encoder.as_ref().map_or(0, Vec::len)
    }

    /// The normalization in use.
    pub fn norm(&self) -> Normalization {
        self.preprocessor.norm()
    }

    /// Raw images `(B, D, D)` → symmetrized, normalized Hartley images `(B, (D+1)²)`, untranslated (the input
    /// of a pose search).
    pub fn hartley_images(&self, raw: &[f32]) -> TrainResult<Vec<f32>> {
        let b = raw.len() / (self.d * self.d);
        let mut out = vec![0f32; b * self.lattice.len()];
        self.preprocessor.process_batch(raw, &mut out)?;
        Ok(out)
    }

    /// The CTF of each image on the whole lattice `(B, (D+1)²)`.
    pub fn ctf_on_lattice(&self, params: &[CtfParams]) -> TrainResult<Vec<f32>> {
        let mut out = vec![0f32; params.len() * self.lattice.len()];
        compute_batch(params, self.lattice.freqs2d(), &mut out)?;
        Ok(out)
    }

    /// Prepare raw images `(B, D, D)` of dataset `positions` with the dataset's poses and CTF.
    pub fn prepare_positions(
        &self,
        data: &Dataset,
        positions: &[usize],
        raw: &[f32],
    ) -> TrainResult<PreparedBatch> {
        self.prepare(raw, &data.batch_poses(positions), data.batch_ctf(positions).as_deref())
    }

    /// Prepare raw images `(B, D, D)` with one pose (and CTF) per image (module docs). Fails on NaN/Inf
    /// pixels naming the image's place in the batch, and on mismatched lengths.
    pub fn prepare(
        &self,
        raw: &[f32],
        poses: &[Pose],
        ctf: Option<&[CtfParams]>,
    ) -> TrainResult<PreparedBatch> {
        let b = poses.len();
        if raw.len() != b * self.d * self.d || ctf.is_some_and(|c| c.len() != b) {
            return Err(drgnfly_em::Error::Shape {
                op: "prepare batch",
                expected: format!("{b} images of {0}×{0} and {b} CTFs (one per pose)", self.d),
                got: format!("{} pixel values, {:?} CTFs", raw.len(), ctf.map(<[CtfParams]>::len)),
            }
            .into());
        }
        let (sym, ctf_full) = self.hartley_and_ctf(raw, ctf)?;
        self.prepare_hartley(sym, ctf_full, poses)
    }

    /// [`Self::hartley_and_ctf`] of a step's images (this process's share of the batch; nothing when it
    /// is empty).
    pub fn step_hartley_and_ctf(&self, step: &Step<'_>) -> TrainResult<(Vec<f32>, Option<Vec<f32>>)> {
        if step.positions.is_empty() {
            return Ok((Vec::new(), None));
        }
        self.hartley_and_ctf(step.images, step.data.batch_ctf(step.positions).as_deref())
    }

    /// [`Self::prepare_hartley`] of a share's images at `poses`; `None` for an empty share.
    pub fn prepare_share(
        &self,
        (sym, ctf): (Vec<f32>, Option<Vec<f32>>),
        poses: &[Pose],
    ) -> TrainResult<Option<PreparedBatch>> {
        if poses.is_empty() {
            return Ok(None);
        }
        self.prepare_hartley(sym, ctf, poses).map(Some)
    }

    /// [`Self::hartley_images`] of `raw` and, when given, [`Self::ctf_on_lattice`] of their CTF: the
    /// inputs of [`Self::prepare_hartley`] and [`Self::prepare_refinable`], for trainers that also use them
    /// otherwise (a pose search).
    pub fn hartley_and_ctf(
        &self,
        raw: &[f32],
        ctf: Option<&[CtfParams]>,
    ) -> TrainResult<(Vec<f32>, Option<Vec<f32>>)> {
        let sym = self.hartley_images(raw)?;
        let ctf_full = match ctf {
            Some(params) => Some(self.ctf_on_lattice(params)?),
            None => None,
        };
        Ok((sym, ctf_full))
    }

    /// [`Self::prepare`] from images already through [`Self::hartley_images`] and their CTF from
    /// [`Self::ctf_on_lattice`] (a trainer that searches poses on them first transforms them once).
    pub fn prepare_hartley(
        &self,
        sym: Vec<f32>,
        ctf_full: Option<Vec<f32>>,
        poses: &[Pose],
    ) -> TrainResult<PreparedBatch> {
        let b = poses.len();
        let l2 = self.lattice.len();
        if sym.len() != b * l2 || ctf_full.as_ref().is_some_and(|c| c.len() != b * l2) {
            return Err(drgnfly_em::Error::Shape {
                op: "prepare batch",
                expected: format!("{b} Hartley images and CTFs of {l2} lattice points (one per pose)"),
                got: format!("{} image values, {:?} CTF values", sym.len(), ctf_full.as_ref().map(Vec::len)),
            }
            .into());
        }
        let shifts: Vec<[f32; 2]> = poses.iter().map(|p| p.shift_px).collect();
        let ht = if shifts.iter().any(|s| s[0] != 0.0 || s[1] != 0.0) {
            let mut out = vec![0f32; b * l2];
            translate_ht_batch(&self.lattice, &sym, &shifts, &mut out)?;
            out
        } else {
            sym
        };
        let m = self.mask.len();
        let gather = |src: &[f32], idx: &[usize]| -> Vec<f32> {
            src.chunks_exact(l2).flat_map(|img| idx.iter().map(move |&i| img[i])).collect()
        };
        let dev = &self.device;
        let target = Tensor::from_vec(gather(&ht, &self.mask), (b, m), dev)?;
        let ctf = match &ctf_full {
            Some(c) => Some(Tensor::from_vec(gather(c, &self.mask), (b, m), dev)?),
            None => None,
        };
        let encoder_input = match &self.encoder {
            None => None,
            Some(idx) => {
                let values: Vec<f32> = match &ctf_full {
                    // cryoDRGN's torch.sign: 0 where the CTF is exactly 0.
                    Some(c) => ht
                        .chunks_exact(l2)
                        .zip(c.chunks_exact(l2))
                        .flat_map(|(h, c)| idx.iter().map(move |&i| h[i] * sign(c[i])))
                        .collect(),
                    None => gather(&ht, idx),
                };
                Some(Tensor::from_vec(values, (b, idx.len()), dev)?)
            }
        };
        let mut coords = Vec::with_capacity(b * m * 3);
        for p in poses {
            let r = to_f32(&p.rot);
            // (x, y, 0) · R: row vector times matrix.
            for &[x, y] in &self.mask_xy {
                coords.extend((0..3).map(|j| x * r[0][j] + y * r[1][j]));
            }
        }
        let coords = Tensor::from_vec(coords, (b, m, 3), dev)?;
        Ok(PreparedBatch { encoder_input, target, ctf, coords })
    }

    /// [`Self::prepare_hartley`] for poses being refined: the slice coordinates and the translated target
    /// are tensor functions of the rotation matrices `rot` `(B, 3, 3)` and shifts `shift` `(B, 2)` (pixels),
    /// so a loss on the batch has gradients with respect to both. `poses` are their current values, used
    /// for the encoder input (which the pose gradient does not pass through, as in cryoDRGN).
    ///
    /// The target is step 2 of the module docs on the mask, `H′ = cos(2πk·t)·H + sin(2πk·t)·H(−k)`, where
    /// `H(−k)` of mask point `j` is point `M − 1 − j`; the coordinates are `x·R₀ + y·R₁` elementwise, so
    /// mirrored points stay exact negatives (the Fourier decoder pairs them).
    pub fn prepare_refinable(
        &self,
        sym: Vec<f32>,
        ctf_full: Option<Vec<f32>>,
        poses: &[Pose],
        (rot, shift): (&Tensor, &Tensor),
    ) -> TrainResult<PreparedBatch> {
        let (b, m, l2) = (poses.len(), self.mask.len(), self.lattice.len());
        if rot.dims() != [b, 3, 3] || shift.dims() != [b, 2] {
            return Err(drgnfly_em::Error::Shape {
                op: "prepare refinable batch",
                expected: format!("rotations ({b}, 3, 3) and shifts ({b}, 2)"),
                got: format!("{:?} and {:?}", rot.dims(), shift.dims()),
            }
            .into());
        }
        let dev = &self.device;
        let mirror: Vec<usize> = self.mask.iter().rev().copied().collect();
        let gather = |idx: &[usize]| -> TrainResult<Tensor> {
            let v: Vec<f32> = sym.chunks_exact(l2).flat_map(|img| idx.iter().map(move |&i| img[i])).collect();
            Ok(Tensor::from_vec(v, (b, m), dev)?)
        };
        let (h, h_mirror) = (gather(&self.mask)?, gather(&mirror)?);
        let (x, y): (Vec<f32>, Vec<f32>) = self.mask_xy.iter().map(|&[x, y]| (x, y)).unzip();
        let (x, y) = (Tensor::from_vec(x, (1, m), dev)?, Tensor::from_vec(y, (1, m), dev)?);
        // Lattice coordinates at extent 0.5 are the frequencies in cycles/px.
        let phase = ((shift.narrow(1, 0, 1)?.broadcast_mul(&x)?
            + shift.narrow(1, 1, 1)?.broadcast_mul(&y)?)?
            * (2.0 * std::f64::consts::PI))?;
        let target = ((phase.cos()? * h)? + (phase.sin()? * h_mirror)?)?;
        let row = |i: usize| rot.narrow(1, i, 1); // (B, 1, 3)
        let coords = (x.unsqueeze(2)?.broadcast_mul(&row(0)?)? + y.unsqueeze(2)?.broadcast_mul(&row(1)?)?)?;
        let fixed = self.prepare_hartley(sym, ctf_full, poses)?;
        Ok(PreparedBatch { target, coords, ..fixed })
    }
}

fn sign(v: f32) -> f32 {
    if v > 0.0 {
        1.0
    } else if v < 0.0 {
        -1.0
    } else {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use drgnfly_em::hartley::{symmetrize_ht, HartleyPlan};

    fn prep(encoder: EncoderInput) -> BatchPrep {
        let cfg = PreprocessConfig { window_r: None, invert: false };
        BatchPrep::new(8, &cfg, Normalization { mean: 0.0, std: 2.0 }, encoder, &Device::Cpu).unwrap()
    }

    fn identity() -> drgnfly_em::rotation::Mat3 {
        drgnfly_em::rotation::IDENTITY
    }

    #[test]
    fn target_is_the_normalized_hartley_image_on_the_mask() {
        let p = prep(EncoderInput::Disc(4));
        let raw: Vec<f32> = (0..64).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let batch = p.prepare(&raw, &[Pose { rot: identity(), shift_px: [0.0, 0.0] }], None).unwrap();
        let plan = HartleyPlan::new(8).unwrap();
        let mut ht = raw.clone();
        plan.ht2_center(&mut ht, &mut plan.make_scratch()).unwrap();
        let mut sym = vec![0.0; 81];
        symmetrize_ht(&ht, 8, &mut sym).unwrap();
        let target = batch.target.to_vec2::<f32>().unwrap();
        // Disc of radius 4 on the 9×9 lattice without DC: the 48 points with x² + y² ≤ 16 (steps), minus 1.
        assert_eq!(target[0].len(), 48);
        let lat = Lattice::new(9, 0.5).unwrap();
        for (j, &i) in lat.circular_mask(4.0, true).iter().enumerate() {
            assert!((target[0][j] - sym[i] / 2.0).abs() < 1e-5);
        }
        // No CTF: the encoder input is the target itself (same disc).
        assert_eq!(batch.encoder_input.unwrap().to_vec2::<f32>().unwrap(), target);
    }

    #[test]
    fn coords_are_row_vector_times_rotation_and_encoder_is_phase_flipped() {
        let p = prep(EncoderInput::FullLattice);
        // 90° about z: R = [[0, 1, 0], [−1, 0, 0], [0, 0, 1]] maps (x, y, 0)·R = (−y, x, 0).
        let rot = [[0.0, 1.0, 0.0], [-1.0, 0.0, 0.0], [0.0, 0.0, 1.0]];
        let raw = vec![1.0f32; 64];
        let ctf = CtfParams {
            angpix: 2.0,
            defocus_u_a: 15000.0,
            defocus_v_a: 15000.0,
            defocus_angle_deg: 0.0,
            voltage_kv: 300.0,
            cs_mm: 2.7,
            amp_contrast: 0.1,
            phase_shift_deg: 0.0,
            bfactor: None,
            scale: 1.0,
        };
        let batch = p.prepare(&raw, &[Pose { rot, shift_px: [0.0, 0.0] }], Some(&[ctf])).unwrap();
        let coords = batch.coords.to_vec3::<f32>().unwrap();
        let lat = Lattice::new(9, 0.5).unwrap();
        let mask = lat.circular_mask(4.0, true);
        for (j, &i) in mask.iter().enumerate() {
            let (x, y) = (lat.coords()[3 * i], lat.coords()[3 * i + 1]);
            assert_eq!(coords[0][j], [-y, x, 0.0]);
        }
        // A constant image has all its power at DC, where the CTF is −w < 0: the flipped input is −H(0).
        let enc = batch.encoder_input.unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(enc[0].len(), 81);
        assert!((enc[0][40] - (-64.0 / 2.0)).abs() < 1e-4, "DC {}", enc[0][40]);
        let c = batch.ctf.unwrap().to_vec2::<f32>().unwrap();
        assert_eq!(c[0].len(), mask.len());
    }

    #[test]
    fn refinable_batch_is_the_fixed_batch_at_the_same_pose() {
        let p = prep(EncoderInput::Disc(4));
        let rot = drgnfly_em::rotation::random::random_rotations(1, 7);
        let pose = Pose { rot: rot[0], shift_px: [1.25, -0.5] };
        let raw: Vec<f32> = (0..64).map(|i| ((i * 7) % 5) as f32 - 2.0).collect();
        let fixed = p.prepare(&raw, &[pose], None).unwrap();
        let r = Tensor::from_vec(to_f32(&pose.rot).concat(), (1, 3, 3), &Device::Cpu).unwrap();
        let t = Tensor::from_vec(pose.shift_px.to_vec(), (1, 2), &Device::Cpu).unwrap();
        let sym = p.hartley_images(&raw).unwrap();
        let refinable = p.prepare_refinable(sym, None, &[pose], (&r, &t)).unwrap();
        let max_diff = |a: &Tensor, b: &Tensor| {
            let (a, b) = (
                a.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
                b.flatten_all().unwrap().to_vec1::<f32>().unwrap(),
            );
            a.iter().zip(&b).map(|(x, y)| (x - y).abs()).fold(0f32, f32::max)
        };
        assert!(max_diff(&fixed.target, &refinable.target) < 1e-4);
        assert!(max_diff(&fixed.coords, &refinable.coords) < 1e-6);
        assert!(
            max_diff(fixed.encoder_input.as_ref().unwrap(), refinable.encoder_input.as_ref().unwrap()) == 0.0
        );
    }

    #[test]
    fn bad_inputs_are_errors() {
        let p = prep(EncoderInput::Disc(4));
        let pose = Pose { rot: identity(), shift_px: [0.0, 0.0] };
        let mut raw = vec![0.5f32; 64];
        raw[10] = f32::NAN;
        assert!(matches!(p.prepare(&raw, &[pose], None), Err(super::super::TrainError::Data(_))));
        assert!(p.prepare(&raw[..63], &[pose], None).is_err());
        let cfg = PreprocessConfig::default();
        let norm = Normalization { mean: 0.0, std: 1.0 };
        assert!(BatchPrep::new(8, &cfg, norm, EncoderInput::Disc(5), &Device::Cpu).is_err());
    }
}
