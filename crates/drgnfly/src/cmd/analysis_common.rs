//! What the latent-analysis commands share: the training directory (`z.E.pkl`, `weights.E.*`,
//! `config.yaml`, `run.log`), z files given on the command line, index and label files, the mapping of
//! z rows to original particles through the training `--ind`, volume generation (through
//! [`drgnfly_nn::volume::VolumeDecoder`]) that degrades to a note when it cannot run, and contact sheets of
//! the volumes written.

use std::path::{Path, PathBuf};
use std::time::Instant;

use anyhow::{bail, Context, Result};
use drgnfly_analysis::plot::RgbImage;
use drgnfly_analysis::render::{self, RenderOptions, Tile, View, VolumeRef};
use drgnfly_analysis::traversal::parse_z_text;
use drgnfly_io::pickle::{self, ArrayData, NdArray};
use drgnfly_io::selection::Selection;
use drgnfly_nn::config::RunConfig;
use drgnfly_nn::volume::{VolumeDecoder, VolumeRequest};

use crate::progress::Progress;

/// A training output directory and the epoch being analysed (1-based, as in `z.E.pkl`).
pub struct Workdir {
    /// The directory.
    pub dir: PathBuf,
    /// The epoch.
    pub epoch: usize,
}

impl Workdir {
    /// Open `dir` at `epoch`; −1 means the latest epoch with a `z.E.pkl`.
    pub fn open(dir: &Path, epoch: i64) -> Result<Self> {
        if !dir.is_dir() {
            bail!("{}: not a directory; pass the output directory of train-vae", dir.display());
        }
        let epochs = Self::epochs_in(dir)?;
        let epoch = match epoch {
            -1 => *epochs
                .last()
                .with_context(|| format!("{}: holds no z.N.pkl; was training run here?", dir.display()))?,
            e if e >= 1 => e as usize,
            e => bail!("epoch {e}: epochs are numbered from 1 (or −1 for the latest)"),
        };
        let wd = Self { dir: dir.to_path_buf(), epoch };
        if !wd.z_path(epoch).is_file() {
            let have = if epochs.is_empty() {
                "none".to_string()
            } else {
                epochs.iter().map(|e| e.to_string()).collect::<Vec<_>>().join(", ")
            };
            bail!("{}: not found (epochs with latents: {have})", wd.z_path(epoch).display());
        }
        Ok(wd)
    }

    /// Epochs with a `z.E.pkl` in `dir`, ascending.
    fn epochs_in(dir: &Path) -> Result<Vec<usize>> {
        let mut epochs: Vec<usize> = std::fs::read_dir(dir)
            .with_context(|| format!("listing {}", dir.display()))?
            .filter_map(|e| e.ok())
            .filter_map(|e| {
                let name = e.file_name().into_string().ok()?;
                name.strip_prefix("z.")?.strip_suffix(".pkl")?.parse().ok()
            })
            .collect();
        epochs.sort_unstable();
        Ok(epochs)
    }

    /// Epochs with latents, ascending.
    pub fn epochs(&self) -> Result<Vec<usize>> {
        Self::epochs_in(&self.dir)
    }

    /// `z.E.pkl`.
    pub fn z_path(&self, epoch: usize) -> PathBuf {
        self.dir.join(format!("z.{epoch}.pkl"))
    }

    /// The checkpoint of `epoch`: `weights.E.safetensors`, else cryoDRGN's `weights.E.pkl`.
    pub fn weights_path(&self, epoch: usize) -> Option<PathBuf> {
        ["safetensors", "pkl"]
            .iter()
            .map(|ext| self.dir.join(format!("weights.{epoch}.{ext}")))
            .find(|p| p.is_file())
    }

    /// `config.yaml` (cryoDRGN ≥ 3 and drgnfly write YAML; an old `config.pkl` is not read).
    pub fn config_path(&self) -> PathBuf {
        self.dir.join("config.yaml")
    }

    /// `run.log`.
    pub fn run_log(&self) -> PathBuf {
        self.dir.join("run.log")
    }

