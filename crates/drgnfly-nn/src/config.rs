//! `config.yaml`: the run configuration written by `train-vae` / `train-nn` and read by `eval-vol`,
//! `eval-images`, `analyze` and [`crate::volume::VolumeDecoder::load`], in cryoDRGN's layout (reference §1.4)
//! so either tool reads the other's:
//!
//! ```yaml
//! dataset_args: {particles, norm: [mean, std], invert_data, ind, keepreal, window, window_r, datadir, ctf, poses}
//! lattice_args: {D: image D + 1, extent: 0.5, ignore_DC: true}
//! model_args:   {qlayers, qdim, players, pdim, zdim, encode_mode, enc_mask, pe_type, feat_sigma, pe_dim,
//!                domain, activation}
//! seed, version, time, cmd
//! ```
//!
//! A homogeneous (`train_nn`) run has no `zdim`; its decoder size is in `qlayers`/`qdim`, as cryoDRGN's
//! `train_nn` writes it (`layers`/`dim` and `players`/`pdim` are read too). Unknown keys are ignored, so
//! cryoDRGN's configs (with `time`, `tilt_params`, …) load.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::cnn::{CnnConfig, CnnLayout};
use crate::error::{Error, Result};
use crate::train::EncoderInput;
use crate::{Activation, DataNorm, DecoderConfig, Domain, EncodeMode, EncoderConfig, PeType};

/// The whole file.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct RunConfig {
    /// Data and preprocessing.
    pub dataset_args: DatasetArgs,
    /// The Fourier lattice.
    pub lattice_args: LatticeArgs,
    /// Architecture.
    pub model_args: ModelArgs,
    /// Seed of the run (weights initialisation, shuffling, latent noise).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub seed: Option<u64>,
    /// Version of the program that wrote the file.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub version: Option<String>,
    /// Command line of the run.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cmd: Option<Vec<String>>,
}

/// `dataset_args`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct DatasetArgs {
    /// Particle file as given.
    pub particles: String,
    /// `[mean, std]` of the Hartley-transformed images.
    pub norm: Vec<f32>,
    /// Images were multiplied by −1.
    #[serde(default = "yes")]
    pub invert_data: bool,
    /// `--ind` file.
    #[serde(default)]
    pub ind: Option<String>,
    /// Real-space images kept (cryoDRGN's conv encoder); always false here.
    #[serde(default)]
    pub keepreal: bool,
    /// Real-space window applied.
    #[serde(default = "yes")]
    pub window: bool,
    /// Inner window radius.
    #[serde(default = "default_window_r")]
    pub window_r: f32,
    /// `--datadir`.
    #[serde(default)]
    pub datadir: Option<String>,
    /// ctf.pkl.
    #[serde(default)]
    pub ctf: Option<String>,
    /// pose.pkl (or rot.pkl and trans.pkl).
    #[serde(default)]
    pub poses: Option<PosesArg>,
    /// Poses refined by SGD during training; always false here. cryoDRGN's notebooks read the key.
    #[serde(default)]
    pub do_pose_sgd: bool,
}

/// One pose file, or rotations and translations in two.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
#[serde(untagged)]
pub enum PosesArg {
    /// pose.pkl.
    One(String),
    /// rot.pkl, trans.pkl.
    Split(Vec<String>),
}

/// `lattice_args`.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub struct LatticeArgs {
    /// Lattice side: image D + 1.
    #[serde(rename = "D")]
    pub d: usize,
    /// Coordinate extent (0.5).
    pub extent: f64,
    /// DC excluded from the masks.
    #[serde(rename = "ignore_DC", default = "yes")]
    pub ignore_dc: bool,
}

