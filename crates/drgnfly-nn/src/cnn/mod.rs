//! The convolutional image encoder of amortized inference (cryoAI, HetACUMN): a residual convolutional trunk
//! on real-space images, global average pooling, and three heads of width `head_dim` (256) that predict each
//! image's rotation (6-D "s2s2", mapped to SO(3) by [`crate::rotation::rotation_matrices`]), shift (pixels)
//! and, with `zdim > 0`, its conformation (μ, log σ²).
//!
//! The trunk is a ResNet without normalisation layers: batch statistics would make a particle's pose depend
//! on the other images in its batch, and inference on millions of particles must not. Instead the second
//! convolution of every residual block starts at zero, so each block starts as the identity (its shortcut)
//! and the network trains stably at depth (Goyal et al. 2017; Zhang et al., Fixup, 2019).
//!
//! Two layouts: [`CnnConfig::small`] (a 3×3 stem of stride 2, four stages of one block from 16 channels;
//! ~0.4 M parameters with the heads), sized for D = 64–128 on CPUs, and [`CnnConfig::resnet18`] (HetACUMN's Fig. S1: a 7×7
//! stem of stride 2, 2×2 max pooling, four stages of two blocks from 64 channels; ~11 M parameters).
//! State-dict names: `stem.*`, `stages.S.B.{conv1,conv2,shortcut}.*`, `heads.{rot,shift,z}.{0,1}.*`.

mod conv;
mod input;

use candle_core::{DType, Tensor, D};
use candle_nn::{Init, Linear, Module, VarBuilder};

use crate::error::{Error, Result};
use crate::mlp::linear;

use input::prepare_images;

/// The first layer of the trunk.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Stem {
    /// A 3×3 convolution of stride 2.
    Small,
    /// A 7×7 convolution of stride 2, then 2×2 max pooling (ResNet).
    ResNet,
}

/// The named CNN layouts (`--encoder`; config.yaml's `model_args.cnn_layout`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum CnnLayout {
    /// [`CnnConfig::small`].
    #[default]
    Small,
    /// [`CnnConfig::resnet18`].
    Resnet18,
}

impl CnnLayout {
    /// The layout for `d`×`d` images and a conformation head of width `zdim` (0: none).
    pub fn config(self, d: usize, zdim: usize) -> CnnConfig {
        match self {
            CnnLayout::Small => CnnConfig::small(d, zdim),
            CnnLayout::Resnet18 => CnnConfig::resnet18(d, zdim),
        }
    }
}

/// Architecture of the CNN encoder.
#[derive(Clone, Debug, PartialEq)]
pub struct CnnConfig {
    /// Image side D (pixels).
    pub d: usize,
    /// The first layer.
    pub stem: Stem,
    /// Channels of the stem and the first stage; each later stage doubles them and halves the resolution.
    pub width: usize,
    /// Stages.
    pub stages: usize,
    /// Residual blocks per stage.
    pub blocks: usize,
    /// Hidden width of each head.
    pub head_dim: usize,
    /// Latent width of the conformation head; 0 for none (homogeneous).
    pub zdim: usize,
}

impl CnnConfig {
    /// The default encoder for D = 64–128: 16 → 128 channels over four stages of one block.
    pub fn small(d: usize, zdim: usize) -> Self {
        Self { d, stem: Stem::Small, width: 16, stages: 4, blocks: 1, head_dim: 256, zdim }
    }

    /// ResNet-18's trunk (HetACUMN): 64 → 512 channels over four stages of two blocks.
    pub fn resnet18(d: usize, zdim: usize) -> Self {
        Self { d, stem: Stem::ResNet, width: 64, stages: 4, blocks: 2, head_dim: 256, zdim }
    }

    /// Side of the trunk's last feature map, or an error when the images are too small for the layout.
    fn final_side(&self) -> Result<usize> {
        let after_stem = match self.stem {
            Stem::Small => self.d.div_ceil(2),
            Stem::ResNet => self.d.div_ceil(2) / 2,
        };
        let side = (1..self.stages).fold(after_stem, |s, _| s.div_ceil(2));
        if self.stages == 0 || self.blocks == 0 || self.width == 0 || self.head_dim == 0 || after_stem == 0 {
            return Err(Error::config(
                "cnn",
                format!(
                    "{self:?}: stages, blocks, width and head width must be at least 1 for D = {}",
                    self.d
                ),
            ));
        }
        Ok(side)
    }

