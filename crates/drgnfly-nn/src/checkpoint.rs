//! Training checkpoints (safetensors) and import of cryoDRGN's PyTorch `weights.pkl`.
//!
//! A drgnfly checkpoint is one safetensors file holding
//! - the model's state dict under cryoDRGN's names (`encoder.main.0.weight`, `decoder.rand_freqs`, …), so
//!   it can also be opened directly as weights (for example with `VarBuilder::from_mmaped_safetensors`);
//! - the optimizer state under `optimizer.` + [`Adam::state_tensors`] names (absent when none was given);
//! - `epoch`: an i64 tensor of shape (1,), the number of completed epochs as the caller counts them.
//!
//! The run configuration (YAML/JSON) is written beside it by the caller. Files are written to a temporary
//! name in the same directory and renamed, so a crash never leaves a truncated checkpoint.

use std::collections::HashMap;
use std::path::{Path, PathBuf};

use candle_core::{DType, Device, Tensor};

use crate::adam::Adam;
use crate::error::{Error, Result};
use crate::params::ParamStore;

const OPTIMIZER_PREFIX: &str = "optimizer.";
const EPOCH_KEY: &str = "epoch";

/// The contents of a checkpoint file.
#[derive(Clone, Debug)]
pub struct Checkpoint {
    /// Completed epochs.
    pub epoch: u64,
    /// Model state dict by name.
    pub model: HashMap<String, Tensor>,
    /// Optimizer state (names without the `optimizer.` prefix); empty when the file has none.
    pub optimizer: HashMap<String, Tensor>,
}

/// Write `params`, the optimizer state (if any) and `epoch` to `path` atomically.
pub fn save_checkpoint(path: &Path, params: &ParamStore, optimizer: Option<&Adam>, epoch: u64) -> Result<()> {
    let mut all = params.tensors();
    if let Some(adam) = optimizer {
        for (k, v) in adam.state_tensors()? {
            all.insert(format!("{OPTIMIZER_PREFIX}{k}"), v);
        }
    }
    let epoch =
        i64::try_from(epoch).map_err(|_| Error::config("epoch", format!("{epoch} does not fit i64")))?;
    all.insert(EPOCH_KEY.to_string(), Tensor::new(&[epoch], params.device())?);
    let tmp = temp_path(path);
    let written = candle_core::safetensors::save(&all, &tmp).map_err(Error::from).and_then(|()| {
        std::fs::rename(&tmp, path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })
    });
    if written.is_err() {
        // Best effort: the temporary file is garbage either way, and the original error is what matters.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Read a checkpoint written by [`save_checkpoint`] onto `device`.
pub fn read_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = std::fs::read(path).map_err(|e| Error::Io { path: path.to_path_buf(), source: e })?;
    let all = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        problem: format!("not a readable safetensors file ({e})"),
        hint: "pass a drgnfly checkpoint (weights.N.safetensors); cryoDRGN's weights.N.pkl loads with read_cryodrgn_weights",
    })?;
    let mut ckpt = Checkpoint { epoch: 0, model: HashMap::new(), optimizer: HashMap::new() };
    let mut epoch = None;
    for (name, t) in all {
        if name == EPOCH_KEY {
            epoch = t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?.first().copied();
        } else if let Some(rest) = name.strip_prefix(OPTIMIZER_PREFIX) {
            ckpt.optimizer.insert(rest.to_string(), t);
        } else {
            ckpt.model.insert(name, t);
        }
    }
    ckpt.epoch = match epoch {
        Some(e) if e >= 0 => e as u64,
        _ => {
            return Err(Error::Checkpoint {
                path: path.to_path_buf(),
                problem: "no valid `epoch` entry".into(),
                hint: "the file is not a drgnfly checkpoint or was written by another tool",
            })
        }
    };
    Ok(ckpt)
}

/// Load a checkpoint into `params` (and `optimizer` when given: the file must then hold optimizer state)
/// and return its epoch.
pub fn load_checkpoint(path: &Path, params: &ParamStore, optimizer: Option<&mut Adam>) -> Result<u64> {
    let ckpt = read_checkpoint(path, params.device())?;
    params.load_state(&ckpt.model, path)?;
    if let Some(adam) = optimizer {
        adam.load_state_tensors(&ckpt.optimizer, path)?;
    }
    Ok(ckpt.epoch)
}