/// What a run trains. drgnfly writes it; cryoDRGN's configs have none, and theirs is read from `zdim`.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum ModelKind {
    /// Encoder + z-conditioned decoder with known poses (`train-vae`).
    Vae,
    /// One decoder, no latent, known poses (`train-nn`).
    Homogeneous,
    /// One decoder, no latent, poses found by pose search (`abinit-homo`).
    AbinitHomo,
    /// A z-conditioned decoder whose latents are a per-particle table (no encoder), poses found ab initio
    /// (`abinit --zdim N`, cryoDRGN-AI's autodecoder). Parameters are named as a VAE's decoder.
    Autodecoder,
    /// A CNN encoder that predicts each image's pose, and a decoder named `decoder.*` (`abinit-amortized`,
    /// cryoAI); the encoder's weights are under `encoder.*` in the checkpoint.
    Amortized,
}

impl ModelKind {
    /// Whether the model is a decoder without latent (its size is in `qlayers`/`qdim`, as cryoDRGN's
    /// `train_nn` writes it).
    pub fn is_homogeneous(self) -> bool {
        matches!(self, ModelKind::Homogeneous | ModelKind::AbinitHomo)
    }
}

/// `model_args`; everything optional so cryoDRGN's variants load, with cryoDRGN's defaults filled in.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct ModelArgs {
    /// What the run trains (drgnfly's key; see [`RunConfig::model_kind`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub kind: Option<ModelKind>,
    /// Encoder hidden layers (homogeneous runs: decoder layers).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qlayers: Option<usize>,
    /// Encoder width (homogeneous runs: decoder width).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub qdim: Option<usize>,
    /// Decoder hidden layers.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub players: Option<usize>,
    /// Decoder width.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pdim: Option<usize>,
    /// Decoder layers (some cryoDRGN homogeneous configs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub layers: Option<usize>,
    /// Decoder width (some cryoDRGN homogeneous configs).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub dim: Option<usize>,
    /// Latent width; absent or 0 for a homogeneous model.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zdim: Option<usize>,
    /// Encoder architecture.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encode_mode: Option<EncodeMode>,
    /// Encoder disc radius in lattice steps; −1 = the whole lattice.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub enc_mask: Option<i64>,
    /// Positional encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pe_type: Option<PeType>,
    /// σ of the gaussian encoding.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub feat_sigma: Option<f64>,
    /// Encoding frequencies (default D/2).
    #[serde(default)]
    pub pe_dim: Option<usize>,
    /// Decoder output domain.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub domain: Option<Domain>,
    /// Hidden activation.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub activation: Option<Activation>,
    /// The CNN encoder of an amortized run (drgnfly's key; absent: `small`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cnn_layout: Option<CnnLayout>,
}

impl ModelArgs {
    /// A latent-free decoder's `model_args` (its size in `qlayers`/`qdim`, as cryoDRGN's `train_nn` writes it).
    pub fn decoder_only(kind: ModelKind, dec: &DecoderConfig) -> Self {
        Self {
            kind: Some(kind),
            qlayers: Some(dec.layers),
            qdim: Some(dec.dim),
            pe_type: Some(dec.pe_type),
            feat_sigma: Some(dec.feat_sigma),
            pe_dim: dec.pe_dim,
            domain: Some(dec.domain),
            activation: Some(dec.activation),
            ..Default::default()
        }
    }
}

fn yes() -> bool {
    true
}

fn default_window_r() -> f32 {
    0.85
}

/// Largest config.yaml read (a run's is about 2 kB).
const MAX_CONFIG_BYTES: usize = 1 << 20;
/// Deepest nesting read (a run's config nests 2 levels).
const MAX_CONFIG_DEPTH: usize = 32;

