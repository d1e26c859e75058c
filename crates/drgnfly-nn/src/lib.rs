//! Neural reconstruction: positional encodings, encoders, coordinate decoders, losses and trainers.
//!
//! # Tour
//!
//! - [`ParamStore`]: the model's named variables with PyTorch's default initialisation from a seed; hand
//!   its [`ParamStore::var_builder`] to a model constructor. To run cryoDRGN's weights instead, build the
//!   model from `VarBuilder::from_tensors(read_cryodrgn_weights(path)?, DType::F32, &dev)`.
//! - [`PositionalEncoding`] ([`PeType`]) → [`ResidLinearMlp`] = a coordinate decoder: [`HartleyDecoder`] or
//!   [`FourierDecoder`] (half-space trick), selected by [`Decoder`] from a [`DecoderConfig`].
//!   [`Decoder::eval_volume`] decodes a volume's Hartley grid.
//! - [`Encoder`] (masked image → μ, log σ²) and [`HetOnlyVae`], with [`vae_loss`].
//! - [`Adam`] with saveable state, and [`Checkpoint`] ([`write_checkpoint`] / [`read_checkpoint`]);
//!   [`write_cryodrgn_weights`] exports one as cryoDRGN's PyTorch `weights.N.pkl`.
//! - [`data::Dataset`]: particles + poses + CTF + selection, opened and checked once.
//! - [`train`]: batch preparation (window, Hartley, normalize, translate, CTF, rotated lattice), the one
//!   training driver ([`train::fit`]) with its [`train::Trainer`] and [`train::Hooks`] traits, the per-particle
//!   [`train::PoseTable`], and the VAE and homogeneous trainers.
//! - [`config::RunConfig`]: a run's `config.yaml` (cryoDRGN's layout), which rebuilds its decoder and encoder
//!   configurations.
//! - [`volume::VolumeDecoder`]: a trained decoder (or a run's checkpoint + config.yaml) → real-space maps,
//!   post-processed per a [`volume::VolumeRequest`] (cryoDRGN `eval_vol`).
//!
//! Names of variables are cryoDRGN's PyTorch state-dict keys throughout, so `weights.pkl` files import by
//! name.
//!
//! ```
//! use candle_core::{Device, Tensor};
//! use drgnfly_nn::{Decoder, DecoderConfig, Domain, ParamStore};
//!
//! let store = ParamStore::new(0, &Device::Cpu);
//! let mut cfg = DecoderConfig::new(17, 2); // D = 16 images, zdim 2
//! cfg.dim = 32;
//! cfg.domain = Domain::Hartley;
//! let decoder = Decoder::new(&cfg, store.var_builder().pp("decoder"))?;
//! let coords = Tensor::new(&[[[0.1f32, -0.2, 0.0], [0.25, 0.0, 0.5]]], &Device::Cpu)?; // (B=1, N=2, 3)
//! let z = Tensor::new(&[[0.5f32, -1.0]], &Device::Cpu)?;
//! assert_eq!(decoder.forward(&coords, Some(&z))?.dims(), [1, 2]);
//! # Ok::<(), drgnfly_nn::Error>(())
//! ```

pub mod adam;
pub mod beta;
pub mod checkpoint;
pub mod cnn;
pub mod config;
pub mod data;
pub mod decoder;
pub mod encoder;
pub mod error;
pub mod export;
mod fused;
pub mod inference;
pub mod loss;
pub mod mlp;
pub mod params;
pub mod pe;
pub mod phases;
pub mod rotation;
pub mod train;
pub mod vae;
pub mod volume;

pub use adam::{Adam, AdamConfig};
pub use beta::BetaSchedule;
pub use checkpoint::{read_checkpoint, read_cryodrgn_weights, write_checkpoint, Checkpoint};
pub use cnn::{CnnConfig, CnnEncoder, CnnOutput};
pub use decoder::{DataNorm, Decoder, DecoderConfig, Domain, FourierDecoder, HartleyDecoder, HartleyVolume};
pub use encoder::{EncodeMode, Encoder, EncoderConfig};
pub use error::{Error, Result};
pub use export::write_cryodrgn_weights;
pub use inference::no_grad;
pub use loss::{vae_loss, KlWeight, LossValues, VaeLoss};
pub use mlp::{Activation, Mlp, ResidLinearMlp};
pub use params::ParamStore;
pub use pe::{PeType, PositionalEncoding};
pub use vae::{HetOnlyVae, VaeOutput};
