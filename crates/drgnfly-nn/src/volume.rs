//! Volumes from a trained model: the one path shared by `eval-vol`, `analyze`, `train-nn` and
//! `analyze-convergence` (cryoDRGN `Decoder.eval_volume` + `eval_vol`, reference §3.5). Request errors
//! name the `eval-vol` option ([`Error::VolumeRequest`]); nothing here prints.
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
//! Pixel size: `--Apix`, else the run's ctf.pkl (`D₀·Apix₀/D`, as `analyze` does), else 1 Å. Where the
//! default came from is [`VolumeDecoder::pixel_size_source`]; when the config names a ctf.pkl that is not
//! there, its [`PixelSizeSource::warning`] is for the caller to show.
//!
//! Weights: a drgnfly checkpoint (`weights.N.safetensors`) or cryoDRGN's `weights.N.pkl` (read by name).

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{Device, Tensor};
use drgnfly_em::hartley::HartleyPlan;
use drgnfly_io::mrc::{write_volume, MrcDtype};

use crate::config::{ModelKind, RunConfig};
use crate::error::{Error, Result};
use crate::{read_checkpoint, read_cryodrgn_weights, DataNorm, Decoder, HetOnlyVae, ParamStore};

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
    pub fn write(&self, path: &Path) -> Result<()> {
        write_volume(path, &self.data, [self.d; 3], self.apix, self.origin, MrcDtype::F32)?;
        Ok(())
    }
}

/// Where a [`VolumeDecoder`]'s default pixel size (used when a request gives no `apix`) comes from.
#[derive(Clone, Debug, PartialEq)]
pub enum PixelSizeSource {
    /// Given to [`VolumeDecoder::new`].
    Given,
    /// The run's ctf.pkl (box · Å/px of its first row, over the model's D).
    Ctf(PathBuf),
    /// The run's config names no ctf.pkl: 1 Å/px.
    NoCtf,
    /// The run's config names a ctf.pkl that is not there: 1 Å/px.
    MissingCtf {
        /// The config.yaml.
        config: PathBuf,
        /// The ctf.pkl it names, as resolved.
        ctf: PathBuf,
    },
}

impl PixelSizeSource {
    /// What the user should be told about the default pixel size, if anything (a missing ctf.pkl).
    pub fn warning(&self) -> Option<String> {
        match self {
            Self::MissingCtf { config, ctf } => Some(format!(
                "{}: the run's ctf.pkl {} is not there; maps are written at 1 Å/px unless --Apix is given",
                config.display(),
                ctf.display()
            )),
            Self::Given | Self::Ctf(_) | Self::NoCtf => None,
        }
    }
}

/// A decoder with what it takes to turn its output into maps.
pub struct VolumeDecoder {
    decoder: Decoder,
    norm: DataNorm,
    lattice_size: usize,
    default_apix: f32,
    apix_source: PixelSizeSource,
}

impl VolumeDecoder {
    /// Wrap a decoder (e.g. the one being trained) with its normalization, lattice side D+1 and the pixel
    /// size used when a request gives none.
    pub fn new(decoder: Decoder, norm: DataNorm, lattice_size: usize, default_apix: f32) -> Self {
        Self { decoder, norm, lattice_size, default_apix, apix_source: PixelSizeSource::Given }
    }

