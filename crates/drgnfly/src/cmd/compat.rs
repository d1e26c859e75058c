//! cryoDRGN flags that drgnfly accepts so that existing job scripts keep working, although drgnfly needs no
//! such setting or does the thing another way. Using one prints a one-line note saying what drgnfly does
//! instead; nothing about the run changes. Flags whose meaning drgnfly cannot honour are errors elsewhere,
//! never silently ignored.

use clap::Args as ClapArgs;

/// Data loading and device flags of cryoDRGN's training commands.
#[derive(ClapArgs, Debug, Clone, Default)]
#[command(next_help_heading = "Accepted for cryoDRGN job scripts (no effect; a note says why)")]
pub struct TrainingCompat {
    /// cryoDRGN: load images lazily. drgnfly always streams them from disk in shuffled chunks.
    #[arg(long)]
    pub lazy: bool,
    /// cryoDRGN: size of the lazy-loading shuffle buffer. drgnfly shuffles by chunks, in bounded memory.
    #[arg(long, value_name = "N")]
    pub shuffler_size: Option<usize>,
    /// cryoDRGN: seed of that shuffler. drgnfly's shuffling follows --seed.
    #[arg(long, value_name = "N")]
    pub shuffle_seed: Option<u64>,
    /// cryoDRGN: data-loading worker processes. drgnfly reads ahead on one thread.
    #[arg(long, value_name = "N")]
    pub num_workers: Option<usize>,
    /// cryoDRGN: CPU cores for data loading. drgnfly reads ahead on one thread; --threads sets the compute
    /// threads.
    #[arg(long, value_name = "N")]
    pub max_threads: Option<usize>,
    /// cryoDRGN: log every N images. drgnfly shows a live progress bar and one line per epoch.
    #[arg(long, value_name = "N")]
    pub log_interval: Option<u64>,
    /// cryoDRGN: train on every GPU of the node. drgnfly trains on one device (--device).
    #[arg(long)]
    pub multigpu: bool,
}

impl TrainingCompat {
    /// A note for each flag that was given.
    pub fn notes(&self) -> Vec<String> {
        let mut notes = Vec::new();
        let mut note = |given: bool, text: &str| {
            if given {
                notes.push(text.to_string());
            }
        };
        note(self.lazy, "--lazy: drgnfly always streams particles from disk; nothing to change");
        note(
            self.shuffler_size.is_some(),
            "--shuffler-size: drgnfly shuffles by chunks while streaming, in bounded memory; ignored",
        );
        note(
            self.shuffle_seed.is_some(),
            "--shuffle-seed: the order of the particles follows --seed; ignored",
        );
        note(self.num_workers.is_some(), "--num-workers: drgnfly reads ahead on one thread; ignored");
        note(
            self.max_threads.is_some(),
            "--max-threads: drgnfly reads ahead on one thread (compute threads: --threads); ignored",
        );
        note(
            self.log_interval.is_some(),
            "--log-interval: drgnfly shows a progress bar and writes one line per epoch to run.log; ignored",
        );
        note(
            self.multigpu,
            "--multigpu: drgnfly trains on one device (--device cuda for a GPU build); ignored",
        );
        notes
    }
}

/// `--device N` of cryoDRGN's analysis commands (a CUDA device index).
#[derive(ClapArgs, Debug, Clone, Default)]
#[command(next_help_heading = "Accepted for cryoDRGN job scripts (no effect; a note says why)")]
pub struct DeviceCompat {
    /// cryoDRGN: CUDA device index. drgnfly generates volumes on the CPU here.
    #[arg(long = "device", value_name = "N")]
    pub device: Option<i64>,
}

impl DeviceCompat {
    /// The note, if the flag was given.
    pub fn note(&self) -> Option<String> {
        self.device.map(|d| format!("--device {d}: drgnfly generates these volumes on the CPU; ignored"))
    }
}

/// Log each note of an accepted cryoDRGN flag.
pub fn log_notes(notes: impl IntoIterator<Item = String>) {
    for n in notes {
        tracing::info!("note: {n}");
    }
}

/// cryoDRGN `train_vae` flags for models drgnfly does not have: accepted by the parser so that the error
/// can say what to do, rather than "unexpected argument".
#[derive(ClapArgs, Debug, Clone, Default)]
pub struct UnsupportedVaeFlags {
    /// cryoDRGN: encode real-space images. Not available (an error says so).
    #[arg(long, hide = true)]
    pub use_real: bool,
    /// cryoDRGN-ET: tilts per particle. Not available.
    #[arg(long, hide = true, value_name = "N")]
    pub ntilts: Option<usize>,
    /// cryoDRGN-ET: random tilt subsets. Not available.
    #[arg(long, hide = true)]
    pub random_tilts: bool,
    /// cryoDRGN-ET: tilt embedding width. Not available.
    #[arg(long, hide = true, value_name = "N")]
    pub t_emb_dim: Option<usize>,
    /// cryoDRGN-ET: tilt encoder layers. Not available.
    #[arg(long, hide = true, value_name = "N")]
    pub tlayers: Option<usize>,
    /// cryoDRGN-ET: tilt encoder width. Not available.
    #[arg(long, hide = true, value_name = "N")]
    pub tdim: Option<usize>,
    /// cryoDRGN-ET: electron dose per tilt. Not available.
    #[arg(long, hide = true, value_name = "E/Å²")]
    pub dose_per_tilt: Option<f64>,
    /// cryoDRGN-ET: angle between tilts. Not available.
    #[arg(long, hide = true, value_name = "DEG")]
    pub angle_per_tilt: Option<f64>,
}

impl UnsupportedVaeFlags {
    /// An error naming the first flag given, with what to do instead.
    pub fn check(&self) -> anyhow::Result<()> {
        if self.use_real {
            anyhow::bail!(
                "--use-real (an encoder on real-space images) is not available in drgnfly; drop it to use \
                 cryoDRGN's default Fourier-space encoder"
            );
        }
        let tilt = [
            ("--ntilts", self.ntilts.is_some()),
            ("--random-tilts", self.random_tilts),
            ("--t-emb-dim", self.t_emb_dim.is_some()),
            ("--tlayers", self.tlayers.is_some()),
            ("--tdim", self.tdim.is_some()),
            ("--dose-per-tilt", self.dose_per_tilt.is_some()),
            ("--angle-per-tilt", self.angle_per_tilt.is_some()),
        ];
        if let Some((flag, _)) = tilt.iter().find(|(_, given)| *given) {
            anyhow::bail!(
                "{flag}: tilt-series (cryoDRGN-ET) training is not available in drgnfly; for subtomogram \
                 particles use cryoDRGN-ET, for single-particle images drop the tilt flags"
            );
        }
        Ok(())
    }
}
