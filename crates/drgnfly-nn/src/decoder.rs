//! Coordinate decoders: a positional encoding followed by a residual MLP, conditioned on a latent z
//! (reference §3.2–3.5).
//!
//! Input points are lattice frequencies c ∈ [−0.5, 0.5]³ (extent 0.5, D_lat = D + 1 points per axis) of shape
//! (B, N, 3), with one latent z (B, zdim) per batch row appended raw after the encoding.
//!
//! - [`HartleyDecoder`] (cryoDRGN `PositionalDecoder`, `--domain hartley`): one output per point, the Hartley
//!   value H(k) itself, with no symmetry built in.
//! - [`FourierDecoder`] (cryoDRGN `FTPositionalDecoder`, `--domain fourier`, the default): two outputs
//!   (Re F, Im F). The network only represents the half-space k_z ≤ 0: points with k_z > 0 are negated before
//!   the MLP and Im is negated after, which builds in Friedel symmetry F(−k) = F*(k). Its Hartley value is
//!   H = Re − Im, and H(−k) = Re(k) + Im(k).
//!
//! State-dict names (cryoDRGN `HetOnlyVAE.decoder`): under the decoder's prefix, `rand_freqs` (gaussian
//! encoding only) and `decoder.main.*` for the MLP; a Hartley decoder without encoding (`pe_type none`) is a
//! bare MLP, `main.*`.

use candle_core::{DType, Device, Tensor};
use candle_nn::VarBuilder;
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};
use crate::fused::{FusedNet, Net, Tiling};
use crate::mlp::{Activation, ResidLinearMlp};
use crate::pe::{PeType, PositionalEncoding};

/// Coordinates may exceed ±0.5 by this much (cryoDRGN's assert tolerance), for rounding in rotations.
const EXTENT_TOLERANCE: f32 = 1e-4;

/// Domain of the decoder output (`--domain`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Domain {
    /// Two outputs (Re, Im) on a half-space; cryoDRGN's default for `train_vae`.
    #[default]
    Fourier,
    /// One output, the Hartley value.
    Hartley,
}

/// Decoder hyperparameters, named as cryoDRGN's `config.yaml` (`model_args`, `lattice_args.D`).
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DecoderConfig {
    /// Lattice size D_lat = image D + 1 (odd); cryoDRGN's `lattice_args.D`.
    pub lattice_size: usize,
    /// Latent dimension (0 for a homogeneous decoder).
    pub zdim: usize,
    /// Hidden residual layers (`players`, `--dec-layers`, default 3).
    pub layers: usize,
    /// Hidden width (`pdim`, `--dec-dim`, default 1024).
    pub dim: usize,
    /// Positional encoding (`pe_type`, default gaussian).
    pub pe_type: PeType,
    /// Frequencies per encoding (`pe_dim`); `None` means cryoDRGN's default D_lat/2.
    pub pe_dim: Option<usize>,
    /// σ of the gaussian encoding's frequencies (`feat_sigma`, default 0.5).
    pub feat_sigma: f64,
    /// Output domain (default fourier).
    pub domain: Domain,
    /// Hidden activation (default relu).
    pub activation: Activation,
    /// Mixed precision, the CPU counterpart of cryoDRGN's `--amp`: the fused decoder's matrix products take
    /// bf16 operands and sum in f32, about twice the f32 rate. Applies only on CPUs with AVX-512 BF16 (AMD
    /// Zen 4, Intel Sapphire Rapids and later); elsewhere, and on other paths, products stay f32.
    pub mixed_precision: bool,
}

impl DecoderConfig {
    /// cryoDRGN `train_vae` defaults for a lattice of `lattice_size` points and latent width `zdim`.
    pub fn new(lattice_size: usize, zdim: usize) -> Self {
        Self {
            lattice_size,
            zdim,
            layers: 3,
            dim: 1024,
            pe_type: PeType::Gaussian,
            pe_dim: None,
            feat_sigma: 0.5,
            domain: Domain::Fourier,
            activation: Activation::Relu,
            mixed_precision: false,
        }
    }

    /// Whether [`Self::mixed_precision`] takes effect on this CPU (AVX-512 BF16 present).
    pub fn mixed_precision_available() -> bool {
        crate::fused::bf16_available()
    }