/// Refuse a file the YAML parser would take unbounded time on, before parsing: too large, or nested too
/// deeply (`[[[[…]]]]` or `- - - -…` chains; the parser's own depth limit triggers only after time that
/// grows quadratically with the depth).
fn check_yaml_shape(text: &str) -> std::result::Result<(), String> {
    if text.len() > MAX_CONFIG_BYTES {
        return Err(format!(
            "{} bytes is not a run's config.yaml (at most {MAX_CONFIG_BYTES} bytes read)",
            text.len()
        ));
    }
    let too_deep = |line: usize| {
        Err(format!("nested more than {MAX_CONFIG_DEPTH} levels at line {line}; not a run's config.yaml"))
    };
    let mut flow = 0usize;
    let mut quote: Option<char> = None;
    for (i, line) in text.lines().enumerate() {
        // Block nesting: indentation and `- ` sequence markers at the start of the line.
        let rest = line.trim_start_matches([' ', '-']);
        let prefix = &line[..line.len() - rest.len()];
        if prefix.len() > 4 * MAX_CONFIG_DEPTH || prefix.matches('-').count() > MAX_CONFIG_DEPTH {
            return too_deep(i + 1);
        }
        for c in line.chars() {
            match (quote, c) {
                (Some(q), c) if c == q => quote = None,
                (Some(_), _) => {}
                (None, '\'' | '"') => quote = Some(c),
                (None, '#') => break,
                (None, '[' | '{') => {
                    flow += 1;
                    if flow > MAX_CONFIG_DEPTH {
                        return too_deep(i + 1);
                    }
                }
                (None, ']' | '}') => flow = flow.saturating_sub(1),
                _ => {}
            }
        }
    }
    Ok(())
}

impl RunConfig {
    /// Read and check a config.yaml. Errors name the file: [`Error::File`] when it cannot be read as text, [`Error::RunFile`]
    /// for a file that is not YAML, not a train_vae/train_nn config (a cryoDRGN-AI one, say), or holds an
    /// unusable `dataset_args.norm` or `lattice_args.D`.
    pub fn read(path: &Path) -> Result<Self> {
        let text = drgnfly_io::input::read_text(path, "config.yaml")?;
        check_yaml_shape(&text).map_err(|problem| Error::run_file(path, problem))?;
        let raw: serde_yaml_ng::Value = serde_yaml_ng::from_str(&text)
            .map_err(|e| Error::run_file(path, format!("not a YAML file: {e}")))?;
        if raw.get("data_norm_mean").is_some() {
            return Err(Error::run_file(
                path,
                "this is a cryoDRGN-AI (abinit) config; its hypervolume checkpoints are not supported by \
                 drgnfly yet",
            ));
        }
        let cfg: RunConfig = serde_yaml_ng::from_value(raw).map_err(|e| {
            Error::run_file(
                path,
                format!("not a train_vae/train_nn config.yaml (dataset_args, lattice_args, model_args): {e}"),
            )
        })?;
        cfg.checked_norm().map_err(|e| Error::run_file(path, format!("dataset_args.norm: {e}")))?;
        let d = cfg.lattice_args.d;
        if d < 3 || d.is_multiple_of(2) {
            return Err(Error::run_file(path, format!("lattice_args.D = {d} must be odd (image box + 1)")));
        }
        Ok(cfg)
    }

    /// Write atomically.
    pub fn write(&self, path: &Path) -> Result<()> {
        let text = serde_yaml_ng::to_string(self)
            .map_err(|e| Error::run_file(path, format!("serialising config.yaml: {e}")))?;
        drgnfly_io::atomic::write_atomic(path, text.as_bytes())?;
        Ok(())
    }

    /// Image box size D.
    pub fn image_size(&self) -> usize {
        self.lattice_args.d - 1
    }

    /// Latent width (0 for a homogeneous model).
    pub fn zdim(&self) -> usize {
        self.model_args.zdim.unwrap_or(0)
    }

    /// What the run trains: `model_args.kind`, or for cryoDRGN's configs (which have none) a VAE when
    /// `zdim` is set and a homogeneous model otherwise.
    pub fn model_kind(&self) -> ModelKind {
        self.model_args.kind.unwrap_or(if self.zdim() > 0 { ModelKind::Vae } else { ModelKind::Homogeneous })
    }

    /// `[mean, std]` checked (always fine for a config from [`Self::read`]).
    pub fn norm(&self) -> Result<DataNorm> {
        self.checked_norm().map_err(|message| Error::RunSetting { message })
    }

