//! Training checkpoints (safetensors) and import of cryoDRGN's PyTorch `weights.pkl`.
//!
//! A drgnfly checkpoint is one safetensors file holding
//! - the model's state dict under cryoDRGN's names (`encoder.main.0.weight`, `decoder.rand_freqs`, …), so
//!   it can also be opened directly as weights (for example with `VarBuilder::from_mmaped_safetensors`);
//! - the optimizer state under `optimizer.` + [`Adam::state_tensors`] names (absent when none was given);
//! - per-particle tables (poses, latents) and their optimizer state under `table.`;
//! - `epoch`: an i64 tensor of shape (1,), the number of completed epochs as the caller counts them.
//!
//! The run configuration (YAML/JSON) is written beside it by the caller. Files are written to a temporary
//! name in the same directory and renamed, so a crash never leaves a truncated checkpoint.

use std::collections::HashMap;
use std::path::Path;

use candle_core::{DType, Device, Tensor};

use crate::adam::Adam;
use crate::error::{Error, Result};
use crate::params::ParamStore;

const OPTIMIZER_PREFIX: &str = "optimizer.";
const TABLE_PREFIX: &str = "table.";
const EPOCH_KEY: &str = "epoch";

/// The contents of a checkpoint file: everything a trainer needs to resume exactly.
#[derive(Clone, Debug, Default)]
pub struct Checkpoint {
    /// Completed epochs.
    pub epoch: u64,
    /// Model state dict by name.
    pub model: HashMap<String, Tensor>,
    /// Optimizer state (names without the `optimizer.` prefix); empty when the file has none.
    pub optimizer: HashMap<String, Tensor>,
    /// Per-particle tables and their optimizers (pose and latent tables; names without the `table.`
    /// prefix); empty for trainers without tables.
    pub tables: HashMap<String, Tensor>,
}

impl Checkpoint {
    /// The state of a model and its optimizer (epoch 0, no tables).
    pub fn capture(params: &ParamStore, optimizer: Option<&Adam>) -> Result<Self> {
        let optimizer = match optimizer {
            Some(adam) => adam.state_tensors()?,
            None => HashMap::new(),
        };
        Ok(Self { epoch: 0, model: params.tensors(), optimizer, tables: HashMap::new() })
    }

    /// Load the model into `params`, and the optimizer state into `optimizer` when given (the checkpoint
    /// at `path` must then hold one).
    pub fn restore(&self, params: &ParamStore, optimizer: Option<&mut Adam>, path: &Path) -> Result<()> {
        params.load_state(&self.model, path)?;
        if let Some(adam) = optimizer {
            adam.load_state_tensors(&self.optimizer, path)?;
        }
        Ok(())
    }
}

/// Write a checkpoint to `path` atomically.
pub fn write_checkpoint(path: &Path, ckpt: &Checkpoint) -> Result<()> {
    let mut all = ckpt.model.clone();
    for (k, v) in &ckpt.optimizer {
        all.insert(format!("{OPTIMIZER_PREFIX}{k}"), v.clone());
    }
    for (k, v) in &ckpt.tables {
        all.insert(format!("{TABLE_PREFIX}{k}"), v.clone());
    }
    let epoch = ckpt.epoch;
    let epoch =
        i64::try_from(epoch).map_err(|_| Error::config("epoch", format!("{epoch} does not fit i64")))?;
    all.insert(EPOCH_KEY.to_string(), Tensor::new(&[epoch], &Device::Cpu)?);
    let tmp = drgnfly_io::atomic::temp_path(path);
    let io = |e| Error::Io { path: path.to_path_buf(), source: e };
    let written = candle_core::safetensors::save(&all, &tmp).map_err(Error::from).and_then(|()| {
        // On disk before the rename (a crash never leaves a named but empty checkpoint), and readable by
        // the group and others like every other output (the writer creates it 0600).
        std::fs::File::open(&tmp).and_then(|f| f.sync_all()).map_err(io)?;
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            std::fs::set_permissions(&tmp, std::fs::Permissions::from_mode(0o644)).map_err(io)?;
        }
        std::fs::rename(&tmp, path).map_err(io)
    });
    if written.is_err() {
        // Best effort: the temporary file is garbage either way, and the original error is what matters.
        let _ = std::fs::remove_file(&tmp);
    }
    written
}

