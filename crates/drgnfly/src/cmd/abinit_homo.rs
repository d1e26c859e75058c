//! `abinit-homo`: homogeneous ab initio reconstruction without poses (cryoDRGN2's `abinit_homo`, now
//! `abinit_homo_old` in cryoDRGN): a coordinate decoder trained on poses it finds itself by hierarchical pose
//! search with frequency marching (`drgnfly_nn::train::AbinitHomoTrainer` in the library driver).
//!
//! Pretraining on `--pretrain` images at random poses; in epochs 1, 1 + `--ps-freq`, … each batch's poses are
//! searched against the current map before the decoder trains on them (the map is decoded again every
//! `--search-refresh` images), with the band limit ramping from `--l-start` to `--l-end` over
//! `--l-ramp-epochs`; the epochs in between train on the poses found last. Per checkpoint: `weights.E.safetensors` (decoder, optimizer, pose
//! table), `reconstruct.E.mrc` and `pose.E.pkl` (rotation matrices, translations as fractions of the box, as
//! cryoDRGN writes them). run.log gets a line per search epoch: band limit, images/s and how far the poses moved.
//! The map's hand is arbitrary, as in any ab initio reconstruction (`drgnfly flip-hand` mirrors it).
//! `--load` also takes a `train-nn` checkpoint of the same decoder (copied into the output directory for
//! `latest`): it has no poses, so the next search starts from that map.
//!
//! Example usage:
//!   drgnfly abinit-homo particles.mrcs --ctf ctf.pkl -o out/ -n 30

use anyhow::{bail, Result};
use clap::{Args as ClapArgs, ValueEnum};
use drgnfly_em::search::{PoseSearch, SearchConfig, SearchLoss};
use drgnfly_nn::config::{ModelArgs, ModelKind};
use drgnfly_nn::train::{AbinitHomoTrainer, AbinitSchedule, EncoderInput};
use drgnfly_nn::DataNorm;

use super::train_common::{
    check_training_memory, fit_decoder, map_apix, run_config, DataArgs, DecoderArgs, MapOutput, RunSetup,
    TrainArgs,
};

/// Reconstruct a homogeneous map and the particles' poses from the images alone.
#[derive(ClapArgs, Debug)]
#[command(after_help = "Examples:\n  drgnfly abinit-homo particles.mrcs --ctf ctf.pkl -o out/\n  \
                  drgnfly abinit-homo particles.star --ctf ctf.pkl -n 30 --l-end 24 -o out/ --load latest")]
pub struct Args {
    #[command(flatten)]
    pub data: DataArgs,
    #[command(flatten)]
    pub train: TrainArgs,
    /// Decoder hidden layers.
    #[arg(long, default_value_t = 3)]
    pub layers: usize,
    /// Decoder width.
    #[arg(long, default_value_t = 256)]
    pub dim: usize,
    #[command(flatten)]
    pub decoder: DecoderArgs,
    #[command(flatten)]
    pub search: SearchArgs,
}

/// The ab initio schedule of `abinit-homo` and `abinit-het` (cryoDRGN2's names and defaults).
#[derive(ClapArgs, Debug)]
pub struct SearchArgs {
    /// Images of pretraining at random poses before the first search.
    #[arg(long, default_value_t = 10_000)]
    pub pretrain: usize,
    /// Search poses in every N-th epoch (epochs 1, 1 + N, …; each batch just before training on it).
    #[arg(long, default_value_t = 5, value_name = "N")]
    pub ps_freq: usize,
    /// Epochs over which the band limit grows from --l-start to --l-end [default: 25 for abinit-homo; 0,
    /// no ramp, for abinit-het, as cryoDRGN].
    #[arg(long)]
    pub l_ramp_epochs: Option<usize>,
    #[command(flatten)]
    pub grid: SearchGridArgs,
}

/// The maps a heterogeneous search compares each image to (`abinit-het`, `abinit`).
#[derive(ClapArgs, Debug)]
pub struct ConformationSearchArgs {
    /// Conformations the search compares images to: the decoder's maps at this many k-means centres of
    /// the latents (abinit: of the conformation table), each image against the nearest. More follow a
    /// continuous motion more closely; each costs one map decoding per refresh and ~10–20 MB.
    #[arg(long, default_value_t = 4, value_name = "K")]
    pub search_conformations: usize,
    /// From epoch EPOCH (1 when given bare), search each image against every conformation's map and keep
    /// the best match, not only against the map nearest its latent: an image whose latent sits in the
    /// wrong state can then find its pose (and so its state). Costs one base search per map. abinit-het:
    /// worth it for the last search epochs (--search-all-conformations=7 in a run of 8). abinit: from the
    /// start with ~10 search epochs, or a state the random conformation table does not separate early is
    /// lost.
    #[arg(long, value_name = "EPOCH", num_args = 0..=1, require_equals = true, default_missing_value = "1")]
    pub search_all_conformations: Option<usize>,
}