    /// Multiply-adds of the trunk's convolutions for one image (the heads are negligible), for benchmarks.
    pub fn forward_macs(&self) -> u64 {
        let conv =
            |side: usize, c_in: usize, c_out: usize, k: usize| (side * side * c_in * c_out * k * k) as u64;
        let (k, mut side) = match self.stem {
            Stem::Small => (3, self.d.div_ceil(2)),
            Stem::ResNet => (7, self.d.div_ceil(2)),
        };
        let mut macs = conv(side, 1, self.width, k);
        if self.stem == Stem::ResNet {
            side /= 2;
        }
        let mut c_in = self.width;
        for s in 0..self.stages {
            let c_out = self.width << s;
            for b in 0..self.blocks {
                if s > 0 && b == 0 {
                    side = side.div_ceil(2);
                    macs += conv(side, c_in, c_out, 1);
                }
                macs += conv(side, c_in, c_out, 3) + conv(side, c_out, c_out, 3);
                c_in = c_out;
            }
        }
        macs
    }

    /// Channels of the trunk's output.
    pub fn features(&self) -> usize {
        self.width << (self.stages - 1)
    }
}

/// A 2-D convolution with bias; weights (out, in, k, k).
#[derive(Clone, Debug)]
struct Conv {
    weight: Tensor,
    bias: Tensor,
    stride: usize,
    padding: usize,
}

impl Conv {
    /// He-normal weights, or zeros (the last convolution of a residual branch).
    fn new(c_in: usize, c_out: usize, k: usize, stride: usize, zero: bool, vb: VarBuilder) -> Result<Self> {
        let fan_in = (c_in * k * k) as f64;
        let init =
            if zero { Init::Const(0.0) } else { Init::Randn { mean: 0.0, stdev: (2.0 / fan_in).sqrt() } };
        let weight = vb.get_with_hints((c_out, c_in, k, k), "weight", init)?;
        let bias = vb.get_with_hints(c_out, "bias", Init::Const(0.0))?;
        Ok(Self { weight, bias, stride, padding: k / 2 })
    }

    /// The convolution plus bias, then a ReLU when `relu`.
    fn forward(&self, x: &Tensor, relu: bool) -> Result<Tensor> {
        conv::conv2d(x, (&self.weight, &self.bias), self.stride, self.padding, relu)
    }
}

/// conv3×3 → ReLU → conv3×3 (zero at start), plus the shortcut (a strided 1×1 convolution when the block
/// changes the resolution or the channels), then ReLU.
#[derive(Clone, Debug)]
struct Block {
    conv1: Conv,
    conv2: Conv,
    shortcut: Option<Conv>,
}