    /// The CPU kernels and tiles the fused network runs with for this width on this CPU, e.g. `avx512f
    /// bf16, tiles kc 512 mc 96 rows 1024`: float32 sums depend on them, so fixed-seed outputs are
    /// reproducible bit for bit only between machines where this string is the same (run.log records it).
    pub fn cpu_kernels(&self) -> String {
        crate::fused::describe_kernels(self.dim, self.mixed_precision && Self::mixed_precision_available())
    }

    /// Frequencies per encoding after applying the default.
    pub fn pe_dim(&self) -> usize {
        self.pe_dim.unwrap_or(self.lattice_size / 2)
    }
}

/// Normalisation of the Hartley-transformed images (`dataset_args.norm` = [mean, std]); decoder outputs are
/// in normalised units and volumes are mapped back by value·std + mean.
#[derive(Clone, Copy, Debug, PartialEq, Serialize, Deserialize)]
pub struct DataNorm {
    /// Subtracted mean (cryoDRGN always uses 0).
    pub mean: f32,
    /// Divisor.
    pub std: f32,
}

/// A D³ grid of Hartley values, indexed [z][y][x] with x fastest, origin at index D/2 on each axis: the
/// decoded (D+1)³ lattice with its last index on each axis dropped. A centred inverse 3D Hartley transform
/// (cryoDRGN `ihtn_center`, which includes the 1/D³ factor) turns it into the real-space volume.
#[derive(Clone, Debug, PartialEq)]
pub struct HartleyVolume {
    /// Box size D.
    pub d: usize,
    /// D³ values.
    pub values: Vec<f32>,
}

/// Positional encoding + MLP, the part shared by both decoders.
#[derive(Clone, Debug)]
struct CoordinateNet {
    encoding: PositionalEncoding,
    mlp: ResidLinearMlp,
    zdim: usize,
    device: Device,
    /// The same function as one fused op (CPU, f32), where the layout allows; see [`crate::fused`].
    fused: Option<FusedNet>,
}

impl CoordinateNet {
    fn new(cfg: &DecoderConfig, out_dim: usize, vb: VarBuilder) -> Result<Self> {
        let vb_device = vb.device().clone();
        let encoding =
            PositionalEncoding::new(cfg.pe_type, cfg.lattice_size, cfg.pe_dim(), cfg.feat_sigma, vb.clone())?;
        let in_dim = encoding.out_dim() + cfg.zdim;
        let mlp_vb =
            if cfg.pe_type == PeType::None && cfg.domain == Domain::Hartley { vb } else { vb.pp("decoder") };
        let mlp = ResidLinearMlp::new(in_dim, cfg.layers, cfg.dim, out_dim, cfg.activation, mlp_vb)?;
        let fused = match (vb_device.is_cpu(), encoding.fused_encoding()?, mlp.fused_parameters()) {
            (true, Some(encoding), Some(params)) if in_dim != cfg.dim && cfg.dim != out_dim => {
                let net = Net {
                    encoding,
                    zdim: cfg.zdim,
                    hidden: cfg.dim,
                    layers: mlp.hidden_layers(),
                    out: out_dim,
                    leaky: mlp.activation() == Activation::LeakyRelu,
                    bf16: cfg.mixed_precision && crate::fused::bf16_available(),
                    tiling: Tiling::for_width(cfg.dim),
                };
                Some(FusedNet::new(net, params))
            }
            _ => None,
        };
        Ok(Self { encoding, mlp, zdim: cfg.zdim, device: vb_device, fused })
    }

    /// Check (B, N, 3) coordinates within the lattice cube and z (B, zdim); returns (B, N).
    fn check(&self, coords: &Tensor, z: Option<&Tensor>) -> Result<(usize, usize)> {
        let (b, n) = match coords.dims() {
            &[b, n, 3] => (b, n),
            dims => return Err(Error::shape("decoder coords", "(B, N, 3)", dims)),
        };
        match z {
            None if self.zdim == 0 => {}
            Some(z) if z.dims() == [b, self.zdim] => {}
            Some(z) => return Err(Error::shape("decoder z", format!("({b}, {})", self.zdim), z.dims())),
            None => return Err(Error::shape("decoder z", format!("({b}, {})", self.zdim), &[])),
        }
        if n > 0 && b > 0 {
            let max = coords.abs()?.max_all()?.to_scalar::<f32>()?;
            if !within(max, 0.5 + EXTENT_TOLERANCE) {
                let flat = coords.flatten_all()?.to_vec1::<f32>()?;
                let index = flat.iter().position(|v| !within(v.abs(), 0.5 + EXTENT_TOLERANCE)).unwrap_or(0);
                let value = flat.get(index).copied().unwrap_or(max);
                return Err(Error::CoordinateOutOfRange { index, value, extent: 0.5 });
            }
        }
        Ok((b, n))
    }