/// The model state dict of a cryoDRGN checkpoint (`torch.save` zip holding `{epoch, model_state_dict,
/// optimizer_state_dict}`), by PyTorch name, as stored (f32). The pickle is parsed by candle, never executed.
pub fn read_cryodrgn_weights(path: &Path) -> Result<HashMap<String, Tensor>> {
    let bad = |problem: String| Error::Checkpoint {
        path: path.to_path_buf(),
        problem,
        hint: "pass a cryoDRGN weights.N.pkl written by torch.save (zip format, torch ≥ 1.6)",
    };
    let pth = candle_core::pickle::PthTensors::new(path, Some("model_state_dict"))
        .map_err(|e| bad(format!("cannot read model_state_dict ({e})")))?;
    let mut out = HashMap::new();
    let mut names: Vec<&String> = pth.tensor_infos().keys().collect();
    names.sort();
    for name in names {
        match pth.get(name).map_err(|e| bad(format!("tensor `{name}`: {e}")))? {
            Some(t) => {
                out.insert(name.clone(), t);
            }
            None => return Err(bad(format!("tensor `{name}` is listed but cannot be read"))),
        }
    }
    if out.is_empty() {
        return Err(bad("no tensors under `model_state_dict`".into()));
    }
    Ok(out)
}

/// `dir/.name.<pid>.tmp` beside `path`. candle writes safetensors only to a path, hence rename-based
/// atomicity here instead of `drgnfly_io::atomic` (which would also need a second safetensors version).
fn temp_path(path: &Path) -> PathBuf {
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    path.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::adam::AdamConfig;
    use crate::decoder::{Decoder, DecoderConfig, Domain};

    #[test]
    fn model_optimizer_and_epoch_round_trip() -> Result<()> {
        let dev = Device::Cpu;
        let mut cfg = DecoderConfig::new(9, 2);
        cfg.dim = 6;
        cfg.pe_dim = Some(3);
        cfg.domain = Domain::Hartley;
        let store = ParamStore::new(5, &dev);
        let dec = Decoder::new(&cfg, store.var_builder())?;
        let mut adam = Adam::new(store.named_vars(), AdamConfig::default())?;
        let coords = Tensor::new(&[[[0.1f32, 0.2, -0.3], [0.0, 0.25, 0.5]]], &dev)?;
        let z = Tensor::new(&[[0.3f32, -1.0]], &dev)?;
        adam.backward_step(&dec.forward(&coords, Some(&z))?.sqr()?.sum_all()?)?;

        let dir = tempfile::tempdir().map_err(|e| Error::Io { path: "tempdir".into(), source: e })?;
        let path = dir.path().join("weights.1.safetensors");
        save_checkpoint(&path, &store, Some(&adam), 1)?;

        let store2 = ParamStore::new(99, &dev);
        let dec2 = Decoder::new(&cfg, store2.var_builder())?;
        let mut adam2 = Adam::new(store2.named_vars(), AdamConfig::default())?;
        assert_eq!(load_checkpoint(&path, &store2, Some(&mut adam2))?, 1);
        let a = dec.forward(&coords, Some(&z))?.to_vec2::<f32>()?;
        assert_eq!(a, dec2.forward(&coords, Some(&z))?.to_vec2::<f32>()?);
        // Both optimizers take the same next step from the same state.
        adam.backward_step(&dec.forward(&coords, Some(&z))?.sqr()?.sum_all()?)?;
        adam2.backward_step(&dec2.forward(&coords, Some(&z))?.sqr()?.sum_all()?)?;
        let (s1, s2) = (store.tensors(), store2.tensors());
        for (name, t) in &s1 {
            assert_eq!(
                t.flatten_all()?.to_vec1::<f32>()?,
                s2[name].flatten_all()?.to_vec1::<f32>()?,
                "{name}"
            );
        }
        let leftovers =
            std::fs::read_dir(dir.path()).map_err(|e| Error::Io { path: dir.path().into(), source: e })?;
        assert_eq!(leftovers.count(), 1, "no temporary file may remain");
        Ok(())
    }

    #[test]
    fn bad_files_are_typed_errors() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("junk.safetensors");
        std::fs::write(&path, b"not a checkpoint").expect("write");
        assert!(matches!(read_checkpoint(&path, &Device::Cpu), Err(Error::Checkpoint { .. })));
        assert!(matches!(read_cryodrgn_weights(&path), Err(Error::Checkpoint { .. })));
        assert!(matches!(read_checkpoint(&dir.path().join("absent"), &Device::Cpu), Err(Error::Io { .. })));
    }
}
