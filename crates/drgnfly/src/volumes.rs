//! Volumes from a trained model: the one path shared by `eval-vol`, `analyze`, `train-nn` and
//! `analyze-convergence` (cryoDRGN `Decoder.eval_volume` + `eval_vol`, reference §3.5).
//!
//! For a latent z: the decoder's Hartley values on a `(D+1)³` lattice (cryoDRGN's order, a Fourier
//! decoder leaving the outside of the Nyquist sphere at 0) → `·std + mean` → last index of each axis
//! dropped → inverse centred 3D Hartley transform (÷D³) → a `D³` volume `[z][y][x]`. Then, in cryoDRGN's
//! order: `--flip` (reverse z), `--invert` (×−1), `--low-pass` (hard sphere at Apix/res cycles/px),
//! `--crop` (centre box; the header origin moves to the crop corner, start·Apix Å, so the map stays in
//! register with the uncropped one).
//!
//! `-d d` evaluates only the central `(d+1)³` lattice points (extent `0.5·d/D`), a `d³` volume of the same
//! physical size, so its pixel size is **Apix·D/d**, which is written into the header (cryoDRGN keeps the
//! full-size Apix there, which makes the map the wrong size in a viewer).
//!
//! Pixel size: `--Apix`, else the run's ctf.pkl (`D₀·Apix₀/D`, as `analyze` does), else 1 Å.
//!
//! Weights: a drgnfly checkpoint (`weights.N.safetensors`) or cryoDRGN's `weights.N.pkl` (read by name).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use anyhow::{bail, Context};
use candle_core::{Device, Tensor};
use drgnfly_em::hartley::HartleyPlan;
use drgnfly_io::mrc::{write_volume, MrcDtype};
use drgnfly_nn::{read_checkpoint, read_cryodrgn_weights, DataNorm, Decoder, HetOnlyVae, ParamStore};

use crate::run_config::{ModelKind, RunConfig};

/// Post-processing of generated volumes (cryoDRGN's eval_vol flags).
#[derive(Clone, Debug, Default)]
pub struct VolumeRequest {
    /// Pixel size written into the headers (Å/px) of the full-size volume; scaled by D/d when downsampled.
    pub apix: Option<f32>,
    /// Reverse the z axis (`--flip`).
    pub flip: bool,
    /// Multiply by −1 (`--invert`).
    pub invert: bool,
    /// Evaluate only the lowest frequencies, giving a d³ volume (`-d`).
    pub downsample: Option<usize>,
    /// Low-pass filter to this resolution in Å (`--low-pass`).
    pub low_pass_a: Option<f32>,
    /// Crop the centre to this box (`--crop`).
    pub crop: Option<usize>,
}

/// A real-space volume ready to write.
#[derive(Clone, Debug, PartialEq)]
pub struct Volume {
    /// Box side.
    pub d: usize,
    /// `d³` values `[z][y][x]`.
    pub data: Vec<f32>,
    /// Voxel size, Å.
    pub apix: f32,
    /// Header origin (x, y, z), Å.
    pub origin: [f32; 3],
}

impl Volume {
    /// Write as a float32 MRC (atomic).
    pub fn write(&self, path: &Path) -> anyhow::Result<()> {
        write_volume(path, &self.data, [self.d; 3], self.apix, self.origin, MrcDtype::F32)?;
        Ok(())
    }
}

/// A decoder with what it takes to turn its output into maps.
pub struct VolumeDecoder {
    decoder: Decoder,
    norm: DataNorm,
    lattice_size: usize,
    default_apix: f32,
}

impl VolumeDecoder {
    /// Wrap a decoder (e.g. the one being trained) with its normalization, lattice side D+1 and the pixel
    /// size used when a request gives none.
    pub fn new(decoder: Decoder, norm: DataNorm, lattice_size: usize, default_apix: f32) -> Self {
        Self { decoder, norm, lattice_size, default_apix }
    }

    /// Load the model of a run from its checkpoint and config.yaml (module docs).
    pub fn load(weights: &Path, config_path: &Path) -> anyhow::Result<Self> {
        let config = RunConfig::read(config_path)?;
        let store = ParamStore::new(0, &Device::Cpu);
        let mut dec_cfg = config.decoder_config();
        let decoder = if config.model_kind() == ModelKind::Homogeneous {
            dec_cfg.zdim = 0;
            Decoder::new(&dec_cfg, store.var_builder())
                .with_context(|| format!("{}: model_args", config_path.display()))?
        } else {
            let enc_inputs = config.encoder_input_count()?;
            let enc_cfg = config.encoder_config(enc_inputs).context("heterogeneous config without zdim")?;
            HetOnlyVae::new(&enc_cfg, &dec_cfg, store.var_builder())
                .with_context(|| format!("{}: model_args", config_path.display()))?
                .decoder
        };
        store.load_state(&read_model_state(weights)?, weights).with_context(|| {
            format!("{} does not match the model described by {}", weights.display(), config_path.display())
        })?;
        let default_apix = match config.ctf_path(config_path) {
            None => 1.0,
            Some(ctf) if !ctf.exists() => {
                tracing::warn!(
                    "{}: the run's ctf.pkl {} is not there; maps are written at 1 Å/px unless --Apix is given",
                    config_path.display(),
                    ctf.display()
                );
                1.0
            }
            Some(ctf) => {
                let rows = drgnfly_io::pickle::load_ctf(&ctf).with_context(|| {
                    format!(
                        "reading the pixel size from the run's ctf.pkl (dataset_args.ctf of {}); fix the file or \
                         the config",
                        config_path.display()
                    )
                })?;
                match rows.first().map(|r| r[0] * r[1] / config.image_size() as f32) {
                    Some(a) if a.is_finite() && a > 0.0 => a,
                    _ => bail!(
                        "{}: its first row has no usable box size and pixel size; fix the file or pass --Apix",
                        ctf.display()
                    ),
                }
            }
        };
        Ok(Self::new(decoder, config.norm()?, config.lattice_args.d, default_apix))
    }