    /// (B, N, 3) coords (already checked) and z (B, zdim) → (B, N, out).
    fn evaluate(&self, coords: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        // The encoding constants are read only for the fused path: elsewhere (a GPU) reading them would be a
        // device-to-host copy per call.
        if let Some(fused) = self.fused.as_ref().filter(|_| coords.dtype() == DType::F32) {
            if let Some(encoding) = self.encoding.fused_encoding()? {
                return fused.forward(coords, z, encoding);
            }
        }
        self.evaluate_generic(coords, z)
    }

    /// [`Self::evaluate`] with candle's generic tensor operations.
    fn evaluate_generic(&self, coords: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        let features = self.encoding.forward(coords)?;
        let input = match z {
            Some(z) if self.zdim > 0 => {
                let (b, n, _) = coords.dims3()?;
                let z = z.unsqueeze(1)?.broadcast_as((b, n, self.zdim))?;
                // candle's cat along the last axis can return a strided view, which its CUDA matmul refuses.
                Tensor::cat(&[&features, &z], 2)?.contiguous()?
            }
            _ => features,
        };
        self.mlp.forward(&input)
    }
}

/// cryoDRGN `PositionalDecoder`: H(k) = MLP([pe(k), z]).
#[derive(Clone, Debug)]
pub struct HartleyDecoder {
    net: CoordinateNet,
}

impl HartleyDecoder {
    /// Build or load under `vb` (the decoder's prefix, `decoder` inside a VAE).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self { net: CoordinateNet::new(cfg, 1, vb)? })
    }

    /// Hartley values (B, N) at coords (B, N, 3) ⊂ [−0.5, 0.5]³ for latents z (B, zdim).
    pub fn forward(&self, coords: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        let (b, n) = self.net.check(coords, z)?;
        Ok(self.net.evaluate(coords, z)?.reshape((b, n))?)
    }
}

/// cryoDRGN `FTPositionalDecoder` (and `FTSliceDecoder` with `pe_type none`): (Re, Im) on the k_z ≤ 0
/// half-space, extended by Friedel symmetry.
#[derive(Clone, Debug)]
pub struct FourierDecoder {
    net: CoordinateNet,
}

impl FourierDecoder {
    /// Build or load under `vb` (the decoder's prefix, `decoder` inside a VAE).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        Ok(Self { net: CoordinateNet::new(cfg, 2, vb)? })
    }

    /// (Re F, Im F) of shape (B, N, 2) at arbitrary coords (B, N, 3): points with k_z > 0 are evaluated at −k
    /// and conjugated, F(k) = F*(−k).
    pub fn decode(&self, coords: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        self.net.check(coords, z)?;
        self.decode_unchecked(coords, z)
    }

    fn decode_unchecked(&self, coords: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        // sign = −1 where k_z > 0, else +1.
        let upper = coords.narrow(2, 2, 1)?.gt(0f32)?.to_dtype(coords.dtype())?;
        let sign = ((upper * -2.0)? + 1.0)?;
        let out = self.net.evaluate(&coords.broadcast_mul(&sign)?, z)?;
        let re = out.narrow(2, 0, 1)?;
        let im = out.narrow(2, 1, 1)?.broadcast_mul(&sign)?;
        Ok(Tensor::cat(&[re, im], 2)?)
    }

    /// Hartley values (B, N) of a centrosymmetric slice with half the MLP evaluations.
    ///
    /// The N points of each row must come in mirrored pairs: point N−1−i = −(point i), as masked lattice
    /// points in raster order are (any rotation keeps this). The first ⌈N/2⌉ points (including the centre
    /// when N is odd) are decoded, giving H = Re − Im; the rest are H(−k) = Re(k) + Im(k) of the first
    /// ⌊N/2⌋ in reverse order. Returns [`Error::NotCentrosymmetric`] when the pairing does not hold.
    pub fn forward(&self, coords: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        let (b, n) = self.net.check(coords, z)?;
        let half = n / 2;
        let first = n - half;
        let reverse = Tensor::from_vec((0..half as u32).rev().collect::<Vec<u32>>(), half, coords.device())?;
        check_centrosymmetric(coords, half, &reverse)?;
        let top = self.decode_unchecked(&coords.narrow(1, 0, first)?, z)?;
        let (re, im) = (top.narrow(2, 0, 1)?.squeeze(2)?, top.narrow(2, 1, 1)?.squeeze(2)?);
        let h_top = (&re - &im)?;
        if half == 0 {
            return Ok(h_top);
        }
        let h_mirror = (re.narrow(1, 0, half)? + im.narrow(1, 0, half)?)?.index_select(&reverse, 1)?;
        let h = Tensor::cat(&[h_top, h_mirror], 1)?;
        debug_assert_eq!(h.dims(), [b, n]);
        Ok(h)
    }
}