/// Read a checkpoint written by [`save_checkpoint`] onto `device`.
pub fn read_checkpoint(path: &Path, device: &Device) -> Result<Checkpoint> {
    let bytes = drgnfly_io::input::read_bytes(path)?;
    let all = candle_core::safetensors::load_buffer(&bytes, device).map_err(|e| Error::Checkpoint {
        path: path.to_path_buf(),
        problem: format!("not a readable safetensors file ({e})"),
        hint: "pass a drgnfly checkpoint (weights.N.safetensors); cryoDRGN's weights.N.pkl loads with read_cryodrgn_weights",
    })?;
    let mut ckpt = Checkpoint::default();
    let mut epoch = None;
    for (name, t) in all {
        if name == EPOCH_KEY {
            epoch = t.flatten_all()?.to_dtype(DType::I64)?.to_vec1::<i64>()?.first().copied();
        } else if let Some(rest) = name.strip_prefix(OPTIMIZER_PREFIX) {
            ckpt.optimizer.insert(rest.to_string(), t);
        } else if let Some(rest) = name.strip_prefix(TABLE_PREFIX) {
            ckpt.tables.insert(rest.to_string(), t);
        } else {
            ckpt.model.insert(name, t);
        }
    }
    // A diverged run's weights: resuming would train a dead model, and maps would be NaN.
    let mut names: Vec<&String> = ckpt.model.keys().collect();
    names.sort();
    for name in names {
        let t = &ckpt.model[name];
        if t.dtype().is_float() {
            let values = t.flatten_all()?.to_dtype(DType::F32)?.to_vec1::<f32>()?;
            if let Some(bad) = values.iter().position(|v| !v.is_finite()) {
                return Err(Error::Checkpoint {
                    path: path.to_path_buf(),
                    problem: format!("parameter `{name}` holds {} at element {bad}", values[bad]),
                    hint: "training diverged before this checkpoint: use an earlier weights.N.safetensors \
                           (and a lower --lr to continue)",
                });
            }
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
        let mut ckpt = Checkpoint::capture(&store, Some(&adam))?;
        ckpt.epoch = 1;
        ckpt.tables.insert("pose.shift".into(), Tensor::new(&[[1.5f32, -2.0]], &dev)?);
        write_checkpoint(&path, &ckpt)?;

        let store2 = ParamStore::new(99, &dev);
        let dec2 = Decoder::new(&cfg, store2.var_builder())?;
        let mut adam2 = Adam::new(store2.named_vars(), AdamConfig::default())?;
        let back = read_checkpoint(&path, &dev)?;
        assert_eq!(back.epoch, 1);
        assert_eq!(back.tables["pose.shift"].to_vec2::<f32>()?, [[1.5, -2.0]]);
        assert!(!back.model.contains_key("table.pose.shift"), "tables stay out of the model state");
        back.restore(&store2, Some(&mut adam2), &path)?;
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
        assert!(matches!(
            read_checkpoint(&dir.path().join("absent"), &Device::Cpu),
            Err(Error::File(drgnfly_io::Error::Io { .. }))
        ));

        // A diverged run's weights are refused, naming the parameter.
        let mut ckpt = Checkpoint::default();
        ckpt.model
            .insert("decoder.main.0.weight".into(), Tensor::new(&[1.0f32, f32::NAN], &Device::Cpu).unwrap());
        let nan = dir.path().join("weights.3.safetensors");
        write_checkpoint(&nan, &ckpt).unwrap();
        match read_checkpoint(&nan, &Device::Cpu) {
            Err(Error::Checkpoint { problem, .. }) => {
                assert!(problem.contains("`decoder.main.0.weight` holds NaN at element 1"), "{problem}")
            }
            other => panic!("expected a checkpoint error, got {other:?}"),
        }
    }
}