    /// Load the model of a run from its checkpoint and config.yaml (module docs). A missing ctf.pkl is
    /// not an error (maps default to 1 Å/px); see [`Self::pixel_size_source`].
    pub fn load(weights: &Path, config_path: &Path) -> Result<Self> {
        let config = RunConfig::read(config_path)?;
        let model_args = || format!("{}: model_args", config_path.display());
        let store = ParamStore::new(0, &Device::Cpu);
        let mut dec_cfg = config.decoder_config();
        let decoder = if config.model_kind().is_homogeneous() {
            dec_cfg.zdim = 0;
            Decoder::new(&dec_cfg, store.var_builder()).map_err(|e| e.context(model_args()))?
        } else if matches!(config.model_kind(), ModelKind::Autodecoder | ModelKind::Amortized) {
            Decoder::new(&dec_cfg, store.var_builder().pp("decoder")).map_err(|e| e.context(model_args()))?
        } else {
            let enc_inputs = config.encoder_input_count()?;
            let enc_cfg = config
                .encoder_config(enc_inputs)
                .ok_or_else(|| Error::run_file(config_path, "heterogeneous config without zdim"))?;
            HetOnlyVae::new(&enc_cfg, &dec_cfg, store.var_builder())
                .map_err(|e| e.context(model_args()))?
                .decoder
        };
        let mut state = read_model_state(weights)?;
        if matches!(config.model_kind(), ModelKind::Amortized | ModelKind::Autodecoder) {
            // An encoder's weights (amortized poses, cryoDRGN-AI's conformation encoder) are not needed for maps.
            state.retain(|name, _| name.starts_with("decoder."));
        }
        store.load_state(&state, weights).map_err(|e| {
            e.context(format!(
                "{} does not match the model described by {}",
                weights.display(),
                config_path.display()
            ))
        })?;
        let (default_apix, apix_source) = match config.ctf_path(config_path) {
            None => (1.0, PixelSizeSource::NoCtf),
            Some(ctf) if !ctf.exists() => {
                (1.0, PixelSizeSource::MissingCtf { config: config_path.to_path_buf(), ctf })
            }
            Some(ctf) => {
                let rows = drgnfly_io::pickle::load_ctf(&ctf).map_err(|e| {
                    Error::from(e).context(format!(
                        "reading the pixel size from the run's ctf.pkl (dataset_args.ctf of {}); fix the file or \
                         the config",
                        config_path.display()
                    ))
                })?;
                match rows.first().map(|r| r[0] * r[1] / config.image_size() as f32) {
                    Some(a) if a.is_finite() && a > 0.0 => (a, PixelSizeSource::Ctf(ctf)),
                    _ => return Err(Error::run_file(
                        &ctf,
                        "its first row has no usable box size and pixel size; fix the file or pass --Apix",
                    )),
                }
            }
        };
        let mut model = Self::new(decoder, config.norm()?, config.lattice_args.d, default_apix);
        model.apix_source = apix_source;
        Ok(model)
    }

    /// Where the pixel size used when a request gives none comes from (module docs).
    pub fn pixel_size_source(&self) -> &PixelSizeSource {
        &self.apix_source
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
    pub fn volume(&self, z: &[f32], request: &VolumeRequest) -> Result<Volume> {
        let big_d = self.image_size();
        let apix_full = request.apix.unwrap_or(self.default_apix);
        if !(apix_full.is_finite() && apix_full > 0.0) {
            return Err(bad_request("--Apix", apix_full, "the pixel size must be positive"));
        }
        let d = match request.downsample {
            None => big_d,
            Some(d) if d % 2 == 0 && d >= 2 && d <= big_d => d,
            Some(d) => {
                return Err(bad_request(
                    "-d",
                    d,
                    format!("the downsampled box must be even and at most the model's box {big_d}"),
                ))
            }
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
                return Err(bad_request("--low-pass", res, "give a resolution in Å > 0"));
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
pub fn read_model_state(weights: &Path) -> Result<HashMap<String, Tensor>> {
    let is_pkl = weights.extension().is_some_and(|e| e.eq_ignore_ascii_case("pkl"));
    Ok(if is_pkl { read_cryodrgn_weights(weights)? } else { read_checkpoint(weights, &Device::Cpu)?.model })
}

/// The centre `c³` box of `v`, origin moved to the crop corner.
fn crop(v: &Volume, c: usize) -> Result<Volume> {
    if c == 0 || c > v.d {
        return Err(bad_request(
            "--crop",
            c,
            format!("the crop box must be between 1 and the volume box {}", v.d),
        ));
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

/// A request error for `option` given `value`.
fn bad_request(option: &'static str, value: impl std::fmt::Display, problem: impl Into<String>) -> Error {
    Error::VolumeRequest { option, value: value.to_string(), problem: problem.into() }
}
