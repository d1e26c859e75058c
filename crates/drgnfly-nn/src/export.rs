//! A drgnfly checkpoint as cryoDRGN's `weights.N.pkl`, so cryoDRGN's `eval_vol`, `analyze`, notebooks and
//! `--load` work on our models.
//!
//! cryoDRGN saves `torch.save({"epoch", "model_state_dict", "optimizer_state_dict"})` (train_nn adds
//! `"norm"`). Our state-dict names are already cryoDRGN's, so the model exports by name. The optimizer is
//! PyTorch's `Adam.state_dict()`: per-parameter state keyed by the parameter's index in
//! `model.parameters()` (registration order, see [`torch_parameter_order`]), present only for parameters
//! that took a step, and one parameter group with the hyperparameters.

use std::cmp::Ordering;
use std::path::Path;

use candle_core::{DType, Tensor};
use drgnfly_io::pickle::{write_torch, TorchValue};

use crate::adam::AdamConfig;
use crate::checkpoint::Checkpoint;
use crate::error::{Error, Result};

/// Write `ckpt` as a cryoDRGN `weights.pkl` at `path` (atomically). The optimizer state is included when
/// the checkpoint holds one and `adam` gives its hyperparameters; `norm` (mean, std) is added as train_nn does.
pub fn write_cryodrgn_weights(
    path: &Path,
    ckpt: &Checkpoint,
    adam: Option<&AdamConfig>,
    norm: Option<[f32; 2]>,
) -> Result<()> {
    let mut names: Vec<&String> = ckpt.model.keys().collect();
    names.sort_by(|a, b| torch_parameter_order(a, b));

    let mut model = Vec::with_capacity(names.len());
    for name in &names {
        model.push(((*name).clone(), tensor_value(&ckpt.model[*name])?));
    }
    let mut root = vec![
        (TorchValue::Str("epoch".into()), TorchValue::Int(i64::try_from(ckpt.epoch).unwrap_or(i64::MAX))),
        (TorchValue::Str("model_state_dict".into()), TorchValue::OrderedDict(model)),
    ];
    if let (Some(adam), false) = (adam, ckpt.optimizer.is_empty()) {
        root.push((
            TorchValue::Str("optimizer_state_dict".into()),
            optimizer_value(ckpt, &names, adam, path)?,
        ));
    }
    if let Some([mean, std]) = norm {
        root.push((
            TorchValue::Str("norm".into()),
            TorchValue::List(vec![TorchValue::Float(mean.into()), TorchValue::Float(std.into())]),
        ));
    }
    write_torch(path, &TorchValue::Dict(root))?;
    Ok(())
}

fn optimizer_value(
    ckpt: &Checkpoint,
    names: &[&String],
    adam: &AdamConfig,
    path: &Path,
) -> Result<TorchValue> {
    let mut state = Vec::new();
    for (index, name) in names.iter().enumerate() {
        let get = |suffix: &str| {
            ckpt.optimizer.get(&format!("{name}.{suffix}")).ok_or_else(|| Error::Checkpoint {
                path: path.to_path_buf(),
                problem: format!("optimizer state has no `{name}.{suffix}`"),
                hint: "the checkpoint is incomplete; export an earlier weights.N.safetensors",
            })
        };
        let step = get("step")?.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
        let step = step.first().copied().unwrap_or(0.0);
        // PyTorch keeps no state for a parameter that never took a step (frozen `rand_freqs`).
        if step > 0.0 {
            state.push((
                TorchValue::Int(index as i64),
                TorchValue::Dict(vec![
                    (TorchValue::Str("step".into()), TorchValue::Tensor { shape: vec![], data: vec![step] }),
                    (TorchValue::Str("exp_avg".into()), tensor_value(get("exp_avg")?)?),
                    (TorchValue::Str("exp_avg_sq".into()), tensor_value(get("exp_avg_sq")?)?),
                ]),
            ));
        }
    }
    let s = |k: &str| TorchValue::Str(k.into());
    let group = TorchValue::Dict(vec![
        (s("lr"), TorchValue::Float(adam.lr)),
        (s("betas"), TorchValue::Tuple(vec![TorchValue::Float(adam.beta1), TorchValue::Float(adam.beta2)])),
        (s("eps"), TorchValue::Float(adam.eps)),
        (s("weight_decay"), TorchValue::Float(adam.weight_decay)),
        (s("amsgrad"), TorchValue::Bool(false)),
        (s("maximize"), TorchValue::Bool(false)),
        (s("foreach"), TorchValue::None),
        (s("capturable"), TorchValue::Bool(false)),
        (s("differentiable"), TorchValue::Bool(false)),
        (s("fused"), TorchValue::None),
        (s("decoupled_weight_decay"), TorchValue::Bool(false)),
        (s("params"), TorchValue::List((0..names.len() as i64).map(TorchValue::Int).collect())),
    ]);
    Ok(TorchValue::Dict(vec![
        (s("state"), TorchValue::Dict(state)),
        (s("param_groups"), TorchValue::List(vec![group])),
    ]))
}

