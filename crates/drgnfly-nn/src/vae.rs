//! cryoDRGN's heterogeneous VAE (`HetOnlyVAE`, reference §3.2): an image encoder q(z | y) and a coordinate
//! decoder conditioned on z, with poses given.
//!
//! State-dict names match cryoDRGN's `weights.pkl` `model_state_dict`: `encoder.main.*`,
//! `decoder.rand_freqs` (gaussian encoding), `decoder.decoder.main.*`. Training and evaluation differ only in
//! the latent: z = μ + ε·exp(½ log σ²) with ε ~ N(0, 1) when training, z = μ otherwise.

use candle_core::Tensor;
use candle_nn::VarBuilder;
use rand::Rng;
use rand_distr::{Distribution, StandardNormal};

use crate::decoder::{Decoder, DecoderConfig};
use crate::encoder::{Encoder, EncoderConfig};
use crate::error::{Error, Result};

/// Encoder + decoder.
#[derive(Clone, Debug)]
pub struct HetOnlyVae {
    /// q(z | y).
    pub encoder: Encoder,
    /// p(y | z, pose).
    pub decoder: Decoder,
}

/// What one forward pass over a batch produces.
#[derive(Clone, Debug)]
pub struct VaeOutput {
    /// Posterior means (B, zdim).
    pub mu: Tensor,
    /// Posterior log variances (B, zdim).
    pub logvar: Tensor,
    /// The latent used for decoding (B, zdim).
    pub z: Tensor,
    /// Decoded Hartley values of each image's slice (B, N), before the CTF.
    pub slice: Tensor,
}

impl HetOnlyVae {
    /// Build or load with cryoDRGN's prefixes (`encoder`, `decoder`) under `vb`.
    pub fn new(encoder: &EncoderConfig, decoder: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        if encoder.zdim != decoder.zdim {
            return Err(Error::config(
                "zdim",
                format!("encoder zdim {} differs from decoder zdim {}", encoder.zdim, decoder.zdim),
            ));
        }
        Ok(Self { encoder: Encoder::new(encoder, vb.pp("encoder"))?, decoder: Decoder::new(decoder, vb.pp("decoder"))? })
    }

    /// The latent for decoding: μ + ε·exp(½ log σ²) with ε drawn from `rng` when `train`, μ otherwise.
    pub fn latent(mu: &Tensor, logvar: &Tensor, train: bool, rng: &mut impl Rng) -> Result<Tensor> {
        if !train {
            return Ok(mu.clone());
        }
        let eps: Vec<f32> = (0..mu.elem_count()).map(|_| StandardNormal.sample(rng)).collect();
        let eps = Tensor::from_vec(eps, mu.shape(), mu.device())?.to_dtype(mu.dtype())?;
        Ok((mu + (logvar * 0.5)?.exp()?.mul(&eps)?)?)
    }

    /// Encode masked images (B, in_dim), draw or take the latent, decode slices at coords (B, N, 3).
    pub fn forward(&self, images: &Tensor, coords: &Tensor, train: bool, rng: &mut impl Rng) -> Result<VaeOutput> {
        let (mu, logvar) = self.encoder.forward(images)?;
        let z = Self::latent(&mu, &logvar, train, rng)?;
        let slice = self.decoder.forward(coords, Some(&z))?;
        Ok(VaeOutput { mu, logvar, z, slice })
    }
}