/// The pose search's flags, shared by every ab initio command (cryoDRGN's names and defaults).
#[derive(ClapArgs, Debug)]
pub struct SearchGridArgs {
    /// Band limit of the searches at the start (Fourier radius in pixels).
    #[arg(long, default_value_t = 12)]
    pub l_start: usize,
    /// Band limit at the end of the ramp.
    #[arg(long, default_value_t = 32)]
    pub l_end: usize,
    /// Refinement iterations of each search (each halves the angular and shift steps).
    #[arg(long, default_value_t = 4)]
    pub niter: usize,
    /// Poses kept per image between iterations.
    #[arg(long, default_value_t = 8)]
    pub nkeptposes: usize,
    /// HEALPix order of the base rotation grid (1: 576 rotations, 2: 4608).
    #[arg(long, default_value_t = 2)]
    pub base_healpy: u32,
    /// Half-width of the shift search in pixels [default: 10; 20 for abinit, as cryoDRGN].
    #[arg(long)]
    pub t_extent: Option<f64>,
    /// Shifts per axis of the base shift grid.
    #[arg(long, default_value_t = 7)]
    pub t_ngrid: usize,
    /// Do not search shifts (particles are centred).
    #[arg(long)]
    pub no_trans: bool,
    /// Score of a pose.
    #[arg(long, value_enum, default_value_t = LossArg::Msf)]
    pub search_loss: LossArg,
    /// Images searched between two decodings of the map(s) the search compares them to (smaller: the
    /// search follows the training more closely, at the cost of decoding more often).
    #[arg(long, default_value_t = 256, value_name = "N")]
    pub search_refresh: usize,
    /// Most memory the pose search holds, in MB: its map(s), their slices at the base rotations, and the
    /// refinement slices of a chunk of images, whose size is chosen to fit (the batch size does not
    /// matter) [default: a quarter of the free memory, at most 2048].
    #[arg(long, value_name = "MB")]
    pub max_search_memory: Option<u64>,
}

impl SearchArgs {
    /// The schedule, with `l_ramp_default` epochs of band-limit ramp unless --l-ramp-epochs is given.
    pub fn schedule(&self, l_ramp_default: usize) -> AbinitSchedule {
        AbinitSchedule {
            pretrain_images: self.pretrain,
            ps_freq: self.ps_freq.max(1),
            l_ramp_epochs: self.l_ramp_epochs.unwrap_or(l_ramp_default),
            ..self.grid.schedule(10.0)
        }
    }

    /// The schedule for run.log's header.
    pub fn describe(&self, schedule: &AbinitSchedule) -> String {
        format!(
            "pretrain {}, search every {} epochs, band limit {}→{} over {} epochs",
            self.pretrain, schedule.ps_freq, schedule.l_start, schedule.l_end, schedule.l_ramp_epochs
        )
    }
}

impl SearchGridArgs {
    /// A schedule with these search settings (shift half-width `t_extent_default` unless --t-extent),
    /// searching every epoch at `l_end` after no pretraining: the caller sets the rest.
    pub fn schedule(&self, t_extent_default: f64) -> AbinitSchedule {
        let search = SearchConfig {
            base_resolution: self.base_healpy,
            niter: self.niter,
            t_extent: self.t_extent.unwrap_or(t_extent_default),
            t_ngrid: self.t_ngrid,
            translate: !self.no_trans,
            nkeptposes: self.nkeptposes,
            loss: match self.search_loss {
                LossArg::Msf => SearchLoss::Msf,
                LossArg::Mse => SearchLoss::Mse,
                LossArg::Cor => SearchLoss::Cor,
            },
            ..SearchConfig::default()
        };
        AbinitSchedule {
            pretrain_images: 0,
            ps_freq: 1,
            l_start: self.l_start,
            l_end: self.l_end.max(self.l_start),
            l_ramp_epochs: 0,
            search,
            refresh_images: self.search_refresh.max(1),
            every_map_from: None,
        }
    }