impl Block {
    fn new(c_in: usize, c_out: usize, stride: usize, vb: VarBuilder) -> Result<Self> {
        let shortcut = (stride != 1 || c_in != c_out)
            .then(|| Conv::new(c_in, c_out, 1, stride, false, vb.pp("shortcut")))
            .transpose()?;
        Ok(Self {
            conv1: Conv::new(c_in, c_out, 3, stride, false, vb.pp("conv1"))?,
            conv2: Conv::new(c_out, c_out, 3, 1, true, vb.pp("conv2"))?,
            shortcut,
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        let branch = self.conv2.forward(&self.conv1.forward(x, true)?, false)?;
        let skip = match &self.shortcut {
            Some(s) => s.forward(x, false)?,
            None => x.clone(),
        };
        Ok((branch + skip)?.relu()?)
    }
}

/// Linear → ReLU → Linear.
#[derive(Clone, Debug)]
struct Head(Linear, Linear);

impl Head {
    fn new(c_in: usize, hidden: usize, out: usize, vb: VarBuilder) -> Result<Self> {
        Ok(Self(linear(c_in, hidden, vb.pp("0"))?, linear(hidden, out, vb.pp("1"))?))
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(self.1.forward(&self.0.forward(x)?.relu()?)?)
    }
}

/// What the encoder predicts for a batch of B images.
#[derive(Clone, Debug)]
pub struct CnnOutput {
    /// (B, 6): the rotation's first two rows before Gram–Schmidt.
    pub rotation: Tensor,
    /// (B, 2): the shift in pixels.
    pub shift: Tensor,
    /// (μ, log σ²), each (B, zdim), when the encoder has a conformation head.
    pub z: Option<(Tensor, Tensor)>,
}

/// The CNN encoder.
#[derive(Clone, Debug)]
pub struct CnnEncoder {
    cfg: CnnConfig,
    stem: Conv,
    blocks: Vec<Block>,
    rot: Head,
    shift: Head,
    z: Option<Head>,
}

impl CnnEncoder {
    /// Build or load under `vb`.
    pub fn new(cfg: &CnnConfig, vb: VarBuilder) -> Result<Self> {
        cfg.final_side()?;
        let k = match cfg.stem {
            Stem::Small => 3,
            Stem::ResNet => 7,
        };
        let stem = Conv::new(1, cfg.width, k, 2, false, vb.pp("stem"))?;
        let mut blocks = Vec::new();
        let mut c_in = cfg.width;
        for s in 0..cfg.stages {
            let c_out = cfg.width << s;
            for b in 0..cfg.blocks {
                let stride = if s > 0 && b == 0 { 2 } else { 1 };
                blocks.push(Block::new(c_in, c_out, stride, vb.pp(format!("stages.{s}.{b}")))?);
                c_in = c_out;
            }
        }
        let heads = vb.pp("heads");
        let f = cfg.features();
        Ok(Self {
            cfg: cfg.clone(),
            stem,
            blocks,
            rot: Head::new(f, cfg.head_dim, 6, heads.pp("rot"))?,
            shift: Head::new(f, cfg.head_dim, 2, heads.pp("shift"))?,
            z: (cfg.zdim > 0).then(|| Head::new(f, cfg.head_dim, 2 * cfg.zdim, heads.pp("z"))).transpose()?,
        })
    }

    /// The architecture.
    pub fn config(&self) -> &CnnConfig {
        &self.cfg
    }

    /// The input tensor (B, D, D) for raw images (B·D·D), each standardised and rolled by whole pixels to the density centroid of its low-pass, and
    /// the roll applied to each image (pixels).
    pub fn input(&self, raw: &[f32], device: &candle_core::Device) -> Result<(Tensor, Vec<[f32; 2]>)> {
        let d = self.cfg.d;
        let (x, rolls) = prepare_images(raw, d);
        Ok((Tensor::from_vec(x, (rolls.len(), d, d), device)?, rolls))
    }

    /// Pooled trunk features (B, F) of prepared images (B, D, D; see [`CnnEncoder::input`]).
    pub fn features(&self, images: &Tensor) -> Result<Tensor> {
        let (_, h, w) = images.dims3().map_err(|_| Error::shape("CNN input", "(B, D, D)", images.dims()))?;
        if h != self.cfg.d || w != self.cfg.d {
            return Err(Error::shape("CNN input", format!("(B, {0}, {0})", self.cfg.d), images.dims()));
        }
        let mut x = self.stem.forward(&images.unsqueeze(1)?.to_dtype(DType::F32)?, true)?;
        if self.cfg.stem == Stem::ResNet {
            x = x.max_pool2d(2)?;
        }
        for block in &self.blocks {
            x = block.forward(&x)?;
        }
        Ok(x.mean(D::Minus1)?.mean(D::Minus1)?)
    }

    /// Rotation, shift and conformation of prepared images (see [`CnnEncoder::features`]).
    pub fn forward(&self, images: &Tensor) -> Result<CnnOutput> {
        let f = self.features(images)?;
        let z = match &self.z {
            Some(head) => {
                let out = head.forward(&f)?;
                let zdim = self.cfg.zdim;
                Some((out.narrow(1, 0, zdim)?, out.narrow(1, zdim, zdim)?))
            }
            None => None,
        };
        Ok(CnnOutput { rotation: self.rot.forward(&f)?, shift: self.shift.forward(&f)?, z })
    }
}

#[cfg(test)]
mod tests {
    use candle_core::Device;

    use super::*;
    use crate::params::ParamStore;
    use crate::rotation::{rotation_matrices, RotationParam};

    #[test]
    fn both_layouts_give_rotations_shifts_and_latents_of_the_right_shapes() {
        for (cfg, params) in [
            (CnnConfig::small(64, 8), (400_000, 420_000)),
            (CnnConfig::resnet18(64, 0), (11_000_000, 11_600_000)),
        ] {
            let store = ParamStore::new(1, &Device::Cpu);
            let enc = CnnEncoder::new(&cfg, store.var_builder()).unwrap();
            let n = store.num_params();
            assert!(n > params.0 && n < params.1, "{cfg:?}: {n} parameters");
            let x = Tensor::randn(0f32, 1.0, (3, 64, 64), &Device::Cpu).unwrap();
            let out = enc.forward(&x).unwrap();
            assert_eq!(out.rotation.dims(), &[3, 6]);
            assert_eq!(out.shift.dims(), &[3, 2]);
            assert_eq!(
                out.z.as_ref().map(|(m, v)| (m.dims().to_vec(), v.dims().to_vec())),
                (cfg.zdim > 0).then(|| (vec![3, 8], vec![3, 8]))
            );
            // Gram–Schmidt turns the rotation head's output into proper rotations.
            let r = rotation_matrices(&out.rotation, RotationParam::SixD).unwrap();
            let rrt = r.matmul(&r.transpose(1, 2).unwrap()).unwrap().to_vec3::<f32>().unwrap();
            for m in rrt {
                for (i, row) in m.iter().enumerate() {
                    for (j, v) in row.iter().enumerate() {
                        assert!((v - f32::from(u8::from(i == j))).abs() < 1e-5);
                    }
                }
            }
        }
        let wrong = CnnEncoder::new(&CnnConfig::small(64, 0), ParamStore::new(1, &Device::Cpu).var_builder())
            .unwrap()
            .forward(&Tensor::zeros((2, 32, 32), DType::F32, &Device::Cpu).unwrap());
        assert!(wrong.unwrap_err().to_string().contains("(B, 64, 64)"));
        let tiny = CnnConfig { stages: 0, ..CnnConfig::small(8, 0) };
        assert!(CnnEncoder::new(&tiny, ParamStore::new(1, &Device::Cpu).var_builder()).is_err());
    }

    /// The shift head learns where a blob is: a regression the pose heads depend on, end to end through the
    /// convolutions' backward.
    #[test]
    fn the_encoder_learns_to_locate_a_blob() {
        use rand::{Rng, SeedableRng};
        let d = 32;
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let batch = |rng: &mut rand_chacha::ChaCha8Rng| {
            let centres: Vec<[f32; 2]> =
                (0..32).map(|_| [rng.random_range(-6.0..6.0), rng.random_range(-6.0..6.0)]).collect();
            let imgs: Vec<f32> = centres
                .iter()
                .flat_map(|c| {
                    (0..d * d).map(move |i| {
                        let (y, x) = ((i / d) as f32 - 16.0 - c[1], (i % d) as f32 - 16.0 - c[0]);
                        (-(x * x + y * y) / 8.0).exp()
                    })
                })
                .collect();
            let x = Tensor::from_vec(imgs, (32, d, d), &Device::Cpu).unwrap();
            let t = Tensor::from_vec(centres.concat(), (32, 2), &Device::Cpu).unwrap();
            (x, t)
        };
        let store = ParamStore::new(1, &Device::Cpu);
        let enc = CnnEncoder::new(&CnnConfig::small(d, 0), store.var_builder()).unwrap();
        let mut adam =
            crate::Adam::new(store.named_vars(), crate::AdamConfig { lr: 1e-3, ..Default::default() })
                .unwrap();
        let mut losses = Vec::new();
        for _ in 0..150 {
            let (x, t) = batch(&mut rng);
            let loss = (enc.forward(&x).unwrap().shift - t).unwrap().sqr().unwrap().mean_all().unwrap();
            losses.push(loss.to_scalar::<f32>().unwrap());
            adam.backward_step(&loss).unwrap();
        }
        let (first, last) =
            (losses[..10].iter().sum::<f32>() / 10.0, losses[140..].iter().sum::<f32>() / 10.0);
        // Uniform centres in ±6 px: variance 12 per axis before training.
        assert!(last < 0.1 * first, "the blob's position should be learned: {first} → {last}");
    }

    #[test]
    fn residual_blocks_start_as_their_shortcut() {
        let store = ParamStore::new(3, &Device::Cpu);
        let block = Block::new(4, 4, 1, store.var_builder()).unwrap();
        let x = Tensor::randn(0f32, 1.0, (2, 4, 8, 8), &Device::Cpu).unwrap();
        let y = block.forward(&x).unwrap();
        let diff =
            (y - x.relu().unwrap()).unwrap().abs().unwrap().max_all().unwrap().to_scalar::<f32>().unwrap();
        assert_eq!(diff, 0.0);
    }
}