    fn checked_norm(&self) -> std::result::Result<DataNorm, String> {
        match self.dataset_args.norm.as_slice() {
            &[mean, std] if mean.is_finite() && std.is_finite() && std > 0.0 => Ok(DataNorm { mean, std }),
            other => Err(format!("expected [mean, std] with std > 0, found {other:?}")),
        }
    }

    /// The decoder of this run.
    pub fn decoder_config(&self) -> DecoderConfig {
        let m = &self.model_args;
        let mut cfg = DecoderConfig::new(self.lattice_args.d, self.zdim());
        let homogeneous = self.model_kind().is_homogeneous();
        let (layers, dim) = if homogeneous {
            (m.players.or(m.layers).or(m.qlayers), m.pdim.or(m.dim).or(m.qdim))
        } else {
            (m.players, m.pdim)
        };
        cfg.layers = layers.unwrap_or(cfg.layers);
        cfg.dim = dim.unwrap_or(cfg.dim);
        cfg.pe_type = m.pe_type.unwrap_or(cfg.pe_type);
        cfg.pe_dim = m.pe_dim;
        cfg.feat_sigma = m.feat_sigma.unwrap_or(cfg.feat_sigma);
        cfg.domain = m.domain.unwrap_or(cfg.domain);
        cfg.activation = m.activation.unwrap_or(cfg.activation);
        cfg
    }

    /// The encoder of a heterogeneous run (`None` when zdim is 0), for `encoder_inputs` masked pixels.
    pub fn encoder_config(&self, encoder_inputs: usize) -> Option<EncoderConfig> {
        let zdim = self.zdim();
        (self.model_kind() == ModelKind::Vae).then(|| {
            let m = &self.model_args;
            let mut cfg = EncoderConfig::new(encoder_inputs, zdim);
            cfg.layers = m.qlayers.unwrap_or(cfg.layers);
            cfg.dim = m.qdim.unwrap_or(cfg.dim);
            cfg.mode = m.encode_mode.unwrap_or(cfg.mode);
            cfg.activation = m.activation.unwrap_or(cfg.activation);
            cfg
        })
    }

    /// The CNN encoder of an amortized run (`None` for other kinds).
    pub fn cnn_config(&self) -> Option<CnnConfig> {
        (self.model_kind() == ModelKind::Amortized)
            .then(|| self.model_args.cnn_layout.unwrap_or_default().config(self.image_size(), self.zdim()))
    }

    /// The encoder's input pixels from `enc_mask`: the disc of that radius (default D/2), or the whole
    /// lattice for −1.
    pub fn encoder_input(&self) -> Result<EncoderInput> {
        let half = (self.lattice_args.d / 2) as i64;
        Ok(match self.model_args.enc_mask.unwrap_or(half) {
            -1 => EncoderInput::FullLattice,
            r if r >= 1 && r <= half => EncoderInput::Disc(r as usize),
            r => {
                return Err(Error::RunSetting {
                    message: format!("model_args.enc_mask = {r}: must be -1 or between 1 and {half}"),
                })
            }
        })
    }

    /// Number of encoder inputs ([`Self::encoder_input`]).
    pub fn encoder_input_count(&self) -> Result<usize> {
        let lattice = drgnfly_em::lattice::Lattice::new(self.lattice_args.d, 0.5)?;
        Ok(match self.encoder_input()? {
            EncoderInput::Disc(r) => lattice.circular_mask(r as f32, true).len(),
            EncoderInput::FullLattice | EncoderInput::None => lattice.len(),
        })
    }

