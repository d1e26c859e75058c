//! Image encoders q(z | y): an MLP from the masked Hartley pixels of one image to (μ, log σ²)
//! (reference §3.2, `--encode-mode resid|mlp`).
//!
//! The input is the flattened (D+1)² Hartley image after translation and CTF sign flip, restricted to the
//! encoder mask (`--enc-mask`, default the disc of radius D/2 without the DC point: 3208 pixels at D = 64);
//! selecting those pixels is the caller's job, so `in_dim` is the mask's pixel count. The MLP output
//! (B, 2·zdim) is split into μ = the first zdim columns and log σ² = the rest. State-dict names: `main.*`
//! under the encoder's prefix (`encoder` inside a VAE).

use candle_core::Tensor;
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::mlp::{Activation, Mlp, ResidLinearMlp};

/// Encoder architecture (`--encode-mode`). The CNN and tilt-series encoders are not implemented yet.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum EncodeMode {
    /// Residual MLP (cryoDRGN's default).
    #[default]
    Resid,
    /// Plain MLP.
    Mlp,
}

/// Encoder hyperparameters, named as cryoDRGN's `config.yaml` `model_args`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct EncoderConfig {
    /// Number of input pixels (the encoder mask's count).
    pub in_dim: usize,
    /// Hidden layers (`qlayers`, `--enc-layers`, default 3).
    pub layers: usize,
    /// Hidden width (`qdim`, `--enc-dim`, default 1024).
    pub dim: usize,
    /// Latent width.
    pub zdim: usize,
    /// Architecture (`encode_mode`).
    pub mode: EncodeMode,
    /// Hidden activation.
    pub activation: Activation,
}

impl EncoderConfig {
    /// cryoDRGN `train_vae` defaults for `in_dim` masked pixels and latent width `zdim`.
    pub fn new(in_dim: usize, zdim: usize) -> Self {
        Self { in_dim, layers: 3, dim: 1024, zdim, mode: EncodeMode::Resid, activation: Activation::Relu }
    }
}

#[derive(Clone, Debug)]
enum Body {
    Resid(ResidLinearMlp),
    Mlp(Mlp),
}

/// The MLP image encoder.
#[derive(Clone, Debug)]
pub struct Encoder {
    body: Body,
    zdim: usize,
}

impl Encoder {
    /// Build or load under `vb` (`encoder` inside a VAE).
    pub fn new(cfg: &EncoderConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.zdim == 0 {
            return Err(Error::config("zdim", "the encoder needs a latent width of at least 1"));
        }
        let out = 2 * cfg.zdim;
        let body = match cfg.mode {
            EncodeMode::Resid => {
                Body::Resid(ResidLinearMlp::new(cfg.in_dim, cfg.layers, cfg.dim, out, cfg.activation, vb)?)
            }
            EncodeMode::Mlp => Body::Mlp(Mlp::new(cfg.in_dim, cfg.layers, cfg.dim, out, cfg.activation, vb)?),
        };
        Ok(Self { body, zdim: cfg.zdim })
    }

    /// Latent width.
    pub fn zdim(&self) -> usize {
        self.zdim
    }

    /// Masked images (B, in_dim) → (μ, log σ²), each (B, zdim).
    pub fn forward(&self, images: &Tensor) -> Result<(Tensor, Tensor)> {
        if images.rank() != 2 {
            return Err(Error::shape("encoder input", "(B, masked pixels)", images.dims()));
        }
        let out = match &self.body {
            Body::Resid(m) => m.forward(images)?,
            Body::Mlp(m) => m.forward(images)?,
        };
        Ok((out.narrow(1, 0, self.zdim)?, out.narrow(1, self.zdim, self.zdim)?))
    }
}