/// `value ≤ limit`, false for NaN (so NaN coordinates are rejected too).
fn within(value: f32, limit: f32) -> bool {
    value <= limit
}

/// Verify point N−1−i = −point i for i < half (within rounding), as [`FourierDecoder::forward`] needs.
fn check_centrosymmetric(coords: &Tensor, half: usize, reverse: &Tensor) -> Result<()> {
    if half == 0 {
        return Ok(());
    }
    let n = coords.dim(1)?;
    let head = coords.narrow(1, 0, half)?;
    let tail = coords.narrow(1, n - half, half)?.contiguous()?.index_select(reverse, 1)?;
    let dev = (head + tail)?.abs()?.max(2)?; // (B, half)
    let worst = dev.max_all()?.to_scalar::<f32>()?;
    if within(worst, EXTENT_TOLERANCE) {
        return Ok(());
    }
    let flat = dev.flatten_all()?.to_vec1::<f32>()?;
    let at = flat.iter().position(|&d| !within(d, EXTENT_TOLERANCE)).unwrap_or(0);
    let index = at % half;
    Err(Error::NotCentrosymmetric { index, mirror: n - 1 - index, deviation: worst })
}

/// A decoder of either domain, as selected by [`DecoderConfig::domain`].
#[derive(Clone, Debug)]
pub enum Decoder {
    /// One Hartley output per point.
    Hartley(HartleyDecoder),
    /// (Re, Im) with the half-space trick.
    Fourier(FourierDecoder),
}

impl Decoder {
    /// Build or load under `vb` (the decoder's prefix, `decoder` inside a VAE).
    pub fn new(cfg: &DecoderConfig, vb: VarBuilder) -> Result<Self> {
        if cfg.lattice_size < 3 || cfg.lattice_size.is_multiple_of(2) {
            return Err(Error::config(
                "lattice D",
                format!("must be odd (image D + 1), got {}", cfg.lattice_size),
            ));
        }
        Ok(match cfg.domain {
            Domain::Hartley => Decoder::Hartley(HartleyDecoder::new(cfg, vb)?),
            Domain::Fourier => Decoder::Fourier(FourierDecoder::new(cfg, vb)?),
        })
    }

    /// Latent width.
    pub fn zdim(&self) -> usize {
        self.net().zdim
    }

    /// Whether the fused CPU op computes this decoder.
    #[cfg(test)]
    pub(crate) fn is_fused(&self) -> bool {
        self.net().fused.is_some()
    }

    /// The same decoder computed with candle's generic tensor operations instead of the fused CPU op (for
    /// comparisons; results agree to float32 rounding).
    pub fn with_generic_ops(mut self) -> Self {
        match &mut self {
            Decoder::Hartley(d) => d.net.fused = None,
            Decoder::Fourier(d) => d.net.fused = None,
        }
        self
    }

    fn net(&self) -> &CoordinateNet {
        match self {
            Decoder::Hartley(d) => &d.net,
            Decoder::Fourier(d) => &d.net,
        }
    }

    /// Hartley values (B, N) of image slices: coords (B, N, 3) are the rotated masked lattice points of each
    /// image (centrosymmetric in point order, see [`FourierDecoder::forward`]), z is (B, zdim).
    pub fn forward(&self, coords: &Tensor, z: Option<&Tensor>) -> Result<Tensor> {
        match self {
            Decoder::Hartley(d) => d.forward(coords, z),
            Decoder::Fourier(d) => d.forward(coords, z),
        }
    }