    /// The latents of `epoch` (z_mu): N×zdim row-major.
    pub fn load_z(&self, epoch: usize) -> Result<(Vec<f32>, usize)> {
        let (z, zdim, _) = pickle::load_latents(self.z_path(epoch))?;
        Ok((z, zdim))
    }

    /// The training config, when the directory has one; one that cannot be read or is not a train-vae /
    /// train-nn config is an error naming the file.
    pub fn config(&self) -> Result<Option<RunConfig>> {
        let path = self.config_path();
        if !path.is_file() {
            return Ok(None);
        }
        let cfg = RunConfig::read(&path).context(
            "the training directory's config.yaml (its dataset_args.ind maps z rows to particles) cannot be \
             used; restore the config.yaml that train-vae wrote there",
        )?;
        Ok(Some(cfg))
    }

    /// The training `--ind` (config `dataset_args.ind`): original particle row of each z row, or `None`
    /// when all particles were used. A relative path is tried as written, then next to the config.
    pub fn dataset_ind(&self, n_z: usize) -> Result<Option<Vec<usize>>> {
        let Some(cfg) = self.config()? else { return Ok(None) };
        let Some(ind) = cfg.dataset_args.ind else { return Ok(None) };
        let path = PathBuf::from(ind);
        let path = if path.is_file() { path } else { self.dir.join(&path) };
        let sel = Selection::load(&path).with_context(|| {
            format!("reading the training --ind named in {}", self.config_path().display())
        })?;
        if sel.len() != n_z {
            bail!(
                "{}: the training --ind lists {} particles but z.{}.pkl holds {n_z}; was the config edited?",
                path.display(),
                sel.len(),
                self.epoch
            );
        }
        let rows = sel.resolve(usize::MAX)?;
        Ok(Some(rows))
    }

    /// Pixel size for volume headers, as cryoDRGN's `analyze`: `--Apix`, else the ctf.pkl named in the
    /// config (Apix₀·D₀/D with D the trained box), else `None` (1 Å/px).
    pub fn apix(&self, given: Option<f32>) -> Result<Option<f32>> {
        if given.is_some() {
            return Ok(given);
        }
        let Some(cfg) = self.config()? else { return Ok(None) };
        let Some(ctf) = &cfg.dataset_args.ctf else { return Ok(None) };
        let path = PathBuf::from(ctf);
        let path = if path.is_file() { path } else { self.dir.join(path) };
        // No silent fallback: say which file failed and what the maps get instead.
        let fallback = |why: String| {
            tracing::warn!("{why}; the maps get 1 Å/px in their headers (pass --Apix to set the pixel size)");
            Ok(None)
        };
        let rows = match pickle::load_ctf(&path) {
            Ok(rows) => rows,
            Err(e) => return fallback(format!("pixel size from the run's ctf.pkl (dataset_args.ctf): {e}")),
        };
        let apix = rows.first().map(|row| row[1] * row[0] / cfg.image_size() as f32);
        match apix {
            Some(a) if a.is_finite() && a > 0.0 => Ok(Some(a)),
            _ => fallback(format!("{}: no usable box and pixel size in its first row", path.display())),
        }
    }
}

/// A z file given on the command line: a `z.N.pkl` (z_mu), any 2D array pickle, or np.savetxt text.
/// Returns N×zdim row-major values and zdim.
pub fn load_zfile(path: &Path) -> Result<(Vec<f32>, usize)> {
    let is_pickle = matches!(path.extension().and_then(|e| e.to_str()), Some("pkl" | "pickle"));
    if is_pickle {
        let (z, zdim, _) = pickle::load_latents(path)?;
        return Ok((z, zdim));
    }
    let text = drgnfly_io::input::read_text(path, "z values (.txt)")?;
    parse_z_text(&text).with_context(|| format!("{}: not a z-values text file", path.display()))
}