    /// Sizes the search's chunk of images so that `maps` maps of images of side `d` and the chunk's
    /// refinement slices (against every map at once when `schedule` searches every map) fit in
    /// `--max-search-memory`; returns the estimate for run.log. Errors when the maps alone do not fit.
    pub fn fit_search_memory(&self, schedule: &mut AbinitSchedule, d: usize, maps: usize) -> Result<String> {
        const DEFAULT_CAP: u64 = 2048 << 20;
        let budget = match self.max_search_memory {
            Some(mb) => mb.saturating_mul(1 << 20),
            None => drgnfly_io::memory::available_bytes().map_or(DEFAULT_CAP, |a| (a / 4).min(DEFAULT_CAP)),
        };
        let widest =
            SearchConfig { l_min: schedule.l_start, l_max: schedule.l_end, ..schedule.search.clone() };
        let search = PoseSearch::new(d, widest)?;
        let map_bytes = ((d + 1).pow(3) * 4 + search.base_slice_bytes()) as u64;
        let fixed = search.table_bytes() as u64 + maps as u64 * map_bytes;
        // Only an every-map search refines against several maps at once.
        let at_once = if schedule.every_map_from.is_some() { maps } else { 1 };
        let per_image = search.refinement_bytes_per_image(at_once).max(1) as u64;
        let human = drgnfly_io::memory::human_bytes;
        if fixed + per_image > budget {
            bail!(
                "the pose search needs {} for {maps} map(s) of {d}³ and their base slices, more than the {} \
                 allowed; raise --max-search-memory, or lower --search-conformations or --base-healpy",
                human(fixed + per_image),
                human(budget)
            );
        }
        let preferred = (2 * rayon::current_num_threads()).max(MIN_CHUNK_IMAGES) as u64;
        let chunk = ((budget - fixed) / per_image).clamp(1, preferred) as usize;
        schedule.search.chunk_images = chunk;
        Ok(format!(
            "search memory {} ({maps} map(s), chunks of {chunk} images)",
            human(fixed + chunk as u64 * per_image)
        ))
    }
}

/// Images searched at once when memory allows: two per thread (the images of a chunk are searched in
/// parallel), at least this many. More gain nothing (the maps are sliced by interpolation, not predicted
/// in batches) and would make memory grow with the batch size up to the chunk.
const MIN_CHUNK_IMAGES: usize = 8;

/// `--search-loss`.
#[derive(ValueEnum, Clone, Copy, Debug, PartialEq, Eq)]
pub enum LossArg {
    /// −⟨y, ŷ⟩ + ½‖ŷ‖² (cryoDRGN's default).
    Msf,
    /// ‖y − ŷ‖².
    Mse,
    /// Correlation.
    Cor,
}

/// Reconstruct.
pub fn run(args: Args) -> Result<()> {
    let t = &args.train;
    let _lock = t.validate()?;
    let data = args.data.open(&[])?;
    let (n, d) = (data.len(), data.image_size());
    let RunSetup { norm, prep, dec, precision, seed } =
        RunSetup::new((&args.data, t), &data, EncoderInput::None, &args.decoder, (0, args.layers, args.dim))?;
    let adam = t.adam();
    let mut schedule = args.search.schedule(25);
    schedule.search.mixed_precision = dec.mixed_precision;
    let memory = args.search.grid.fit_search_memory(&mut schedule, d, 1)?;
    let describe = format!("{}, {memory}", args.search.describe(&schedule));
    let mut trainer = AbinitHomoTrainer::new(&dec, seed, adam, prep, n, schedule)?;
    check_training_memory(trainer.store().num_params(), &dec, t.batch_size.min(n), d)?;
    let apix = map_apix(&data, &args.data.particles);
    let model_args = ModelArgs::decoder_only(ModelKind::AbinitHomo, &dec);
    let config = run_config(args.data.dataset_args(norm, &[]), d, model_args, seed);
    let summary = format!(
        "# {n} particles of {d}×{d}, norm [{}, {}], {} parameters, seed {seed}, precision {precision}; ab initio \
         ({describe})",
        norm.mean,
        norm.std,
        trainer.store().num_params(),
    );
    let map = MapOutput { norm: DataNorm { mean: norm.mean, std: norm.std }, d, apix };
    fit_decoder(t, &data, &mut trainer, (&config, &summary, seed), map, AbinitHomoTrainer::decoder)
}