    /// Decode a volume for one latent `z` (length zdim) on a `lattice_size`³ grid spanning
    /// [−extent, extent] per axis (cryoDRGN `eval_volume`; `extent` 0.5 gives the full resolution, smaller
    /// extents the low frequencies used by `eval_vol -d`).
    ///
    /// Evaluated one k_z slice at a time; a Fourier decoder leaves points with |k| > extent at 0 (the
    /// Nyquist sphere) and decodes the k_z = 0 slice with the symmetric half evaluation, as cryoDRGN does
    /// (with `pe_type none` it follows cryoDRGN's `FTSliceDecoder`: every point decoded, then the voxels
    /// outside the sphere zeroed after scaling).
    /// Values are mapped back by ·std + mean and the last index of each axis is dropped. The inverse
    /// Hartley transform is left to the caller (see [`HartleyVolume`]). Keeps nothing for a backward pass
    /// ([`crate::no_grad`]).
    pub fn eval_volume(
        &self,
        z: &[f32],
        lattice_size: usize,
        extent: f64,
        norm: DataNorm,
    ) -> Result<HartleyVolume> {
        self.eval_volume_within(z, lattice_size, extent, norm, f64::INFINITY)
    }

    /// [`Self::eval_volume`] with only the points with `|k| ≤ radius` (grid units, like `extent`) decoded and
    /// the rest left at `norm.mean` (a decoded 0): a pose search at band limit L needs only the ball it slices, a small part of the
    /// grid at low L.
    pub fn eval_volume_within(
        &self,
        z: &[f32],
        lattice_size: usize,
        extent: f64,
        norm: DataNorm,
        radius: f64,
    ) -> Result<HartleyVolume> {
        crate::no_grad(|| {
            if lattice_size < 3 || lattice_size.is_multiple_of(2) {
                return Err(Error::config(
                    "lattice D",
                    format!("volume lattice must be odd and ≥ 3, got {lattice_size}"),
                ));
            }
            if !(extent > 0.0 && extent <= 0.5) {
                return Err(Error::config("extent", format!("must be in (0, 0.5], got {extent}")));
            }
            if z.len() != self.zdim() {
                return Err(Error::shape("eval_volume z", format!("({})", self.zdim()), &[z.len()]));
            }
            let dev = self.net().device.clone();
            let zt = if z.is_empty() { None } else { Some(Tensor::from_slice(z, (1, z.len()), &dev)?) };
            let zt = zt.as_ref();
            // cryoDRGN's three behaviours: PositionalDecoder evaluates every point; FTPositionalDecoder only the
            // points with |k| ≤ extent, the k_z = 0 slice with the symmetric half evaluation; FTSliceDecoder
            // (pe_type none) decodes every point and zeroes the voxels outside the unit sphere of the
            // normalised grid after scaling.
            let (sphere_only, slice_decoder) = match self {
                Decoder::Hartley(_) => (false, false),
                Decoder::Fourier(dec) => {
                    (dec.net.encoding.kind() != PeType::None, dec.net.encoding.kind() == PeType::None)
                }
            };
            let axis = linspace(extent, lattice_size);
            let d = lattice_size - 1;
            let plane = lattice_size * lattice_size;
            let mut values = vec![0f32; d * d * d];
            let mut coords = Vec::with_capacity(3 * plane);
            let mut kept = Vec::with_capacity(plane);
            let ext2 = (extent * extent) as f32;
            for (iz, &kz) in axis.iter().enumerate().take(d) {
                coords.clear();
                kept.clear();
                for (iy, &ky) in axis.iter().enumerate() {
                    for (ix, &kx) in axis.iter().enumerate() {
                        let r2 = kx * kx + ky * ky + kz * kz;
                        if (!sphere_only || r2 <= ext2) && f64::from(r2) <= radius * radius {
                            coords.extend_from_slice(&[kx, ky, kz]);
                            kept.push(iy * lattice_size + ix);
                        }
                    }
                }
                if kept.is_empty() {
                    // A plane wholly outside the ball: every value is a decoded 0, like the points left out.
                    values[iz * d * d..(iz + 1) * d * d].fill(norm.mean);
                    continue;
                }
                let c = Tensor::from_slice(&coords, (1, kept.len(), 3), &dev)?;
                let h = match self {
                    Decoder::Hartley(dec) => dec.forward(&c, zt)?,
                    Decoder::Fourier(dec) if kz == 0.0 && !slice_decoder => dec.forward(&c, zt)?,
                    Decoder::Fourier(dec) => {
                        let f = dec.decode(&c, zt)?;
                        (f.narrow(2, 0, 1)? - f.narrow(2, 1, 1)?)?
                    }
                };
                let h = h.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
                let mut slice = vec![0f32; plane];
                for (&p, &v) in kept.iter().zip(&h) {
                    slice[p] = v;
                }
                let out = &mut values[iz * d * d..(iz + 1) * d * d];
                for iy in 0..d {
                    for ix in 0..d {
                        out[iy * d + ix] = slice[iy * lattice_size + ix] * norm.std + norm.mean;
                    }
                }
            }
            if slice_decoder {
                // utils.zero_sphere: r > 1 on linspace(−1, 1, D_lat) per axis, in f64.
                let unit = |i: usize| -1.0 + 2.0 * i as f64 / d as f64;
                for (i, v) in values.iter_mut().enumerate() {
                    let (iz, iy, ix) = (i / (d * d), (i / d) % d, i % d);
                    if (unit(ix).powi(2) + unit(iy).powi(2) + unit(iz).powi(2)).sqrt() > 1.0 {
                        *v = 0.0;
                    }
                }
            }
            Ok(HartleyVolume { d, values })
        })
    }
}