    /// ctf.pkl of the run, resolved against the config's directory when relative and not found as given.
    pub fn ctf_path(&self, config_path: &Path) -> Option<PathBuf> {
        let ctf = PathBuf::from(self.dataset_args.ctf.as_ref()?);
        if ctf.is_absolute() || ctf.exists() {
            return Some(ctf);
        }
        config_path.parent().map(|dir| dir.join(&ctf)).filter(|p| p.exists()).or(Some(ctf))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A hostile config (100k nested levels) is refused at once instead of hanging the parser; ordinary
    /// nesting, quoted brackets and comments pass the check.
    #[test]
    fn deeply_nested_or_huge_configs_are_refused_before_parsing() {
        let flow = format!("deep: {}{}", "[".repeat(100_000), "]".repeat(100_000));
        let started = std::time::Instant::now();
        let e = check_yaml_shape(&flow).unwrap_err();
        assert!(e.contains("nested more than 32 levels at line 1"), "{e}");
        assert!(started.elapsed().as_secs_f64() < 1.0);
        let block = format!("deep:\n{}x\n", "- ".repeat(10_000));
        assert!(check_yaml_shape(&block).unwrap_err().contains("line 2"));
        assert!(check_yaml_shape(&"a".repeat(2 << 20)).unwrap_err().contains("bytes"));
        let fine = "dataset_args:\n  norm:\n  - 0.0\n  - [1, {a: '[[[[['}]  # ]]]] [[[[\nname: \"{{{\"\n";
        assert_eq!(check_yaml_shape(fine), Ok(()));
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn reads_cryodrgn_het_config() {
        let Some(path) = drgnfly_io::fixtures::fixture("cryodrgn/het_config.yaml") else { return };
        let cfg = RunConfig::read(&path).unwrap();
        assert_eq!(cfg.lattice_args.d, 65);
        assert_eq!(cfg.norm().unwrap(), DataNorm { mean: 0.0, std: 94.4266 });
        let dec = cfg.decoder_config();
        assert_eq!((dec.layers, dec.dim, dec.zdim, dec.pe_dim), (3, 8, 8, Some(8)));
        assert_eq!(dec.domain, Domain::Hartley);
        let enc = cfg.encoder_config(3208).unwrap();
        assert_eq!((enc.layers, enc.dim, enc.in_dim), (2, 8, 3208));
        assert_eq!(cfg.model_args.enc_mask, Some(32));
        assert_eq!(cfg.model_kind(), ModelKind::Vae, "cryoDRGN's configs have no kind: read from zdim");
    }

    #[test]
    fn round_trips_and_rejects_bad_norm() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("config.yaml");
        let mut cfg = RunConfig {
            dataset_args: DatasetArgs {
                particles: "p.mrcs".into(),
                norm: vec![0.0, 2.5],
                invert_data: true,
                ind: None,
                keepreal: false,
                window: true,
                window_r: 0.85,
                datadir: None,
                ctf: Some("ctf.pkl".into()),
                poses: Some(PosesArg::Split(vec!["rot.pkl".into(), "trans.pkl".into()])),
                do_pose_sgd: false,
            },
            lattice_args: LatticeArgs { d: 33, extent: 0.5, ignore_dc: true },
            model_args: ModelArgs {
                kind: Some(ModelKind::Homogeneous),
                qlayers: Some(2),
                qdim: Some(64),
                ..Default::default()
            },
            seed: Some(7),
            version: Some("0.1.0".into()),
            cmd: Some(vec!["drgnfly".into(), "train-nn".into()]),
        };
        cfg.write(&path).unwrap();
        let text = std::fs::read_to_string(&path).unwrap();
        assert!(
            text.contains("D: 33") && text.contains("ignore_DC: true") && text.contains("kind: homogeneous"),
            "{text}"
        );
        let back = RunConfig::read(&path).unwrap();
        assert_eq!(back, cfg);
        // Homogeneous: the decoder size comes from qlayers/qdim.
        assert_eq!((back.decoder_config().layers, back.decoder_config().dim), (2, 64));
        assert!(back.encoder_config(10).is_none());
        cfg.dataset_args.norm = vec![0.0, 0.0];
        cfg.write(&path).unwrap();
        let err = RunConfig::read(&path).unwrap_err();
        assert!(format!("{err:#}").contains("dataset_args.norm"), "{err:#}");
    }
}