/// Integer labels from a `.pkl` (cryoDRGN's `labels.pkl`) or a text file of integers.
pub fn load_labels(path: &Path) -> Result<Vec<u32>> {
    let sel = Selection::load(path).with_context(|| format!("reading labels from {}", path.display()))?;
    sel.indices()
        .iter()
        .enumerate()
        .map(|(i, &l)| {
            u32::try_from(l)
                .with_context(|| format!("{}: entry {i} is {l}; labels must be integers ≥ 0", path.display()))
        })
        .collect()
}

/// Write labels as an int64 (N,) pickle, as cryoDRGN's `kmeans*/labels.pkl`.
pub fn write_labels(path: &Path, labels: &[u32]) -> Result<()> {
    let data = labels.iter().map(|&l| i64::from(l)).collect();
    pickle::write_array(path, &NdArray::new(vec![labels.len()], ArrayData::I64(data)))?;
    Ok(())
}

/// Indices as numpy `savetxt(fmt='%d')` writes them: one per line.
pub fn format_indices(indices: &[usize]) -> String {
    indices.iter().map(|i| format!("{i}\n")).collect()
}

/// Write a text file atomically.
pub fn write_text(path: &Path, text: &str) -> Result<()> {
    drgnfly_io::atomic::write_atomic(path, text.as_bytes())?;
    Ok(())
}

/// Map positions in the trained set through the training `--ind` to original particle rows.
pub fn to_original(rows: &[usize], ind: Option<&[usize]>) -> Result<Vec<usize>> {
    match ind {
        None => Ok(rows.to_vec()),
        Some(ind) => rows
            .iter()
            .map(|&r| {
                ind.get(r).copied().with_context(|| {
                    format!("row {r} is outside the {} particles of the training --ind", ind.len())
                })
            })
            .collect(),
    }
}

/// Timed steps of a long command, reported on stderr.
pub struct Steps {
    name: &'static str,
    start: Instant,
}

impl Steps {
    /// Start timing a command.
    pub fn new(name: &'static str) -> Self {
        Self { name, start: Instant::now() }
    }

    /// Run `f` as a named step and report it with its duration.
    pub fn run<T>(&self, what: &str, f: impl FnOnce() -> Result<T>) -> Result<T> {
        let t = Instant::now();
        say!("[{}] {what} …", self.name);
        let out = f()?;
        say!("[{}] {what}: done in {:.1} s", self.name, t.elapsed().as_secs_f64());
        Ok(out)
    }

    /// A message.
    pub fn note(&self, msg: &str) {
        say!("[{}] {msg}", self.name);
    }

    /// Seconds since the command started.
    pub fn elapsed_s(&self) -> f64 {
        self.start.elapsed().as_secs_f64()
    }
}

/// Volume generation that stops trying after the first failure: analysis goes on without volumes and
/// says why.
pub struct VolumeMaker {
    weights: Option<PathBuf>,
    config: PathBuf,
    request: VolumeRequest,
    /// Why volumes are not generated (`--skip-vol`, no checkpoint, or the first error).
    pub skipped: Option<String>,
    /// Whether generation was tried and failed (the command then fails once its other outputs are written).
    pub failed: bool,
}

impl VolumeMaker {
    /// Volumes from `workdir`'s checkpoint of `epoch`, or none when `skip` (`--skip-vol`).
    pub fn new(workdir: &Workdir, epoch: usize, request: VolumeRequest, skip: bool) -> Self {
        let weights = workdir.weights_path(epoch);
        let skipped = if skip {
            Some("--skip-vol was given".to_string())
        } else if weights.is_none() {
            Some(format!("no weights.{epoch}.safetensors (or .pkl) in {}", workdir.dir.display()))
        } else {
            None
        };
        Self { weights, config: workdir.config_path(), request, skipped, failed: false }
    }

    /// Switch to another epoch's checkpoint (`analyze-convergence`).
    pub fn set_epoch(&mut self, workdir: &Workdir, epoch: usize) {
        self.weights = workdir.weights_path(epoch);
    }