/// numpy's `linspace(−extent, extent, n)` rounded to f32: start + i·step, with the last point exactly +extent.
fn linspace(extent: f64, n: usize) -> Vec<f32> {
    let step = 2.0 * extent / (n - 1) as f64;
    (0..n).map(|i| if i + 1 == n { extent as f32 } else { (-extent + i as f64 * step) as f32 }).collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::{Adam, AdamConfig};
    use crate::ParamStore;

    fn small_config(domain: Domain, pe_type: PeType, zdim: usize) -> DecoderConfig {
        let mut cfg = DecoderConfig::new(9, zdim);
        cfg.dim = 16;
        cfg.layers = 2;
        cfg.pe_type = pe_type;
        cfg.pe_dim = Some(4);
        cfg.domain = domain;
        cfg
    }

    /// Masked lattice points (disc of radius 0.5 without DC) of a D_lat = 9 lattice in raster order,
    /// rotated by a generic rotation (no point but the origin lands on k_z = 0).
    fn rotated_disc() -> Vec<[f32; 3]> {
        let axis = linspace(0.5, 9);
        let (a, b) = (0.7f64, 0.4f64);
        // R = Rz(a)·Rx(b), applied to row vectors as cryoDRGN does (c @ R).
        let r = [
            [a.cos(), -a.sin() * b.cos(), a.sin() * b.sin()],
            [a.sin(), a.cos() * b.cos(), -a.cos() * b.sin()],
            [0.0, b.sin(), b.cos()],
        ];
        let mut pts = Vec::new();
        for &y in &axis {
            for &x in &axis {
                let r2 = x * x + y * y;
                if r2 <= 0.25 && r2 > 0.0 {
                    let c = [x as f64, y as f64, 0.0];
                    pts.push([0, 1, 2].map(|j| (0..3).map(|i| c[i] * r[i][j]).sum::<f64>() as f32));
                }
            }
        }
        pts
    }

    #[test]
    fn half_evaluation_equals_full_evaluation_with_friedel_symmetry() -> Result<()> {
        let dev = Device::Cpu;
        let store = ParamStore::new(21, &dev);
        let dec =
            FourierDecoder::new(&small_config(Domain::Fourier, PeType::Gaussian, 3), store.var_builder())?;
        let pts = rotated_disc();
        let n = pts.len();
        let flat: Vec<f32> = pts.iter().flatten().copied().collect();
        let coords = Tensor::from_vec(flat.clone(), (1, n, 3), &dev)?.repeat((2, 1, 1))?;
        let z = Tensor::new(&[[0.1f32, -0.3, 1.2], [-0.8, 0.0, 0.4]], &dev)?;
        let half = dec.forward(&coords, Some(&z))?.to_vec2::<f32>()?;
        let full = dec.decode(&coords, Some(&z))?;
        let full = (full.narrow(2, 0, 1)? - full.narrow(2, 1, 1)?)?.squeeze(2)?.to_vec2::<f32>()?;
        for b in 0..2 {
            for i in 0..n {
                assert!(
                    (half[b][i] - full[b][i]).abs() < 1e-5,
                    "row {b} point {i}: {} vs {}",
                    half[b][i],
                    full[b][i]
                );
            }
        }
        // Points with k_z > 0 are the conjugates of their mirrors: F(k) = F*(−k).
        let f =
            dec.decode(&coords.narrow(0, 0, 1)?, Some(&z.narrow(0, 0, 1)?))?.squeeze(0)?.to_vec2::<f32>()?;
        for i in 0..n / 2 {
            let j = n - 1 - i;
            assert!((f[i][0] - f[j][0]).abs() < 1e-6 && (f[i][1] + f[j][1]).abs() < 1e-6, "pair {i}/{j}");
        }
        // A permuted slice is rejected instead of silently mirrored wrongly.
        let mut swapped = flat;
        swapped.swap(0, 3);
        swapped.swap(1, 4);
        swapped.swap(2, 5);
        let bad = Tensor::from_vec(swapped, (1, n, 3), &dev)?;
        assert!(matches!(
            dec.forward(&bad, Some(&z.narrow(0, 0, 1)?)),
            Err(Error::NotCentrosymmetric { .. })
        ));
        Ok(())
    }

    #[test]
    fn inputs_are_checked() -> Result<()> {
        let dev = Device::Cpu;
        let store = ParamStore::new(2, &dev);
        let dec = Decoder::new(&small_config(Domain::Hartley, PeType::GeomFt, 2), store.var_builder())?;
        let z = Tensor::new(&[[0.0f32, 1.0]], &dev)?;
        let outside = Tensor::new(&[[[0.1f32, 0.2, 0.3], [0.0, 0.7, 0.0]]], &dev)?;
        assert!(matches!(dec.forward(&outside, Some(&z)), Err(Error::CoordinateOutOfRange { index: 4, .. })));
        let ok = Tensor::new(&[[[0.1f32, 0.2, 0.3]]], &dev)?;
        assert!(matches!(dec.forward(&ok, None), Err(Error::Shape { what: "decoder z", .. })));
        assert!(matches!(dec.forward(&ok.squeeze(0)?, Some(&z)), Err(Error::Shape { .. })));
        assert!(matches!(
            dec.eval_volume(&[0.0], 9, 0.5, DataNorm { mean: 0.0, std: 1.0 }),
            Err(Error::Shape { .. })
        ));
        Ok(())
    }

    #[test]
    fn eval_volume_within_decodes_only_the_ball() -> Result<()> {
        let dev = Device::Cpu;
        let norm = DataNorm { mean: 0.25, std: 3.0 };
        let store = ParamStore::new(3, &dev);
        let dec = Decoder::new(&small_config(Domain::Hartley, PeType::Gaussian, 0), store.var_builder())?;
        let full = dec.eval_volume(&[], 9, 0.5, norm)?;
        let ball = dec.eval_volume_within(&[], 9, 0.5, norm, 0.26)?;
        let axis = linspace(0.5, 9);
        let mut inside = 0;
        for (i, (&f, &b)) in full.values.iter().zip(&ball.values).enumerate() {
            let (iz, iy, ix) = (i / 64, (i / 8) % 8, i % 8);
            if axis[ix].powi(2) + axis[iy].powi(2) + axis[iz].powi(2) <= 0.26f32.powi(2) {
                // Batches of other sizes may round the products differently.
                assert!((b - f).abs() <= 1e-5 * f.abs().max(1.0), "voxel {i} inside the ball: {b} vs {f}");
                inside += 1;
            } else {
                assert_eq!(b, 0.25, "voxel {i} outside the ball");
            }
        }
        assert!(inside > 20 && inside < 200, "{inside} voxels inside");
        Ok(())
    }

    #[test]
    fn eval_volume_evaluates_the_lattice_per_slice() -> Result<()> {
        let dev = Device::Cpu;
        let norm = DataNorm { mean: 0.25, std: 3.0 };
        let z = [0.4f32, -0.7];
        for domain in [Domain::Hartley, Domain::Fourier] {
            let store = ParamStore::new(8, &dev);
            let dec = Decoder::new(&small_config(domain, PeType::Gaussian, 2), store.var_builder())?;
            let vol = dec.eval_volume(&z, 9, 0.5, norm)?;
            assert_eq!((vol.d, vol.values.len()), (8, 512));
            let axis = linspace(0.5, 9);
            let zt = Tensor::new(&[z], &dev)?;
            // Voxels off the k_z = 0 plane: the decoder's Hartley value at that point (Fourier: Re − Im).
            for (iz, iy, ix) in [(0usize, 4usize, 4usize), (2, 3, 5), (6, 1, 4), (5, 7, 6)] {
                let c = Tensor::new(&[[[axis[ix], axis[iy], axis[iz]]]], &dev)?;
                let h = match &dec {
                    Decoder::Hartley(d) => d.forward(&c, Some(&zt))?.flatten_all()?.to_vec1::<f32>()?[0],
                    Decoder::Fourier(d) => {
                        let f = d.decode(&c, Some(&zt))?.flatten_all()?.to_vec1::<f32>()?;
                        f[0] - f[1]
                    }
                };
                let inside = axis[ix].powi(2) + axis[iy].powi(2) + axis[iz].powi(2) <= 0.25;
                let want = if domain == Domain::Hartley || inside { h * 3.0 + 0.25 } else { 0.25 };
                let got = vol.values[(iz * 8 + iy) * 8 + ix];
                assert!((got - want).abs() < 1e-5, "{domain:?} voxel ({iz},{iy},{ix}): {got} vs {want}");
            }
            if domain == Domain::Fourier {
                // The corner lies outside the Nyquist sphere: only the mean remains.
                assert_eq!(vol.values[0], 0.25);
                // On k_z = 0 the symmetric half evaluation makes H(k) and H(−k) consistent:
                // (Re + Im)(k) at −k. Check one pair through the centre (4, 4).
                let c = Tensor::new(&[[[axis[5], axis[3], 0.0f32]]], &dev)?;
                if let Decoder::Fourier(d) = &dec {
                    let f = d.decode(&c, Some(&zt))?.flatten_all()?.to_vec1::<f32>()?;
                    let (k, minus_k) = ((4 * 8 + 3) * 8 + 5, (4 * 8 + 5) * 8 + 3);
                    let (a, b) = (vol.values[k], vol.values[minus_k]);
                    assert!(
                        ((a - 0.25) / 3.0 - (f[0] - f[1])).abs() < 1e-5
                            && ((b - 0.25) / 3.0 - (f[0] + f[1])).abs() < 1e-5
                    );
                }
            }
        }
        Ok(())
    }

    #[test]
    fn decoder_overfits_a_known_function() -> Result<()> {
        let dev = Device::Cpu;
        let store = ParamStore::new(4, &dev);
        let mut cfg = small_config(Domain::Fourier, PeType::GeomLowf, 0);
        cfg.dim = 32;
        let dec = Decoder::new(&cfg, store.var_builder())?;
        let pts = rotated_disc();
        let n = pts.len();
        let coords = Tensor::from_vec(pts.iter().flatten().copied().collect::<Vec<f32>>(), (1, n, 3), &dev)?;
        // A smooth Friedel-consistent Hartley target: H(k) = cos(4 k·a) + sin(6 k·b).
        let target: Vec<f32> = pts
            .iter()
            .map(|c| (4.0 * (c[0] - 0.5 * c[2])).cos() + (6.0 * (0.3 * c[0] + c[1] + 0.2 * c[2])).sin())
            .collect();
        let target = Tensor::from_vec(target, (1, n), &dev)?;
        let mut adam = Adam::new(store.named_vars(), AdamConfig { lr: 1e-2, ..Default::default() })?;
        let mse = |dec: &Decoder| -> Result<Tensor> {
            Ok((dec.forward(&coords, None)? - &target)?.sqr()?.mean_all()?)
        };
        let first = mse(&dec)?.to_scalar::<f32>()?;
        for _ in 0..300 {
            adam.backward_step(&mse(&dec)?)?;
        }
        let last = mse(&dec)?.to_scalar::<f32>()?;
        assert!(last < first / 10.0, "loss went from {first} to {last}");
        Ok(())
    }
}
