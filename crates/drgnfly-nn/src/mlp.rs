//! Multilayer perceptrons with cryoDRGN's layer layout and PyTorch state-dict names (reference §3.1).
//!
//! [`ResidLinearMlp`]`(in, nlayers, hidden, out)` is the sequence `main`:
//!
//! ```text
//! main.0        Linear(in, hidden)       (ResidLinear if in == hidden: `main.0.linear.*`)
//! main.1        activation
//! main.2k       ResidLinear(hidden, hidden) for k = 1…nlayers: `main.2k.linear.*`, y = W x + b + x
//! main.2k+1     activation
//! main.2n+2     Linear(hidden, out)      (ResidLinear if hidden == out)
//! ```
//!
//! [`Mlp`] is the same without residual connections (cryoDRGN `MLP`, encode mode `mlp`): every hidden layer
//! is a plain `main.2k.*` Linear. Linear layers compute y = x Wᵀ + b with W of shape (out, in), as PyTorch.
//! Fresh weights and biases are U(−1/√in, 1/√in), PyTorch's `nn.Linear` default (see [`crate::params`]).

use candle_core::{Module, Tensor};
use candle_nn::{Init, Linear, VarBuilder};
use serde::{Deserialize, Serialize};

use crate::error::{Error, Result};

/// Hidden activation (`--activation`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Activation {
    /// max(x, 0).
    #[default]
    Relu,
    /// x for x ≥ 0, 0.01·x otherwise (PyTorch's default negative slope).
    LeakyRelu,
}

impl Activation {
    fn apply(self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Activation::Relu => x.relu()?,
            // max(x, 0.01 x) equals leaky ReLU for a slope below 1.
            Activation::LeakyRelu => x.maximum(&(x * 0.01)?)?,
        })
    }
}

/// A `Linear(in, out)` layer at `vb` (`weight` (out, in), `bias` (out,)) with PyTorch's default init.
pub fn linear(in_dim: usize, out_dim: usize, vb: VarBuilder) -> Result<Linear> {
    let bound = 1.0 / (in_dim.max(1) as f64).sqrt();
    let init = Init::Uniform { lo: -bound, up: bound };
    let weight = vb.get_with_hints((out_dim, in_dim), "weight", init)?;
    let bias = vb.get_with_hints(out_dim, "bias", init)?;
    Ok(Linear::new(weight, Some(bias)))
}

/// x Wᵀ + b: on the CPU for a batch of rows, one op with its own backward ([`crate::fused::linear`]).
fn apply(l: &Linear, x: &Tensor) -> Result<Tensor> {
    match (l.bias(), x.rank()) {
        (Some(b), 2) => crate::fused::linear::forward(x, l.weight(), b),
        _ => Ok(l.forward(x)?),
    }
}

/// A layer of `main`: plain, or residual (y = W x + b + x) when its input and output widths agree.
#[derive(Clone, Debug)]
enum Layer {
    Plain(Linear),
    Resid(Linear),
}

impl Layer {
    /// cryoDRGN's rule: ResidLinear wherever in == out (`main.i.linear.*`), else Linear (`main.i.*`).
    fn new(in_dim: usize, out_dim: usize, residual_allowed: bool, vb: VarBuilder) -> Result<Self> {
        Ok(if residual_allowed && in_dim == out_dim {
            Layer::Resid(linear(in_dim, out_dim, vb.pp("linear"))?)
        } else {
            Layer::Plain(linear(in_dim, out_dim, vb)?)
        })
    }

    fn forward(&self, x: &Tensor) -> Result<Tensor> {
        Ok(match self {
            Layer::Plain(l) => apply(l, x)?,
            Layer::Resid(l) => (apply(l, x)? + x)?,
        })
    }
}

/// Shared body of both MLP kinds.
#[derive(Clone, Debug)]
struct Stack {
    layers: Vec<Layer>,
    activation: Activation,
    in_dim: usize,
    out_dim: usize,
}

/// Weights and biases of an MLP: `in → hidden`, `nlayers × (hidden → hidden)`, `hidden → out`; saturating,
/// since the widths can come from a file.
fn parameter_count(in_dim: usize, nlayers: usize, hidden: usize, out_dim: usize) -> u64 {
    let (i, n, h, o) = (in_dim as u64, nlayers as u64, hidden as u64, out_dim as u64);
    let inner = h.saturating_mul(h).saturating_add(h).saturating_mul(n);
    i.saturating_mul(h)
        .saturating_add(h)
        .saturating_add(inner)
        .saturating_add(h.saturating_mul(o))
        .saturating_add(o)
}