    /// Write `out_dir/vol_001.mrc…` for the rows of `z`; `None` when volumes are skipped or generation
    /// fails (the reason is kept in `skipped` and reported once).
    pub fn make(&mut self, z: &[f32], zdim: usize, out_dir: &Path) -> Option<Vec<PathBuf>> {
        if self.skipped.is_some() {
            return None;
        }
        let Some(weights) = &self.weights else {
            say!("warning: no checkpoint for these volumes; skipping {}", out_dir.display());
            return None;
        };
        match generate_volumes(weights, &self.config, z, zdim, out_dir, "vol_", &self.request) {
            Ok(paths) => Some(paths),
            Err(e) => {
                let why = format!("volume generation failed: {e:#}");
                say!("warning: {why}; continuing without volumes");
                self.skipped = Some(why);
                self.failed = true;
                None
            }
        }
    }
}

/// Decode one volume per row of `z` (N × zdim; empty with zdim 0 for homogeneous models) from the checkpoint
/// `weights` and its `config`, writing `out_dir/{prefix}{i:03}.mrc` with i from 1. Returns the paths written.
fn generate_volumes(
    weights: &Path,
    config: &Path,
    z: &[f32],
    zdim: usize,
    out_dir: &Path,
    prefix: &str,
    request: &VolumeRequest,
) -> Result<Vec<PathBuf>> {
    let model = VolumeDecoder::load(weights, config)?;
    if let Some(warning) = model.pixel_size_source().warning() {
        tracing::warn!("{warning}");
    }
    if zdim != model.zdim() {
        bail!(
            "latents have {zdim} dimensions but the model in {} has zdim {}",
            weights.display(),
            model.zdim()
        );
    }
    if zdim > 0 && (z.is_empty() || !z.len().is_multiple_of(zdim)) {
        bail!("{} latent values do not form rows of zdim {zdim}", z.len());
    }
    let empty: &[f32] = &[];
    let rows: Vec<&[f32]> = if zdim == 0 { vec![empty] } else { z.chunks_exact(zdim).collect() };
    std::fs::create_dir_all(out_dir).with_context(|| format!("cannot create {}", out_dir.display()))?;
    let mut progress = Progress::new("volumes", rows.len() as u64, "volumes");
    let mut written = Vec::with_capacity(rows.len());
    for (i, row) in rows.iter().enumerate() {
        let path = out_dir.join(format!("{prefix}{:03}.mrc", i + 1));
        model.volume(row, request)?.write(&path)?;
        written.push(path);
        progress.inc(1);
    }
    progress.finish();
    Ok(written)
}

/// Contact sheets of volumes: shaded isosurfaces (three-quarter view) and central slices, captioned
/// with the file stems. `colors` gives each map's surface colour (ChimeraX's per-class colours).
pub fn volume_sheets(
    paths: &[PathBuf],
    colors: Option<&[[u8; 3]]>,
    title: &str,
) -> Result<(RgbImage, RgbImage)> {
    let maps = paths
        .iter()
        .map(|p| drgnfly_io::mrc::read_volume(p).with_context(|| format!("reading {}", p.display())))
        .collect::<Result<Vec<_>>>()?;
    let vols = maps.iter().map(|m| VolumeRef::new(&m.data, m.shape)).collect::<Result<Vec<_>, _>>()?;
    let captions: Vec<String> = paths
        .iter()
        .map(|p| p.file_stem().map_or(String::new(), |s| s.to_string_lossy().into_owned()))
        .collect();
    let opts = RenderOptions { size: 192, views: vec![View::ThreeQuarter], ..RenderOptions::default() };
    let tiles = render::render_tiles(&vols, &captions, colors, &opts)?;
    let columns = (paths.len() as f64).sqrt().ceil() as usize;
    let renders = render::contact_sheet(&tiles, columns.max(1), Some(title))?;
    let slice_tiles = vols
        .iter()
        .zip(&captions)
        .map(|(v, c)| {
            Ok(Tile { image: render::slices_and_projections(v)?.downsample(2), caption: c.clone() })
        })
        .collect::<Result<Vec<_>>>()?;
    let slices = render::contact_sheet(&slice_tiles, columns.clamp(1, 4), Some(title))?;
    Ok((renders, slices))
}
