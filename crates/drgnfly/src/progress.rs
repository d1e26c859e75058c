//! User-facing progress on stderr: a bar with ETA on a terminal, plain periodic lines otherwise (so log
//! files do not fill with redraws).

use std::io::IsTerminal;
use std::time::{Duration, Instant};

use indicatif::{ProgressBar, ProgressDrawTarget, ProgressStyle};

/// Progress over a known number of items (images, volumes, epochs).
pub struct Progress {
    bar: ProgressBar,
    label: String,
    total: u64,
    done: u64,
    start: Instant,
    last_line: Instant,
    tty: bool,
}

impl Progress {
    /// Start progress for `total` items of `unit` (e.g. "images").
    pub fn new(label: &str, total: u64, unit: &str) -> Self {
        // Off rank 0 of a data-parallel run: hidden (and its periodic lines go through the quiet say!).
        let tty = crate::cluster::is_root() && std::io::stderr().is_terminal();
        let bar = if tty {
            let bar = ProgressBar::with_draw_target(Some(total), ProgressDrawTarget::stderr());
            let template =
                format!("{{msg}} [{{bar:30}}] {{human_pos}}/{{human_len}} {unit} ({{per_sec}}, ETA {{eta}})");
            if let Ok(style) = ProgressStyle::with_template(&template) {
                bar.set_style(style.progress_chars("=> "));
            }
            bar.set_message(label.to_string());
            bar
        } else {
            ProgressBar::hidden()
        };
        let now = Instant::now();
        Self { bar, label: label.to_string(), total, done: 0, start: now, last_line: now, tty }
    }

    /// Record `n` more items done.
    pub fn inc(&mut self, n: u64) {
        self.done += n;
        self.bar.inc(n);
        if !self.tty && self.last_line.elapsed() >= Duration::from_secs(10) {
            self.last_line = Instant::now();
            let secs = self.start.elapsed().as_secs_f64();
            let rate = self.done as f64 / secs.max(1e-9);
            let eta = (self.total.saturating_sub(self.done)) as f64 / rate.max(1e-9);
            say!("{}: {}/{} ({:.0}/s, ETA {:.0}s)", self.label, self.done, self.total, rate, eta);
        }
    }

    /// Finish and return the elapsed time.
    pub fn finish(self) -> Duration {
        self.bar.finish_and_clear();
        self.start.elapsed()
    }
}