impl Stack {
    fn new(
        in_dim: usize,
        nlayers: usize,
        hidden: usize,
        out_dim: usize,
        activation: Activation,
        residual: bool,
        vb: VarBuilder,
    ) -> Result<Self> {
        for (field, v) in [("in_dim", in_dim), ("hidden", hidden), ("out_dim", out_dim)] {
            if v == 0 {
                return Err(Error::config(field, "layer widths must be at least 1"));
            }
        }
        let params = parameter_count(in_dim, nlayers, hidden, out_dim);
        drgnfly_io::memory::check_fits(
            format!("an MLP of {nlayers} hidden layers of width {hidden} on {in_dim} inputs ({params} parameters)"),
            // Random initialisation holds a temporary copy of each weight matrix.
            params.saturating_mul(8),
            "lower the layer widths (--enc-dim/--dec-dim, or qdim/pdim in config.yaml) or the positional \
             encoding (--pe-dim)",
        )?;
        let vb = vb.pp("main");
        let mut layers = Vec::with_capacity(nlayers + 2);
        // Only ResidLinearMLP switches to a residual layer by width; the plain MLP never does.
        layers.push(Layer::new(in_dim, hidden, residual, vb.pp(0))?);
        for k in 1..=nlayers {
            let idx = 2 * k;
            let layer = if residual {
                Layer::Resid(linear(hidden, hidden, vb.pp(idx).pp("linear"))?)
            } else {
                Layer::Plain(linear(hidden, hidden, vb.pp(idx))?)
            };
            layers.push(layer);
        }
        layers.push(Layer::new(hidden, out_dim, residual, vb.pp(2 * nlayers + 2))?);
        Ok(Self { layers, activation, in_dim, out_dim })
    }

    fn forward(&self, x: &Tensor, what: &'static str) -> Result<Tensor> {
        if x.dims().last() != Some(&self.in_dim) {
            return Err(Error::shape(what, format!("(…, {})", self.in_dim), x.dims()));
        }
        let mut h = x.clone();
        let last = self.layers.len() - 1;
        for (i, layer) in self.layers.iter().enumerate() {
            h = layer.forward(&h)?;
            if i < last {
                h = self.activation.apply(&h)?;
            }
        }
        Ok(h)
    }
}

/// cryoDRGN's `ResidLinearMLP`: see the module docs for the layout and names.
#[derive(Clone, Debug)]
pub struct ResidLinearMlp(Stack);

impl ResidLinearMlp {
    /// Build or load `main.*` under `vb` with `nlayers` hidden residual layers of width `hidden`.
    pub fn new(
        in_dim: usize,
        nlayers: usize,
        hidden: usize,
        out_dim: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self(Stack::new(in_dim, nlayers, hidden, out_dim, activation, true, vb)?))
    }

    /// (…, in_dim) → (…, out_dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x, "ResidLinearMlp input")
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.0.in_dim
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.0.out_dim
    }

    /// Weights and biases in layer order, when the layout is the one the fused network computes (plain
    /// first and last layers around residual hidden layers, every layer with a bias); `None` otherwise.
    pub(crate) fn fused_parameters(&self) -> Option<Vec<Tensor>> {
        let layers = &self.0.layers;
        let mut params = Vec::with_capacity(2 * layers.len());
        for (i, layer) in layers.iter().enumerate() {
            let outer = i == 0 || i + 1 == layers.len();
            let linear = match layer {
                Layer::Plain(l) if outer => l,
                Layer::Resid(l) if !outer => l,
                _ => return None,
            };
            params.push(linear.weight().clone());
            params.push(linear.bias()?.clone());
        }
        Some(params)
    }

    /// Hidden layers between the first and the last.
    pub(crate) fn hidden_layers(&self) -> usize {
        self.0.layers.len().saturating_sub(2)
    }

    /// The activation.
    pub(crate) fn activation(&self) -> Activation {
        self.0.activation
    }
}

/// cryoDRGN's plain `MLP`: the same layout with `Linear` hidden layers (`main.2k.*`) and no skips.
#[derive(Clone, Debug)]
pub struct Mlp(Stack);

impl Mlp {
    /// Build or load `main.*` under `vb`.
    pub fn new(
        in_dim: usize,
        nlayers: usize,
        hidden: usize,
        out_dim: usize,
        activation: Activation,
        vb: VarBuilder,
    ) -> Result<Self> {
        Ok(Self(Stack::new(in_dim, nlayers, hidden, out_dim, activation, false, vb)?))
    }