    /// Latent width of the model.
    pub fn zdim(&self) -> usize {
        self.decoder.zdim()
    }

    /// Image box size D of the model.
    pub fn image_size(&self) -> usize {
        self.lattice_size - 1
    }

    /// The volume at latent `z` (empty for a homogeneous model), post-processed per `request`.
    pub fn volume(&self, z: &[f32], request: &VolumeRequest) -> anyhow::Result<Volume> {
        let big_d = self.image_size();
        let apix_full = request.apix.unwrap_or(self.default_apix);
        if !(apix_full.is_finite() && apix_full > 0.0) {
            bail!("--Apix {apix_full}: the pixel size must be positive");
        }
        let d = match request.downsample {
            None => big_d,
            Some(d) if d % 2 == 0 && d >= 2 && d <= big_d => d,
            Some(d) => bail!("-d {d}: the downsampled box must be even and at most the model's box {big_d}"),
        };
        let extent = 0.5 * d as f64 / big_d as f64;
        let ht = self.decoder.eval_volume(z, d + 1, extent, self.norm)?;
        let mut data = ht.values;
        HartleyPlan::new(d)?.iht3_center(&mut data)?;
        let apix = (apix_full as f64 * big_d as f64 / d as f64) as f32;
        if request.flip {
            let plane = d * d;
            let flipped: Vec<f32> =
                (0..d).rev().flat_map(|z| data[z * plane..(z + 1) * plane].to_vec()).collect();
            data = flipped;
        }
        if request.invert {
            data.iter_mut().for_each(|v| *v = -*v);
        }
        if let Some(res) = request.low_pass_a {
            if !(res.is_finite() && res > 0.0) {
                bail!("--low-pass {res}: give a resolution in Å > 0");
            }
            drgnfly_em::filter::low_pass(&mut data, d, apix as f64 / res as f64)?;
        }
        let mut volume = Volume { d, data, apix, origin: [0.0; 3] };
        if let Some(c) = request.crop {
            volume = crop(&volume, c)?;
        }
        Ok(volume)
    }
}

/// The model state dict of a drgnfly checkpoint (`.safetensors`) or a cryoDRGN `weights.pkl`.
pub fn read_model_state(weights: &Path) -> anyhow::Result<HashMap<String, Tensor>> {
    let is_pkl = weights.extension().is_some_and(|e| e.eq_ignore_ascii_case("pkl"));
    Ok(if is_pkl { read_cryodrgn_weights(weights)? } else { read_checkpoint(weights, &Device::Cpu)?.model })
}

/// The centre `c³` box of `v`, origin moved to the crop corner.
fn crop(v: &Volume, c: usize) -> anyhow::Result<Volume> {
    if c == 0 || c > v.d {
        bail!("--crop {c}: the crop box must be between 1 and the volume box {}", v.d);
    }
    let s = (v.d - c) / 2;
    let mut data = Vec::with_capacity(c * c * c);
    for z in s..s + c {
        for y in s..s + c {
            let row = (z * v.d + y) * v.d;
            data.extend_from_slice(&v.data[row + s..row + s + c]);
        }
    }
    let o = s as f32 * v.apix;
    Ok(Volume { d: c, data, apix: v.apix, origin: [v.origin[0] + o, v.origin[1] + o, v.origin[2] + o] })
}

/// Decode one volume per row of `z` (N × zdim; empty with zdim 0 for homogeneous models) from the checkpoint
/// `weights` and its `config`, writing `out_dir/{prefix}{i:03}.mrc` with i from 1. Returns the paths written.
pub fn generate_volumes(
    weights: &Path,
    config: &Path,
    z: &[f32],
    zdim: usize,
    out_dir: &Path,
    prefix: &str,
    request: &VolumeRequest,
) -> anyhow::Result<Vec<PathBuf>> {
    let model = VolumeDecoder::load(weights, config)?;
    if zdim != model.zdim() {
        bail!(
            "latents have {zdim} dimensions but the model in {} has zdim {}",
            weights.display(),
            model.zdim()
        );
    }
    if zdim > 0 && (z.is_empty() || !z.len().is_multiple_of(zdim)) {
        bail!("{} latent values do not form rows of zdim {zdim}", z.len());
    }
    let empty: &[f32] = &[];
    let rows: Vec<&[f32]> = if zdim == 0 { vec![empty] } else { z.chunks_exact(zdim).collect() };
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut progress = crate::progress::Progress::new("volumes", rows.len() as u64, "volumes");
    let mut written = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let path = out_dir.join(format!("{prefix}{:03}.mrc", i + 1));
        model.volume(row, request)?.write(&path)?;
        written.push(path);
        progress.inc(1);
    }
    progress.finish();
    Ok(written)
}