fn tensor_value(t: &Tensor) -> Result<TorchValue> {
    let shape = t.dims().to_vec();
    let data = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
    Ok(TorchValue::Tensor { shape, data })
}

/// The order of two state-dict names in PyTorch's `module.parameters()` for cryoDRGN's models: a module's
/// own parameters before its submodules' (`decoder.rand_freqs` before `decoder.decoder.main…`), weight
/// before bias, submodules in registration order (the encoder before the decoder, `nn.Sequential` indices
/// numerically).
pub fn torch_parameter_order(a: &str, b: &str) -> Ordering {
    let (pa, pb): (Vec<&str>, Vec<&str>) = (a.split('.').collect(), b.split('.').collect());
    for i in 0..pa.len().min(pb.len()) {
        let (leaf_a, leaf_b) = (i + 1 == pa.len(), i + 1 == pb.len());
        if pa[i] == pb[i] && !leaf_a && !leaf_b {
            continue;
        }
        return match (leaf_a, leaf_b) {
            (true, false) => Ordering::Less,
            (false, true) => Ordering::Greater,
            (true, true) => leaf_rank(pa[i]).cmp(&leaf_rank(pb[i])).then(pa[i].cmp(pb[i])),
            (false, false) => match (pa[i].parse::<u64>(), pb[i].parse::<u64>()) {
                (Ok(x), Ok(y)) => x.cmp(&y),
                _ => module_rank(pa[i]).cmp(&module_rank(pb[i])).then(pa[i].cmp(pb[i])),
            },
        };
    }
    pa.len().cmp(&pb.len())
}

fn leaf_rank(name: &str) -> u8 {
    match name {
        "weight" => 0,
        "bias" => 1,
        _ => 2,
    }
}

fn module_rank(name: &str) -> u8 {
    match name {
        "encoder" => 0,
        "decoder" => 1,
        _ => 2,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The orders cryoDRGN 4.3.1 gives (`list(model.state_dict())` of a HetOnlyVAE with a residual encoder
    /// and Gaussian features, and of train_nn's decoder), shuffled and sorted back.
    #[test]
    fn parameter_order_matches_cryodrgn() {
        let vae = [
            "encoder.main.0.weight",
            "encoder.main.0.bias",
            "encoder.main.2.linear.weight",
            "encoder.main.2.linear.bias",
            "encoder.main.4.linear.weight",
            "encoder.main.4.linear.bias",
            "encoder.main.6.weight",
            "encoder.main.6.bias",
            "decoder.rand_freqs",
            "decoder.decoder.main.0.weight",
            "decoder.decoder.main.0.bias",
            "decoder.decoder.main.2.linear.weight",
            "decoder.decoder.main.2.linear.bias",
            "decoder.decoder.main.4.linear.weight",
            "decoder.decoder.main.4.linear.bias",
            "decoder.decoder.main.6.weight",
            "decoder.decoder.main.6.bias",
        ];
        let nn = [
            "rand_freqs",
            "decoder.main.0.weight",
            "decoder.main.0.bias",
            "decoder.main.2.linear.weight",
            "decoder.main.2.linear.bias",
            "decoder.main.10.weight",
            "decoder.main.10.bias",
        ];
        for expected in [&vae[..], &nn[..]] {
            let mut names: Vec<&str> = expected.iter().rev().copied().collect();
            names.swap(1, 3);
            names.sort_by(|a, b| torch_parameter_order(a, b));
            assert_eq!(names, expected);
        }
    }
}