    /// (…, in_dim) → (…, out_dim).
    pub fn forward(&self, x: &Tensor) -> Result<Tensor> {
        self.0.forward(x, "Mlp input")
    }

    /// Input width.
    pub fn in_dim(&self) -> usize {
        self.0.in_dim
    }

    /// Output width.
    pub fn out_dim(&self) -> usize {
        self.0.out_dim
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::ParamStore;
    use candle_core::Device;

    #[test]
    fn state_dict_names_follow_cryodrgn() -> Result<()> {
        let store = ParamStore::new(1, &Device::Cpu);
        ResidLinearMlp::new(56, 3, 8, 1, Activation::Relu, store.var_builder().pp("decoder"))?;
        ResidLinearMlp::new(8, 2, 8, 8, Activation::Relu, store.var_builder().pp("square"))?;
        Mlp::new(5, 1, 4, 2, Activation::Relu, store.var_builder().pp("plain"))?;
        let names: Vec<String> =
            store.named_vars().into_iter().map(|(n, v)| format!("{n}{:?}", v.dims())).collect();
        let want = [
            "decoder.main.0.bias[8]",
            "decoder.main.0.weight[8, 56]",
            "decoder.main.2.linear.bias[8]",
            "decoder.main.2.linear.weight[8, 8]",
            "decoder.main.4.linear.bias[8]",
            "decoder.main.4.linear.weight[8, 8]",
            "decoder.main.6.linear.bias[8]",
            "decoder.main.6.linear.weight[8, 8]",
            "decoder.main.8.bias[1]",
            "decoder.main.8.weight[1, 8]",
            "plain.main.0.bias[4]",
            "plain.main.0.weight[4, 5]",
            "plain.main.2.bias[4]",
            "plain.main.2.weight[4, 4]",
            "plain.main.4.bias[2]",
            "plain.main.4.weight[2, 4]",
            "square.main.0.linear.bias[8]",
            "square.main.0.linear.weight[8, 8]",
            "square.main.2.linear.bias[8]",
            "square.main.2.linear.weight[8, 8]",
            "square.main.4.linear.bias[8]",
            "square.main.4.linear.weight[8, 8]",
            "square.main.6.linear.bias[8]",
            "square.main.6.linear.weight[8, 8]",
        ];
        assert_eq!(names, want);
        Ok(())
    }

    #[test]
    fn forward_matches_hand_computation() -> Result<()> {
        // in 2 → hidden 2 (residual first layer) → 1 residual hidden layer → out 1, leaky ReLU.
        let dev = Device::Cpu;
        let mut state = std::collections::HashMap::new();
        let t = |v: &[f32], s: &[usize]| Tensor::from_slice(v, s, &dev);
        state.insert("main.0.linear.weight".into(), t(&[1.0, -2.0, 0.5, 1.0], &[2, 2])?);
        state.insert("main.0.linear.bias".into(), t(&[0.1, -0.2], &[2])?);
        state.insert("main.2.linear.weight".into(), t(&[2.0, 0.0, 0.0, -1.0], &[2, 2])?);
        state.insert("main.2.linear.bias".into(), t(&[0.0, 0.5], &[2])?);
        state.insert("main.4.weight".into(), t(&[1.0, 3.0], &[1, 2])?);
        state.insert("main.4.bias".into(), t(&[-1.0], &[1])?);
        let vb = VarBuilder::from_tensors(state, candle_core::DType::F32, &dev);
        let mlp = ResidLinearMlp::new(2, 1, 2, 1, Activation::LeakyRelu, vb)?;
        let x = [0.5f32, 1.0];
        let lrelu = |v: f32| if v >= 0.0 { v } else { 0.01 * v };
        let h0 = [lrelu(x[0] - 2.0 * x[1] + 0.1 + x[0]), lrelu(0.5 * x[0] + x[1] - 0.2 + x[1])];
        let h1 = [lrelu(2.0 * h0[0] + h0[0]), lrelu(-h0[1] + 0.5 + h0[1])];
        let want = h1[0] + 3.0 * h1[1] - 1.0;
        let got = mlp.forward(&Tensor::new(&[x], &dev)?)?.flatten_all()?.to_vec1::<f32>()?;
        assert!((got[0] - want).abs() < 1e-6, "{} vs {want}", got[0]);
        assert!(matches!(
            mlp.forward(&Tensor::zeros((1, 3), candle_core::DType::F32, &dev)?),
            Err(Error::Shape { .. })
        ));
        Ok(())
    }
}
