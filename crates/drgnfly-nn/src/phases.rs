//! Where a training epoch's time goes, phase by phase (`--timings`): data loading, batch preparation,
//! forward and backward passes (and within them the decoder network), the optimizer step.
//!
//! Off by default; when on, each timed section adds its wall time to a process-wide counter, read and
//! reset once per epoch. candle's CPU ops are synchronous, so wall time around a call is the call's time;
//! on the GPU, sections that only queue kernels show less than they cost (the wait lands in the next
//! section that reads a result back).

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// A timed section of a training step.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Phase {
    /// Waiting for the next batch of images from the reader.
    Load,
    /// Batch preparation: Hartley transform, normalization, translation, CTF, rotated lattice.
    Prepare,
    /// The forward pass of the model and the loss.
    Forward,
    /// The decoder network's forward pass (inside [`Phase::Forward`]; fused CPU op only).
    DecoderForward,
    /// The backward pass.
    Backward,
    /// The decoder network's backward pass (inside [`Phase::Backward`]; fused CPU op only).
    DecoderBackward,
    /// Gradient exchange between processes and the optimizer step.
    Optimizer,
    /// A whole step of the trainer (everything above but loading).
    Step,
}

const PHASES: usize = 8;
static ENABLED: AtomicBool = AtomicBool::new(false);
static TOTALS: Counters = Counters::new();

/// Nanoseconds per phase.
struct Counters([AtomicU64; PHASES]);

impl Counters {
    const fn new() -> Self {
        Counters([const { AtomicU64::new(0) }; PHASES])
    }

    fn add(&self, phase: Phase, d: Duration) {
        let ns = u64::try_from(d.as_nanos()).unwrap_or(u64::MAX);
        self.0[phase as usize].fetch_add(ns, Ordering::Relaxed);
    }

    /// Seconds per phase since the last call, which resets them.
    fn take(&self) -> [f64; PHASES] {
        std::array::from_fn(|i| self.0[i].swap(0, Ordering::Relaxed) as f64 * 1e-9)
    }
}

/// Start timing phases (for the rest of the process).
pub fn enable() {
    ENABLED.store(true, Ordering::Relaxed);
}

/// Whether phases are timed.
pub fn enabled() -> bool {
    ENABLED.load(Ordering::Relaxed)
}

/// Run `f`, adding its wall time to `phase` when timing is on.
pub fn time<T>(phase: Phase, f: impl FnOnce() -> T) -> T {
    if !enabled() {
        return f();
    }
    let start = Instant::now();
    let out = f();
    TOTALS.add(phase, start.elapsed());
    out
}

/// One line for a run log: an epoch of `total` seconds split into phases (with shares of the total), or
/// `None` when timing is off. Resets the counters.
pub fn report(total: f64) -> Option<String> {
    enabled().then(|| format_report(&TOTALS.take(), total))
}

fn format_report(t: &[f64; PHASES], total: f64) -> String {
    let s = |p: Phase| t[p as usize];
    let (fwd, bwd, opt) = (s(Phase::Forward), s(Phase::Backward), s(Phase::Optimizer));
    let other = (s(Phase::Step) - s(Phase::Prepare) - fwd - bwd - opt).max(0.0);
    let outside = (total - s(Phase::Load) - s(Phase::Step)).max(0.0);
    let part = |name: &str, x: f64| format!("{name} {x:.2} s ({:.0}%)", 100.0 * x / total.max(1e-9));
    format!(
        "# time per phase: {}, {}, {} (decoder network {:.2} s), {} (decoder network {:.2} s), {}, {}, {}",
        part("loading", s(Phase::Load)),
        part("preparation", s(Phase::Prepare)),
        part("forward", fwd),
        s(Phase::DecoderForward),
        part("backward", bwd),
        s(Phase::DecoderBackward),
        part("optimizer", opt),
        part("other step work", other),
        part("outside steps", outside),
    )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sections_add_up_per_phase_and_reset() {
        // Counters of their own: tests running beside this one may time sections of the global ones.
        let c = Counters::new();
        c.add(Phase::Step, Duration::from_millis(41));
        c.add(Phase::Forward, Duration::from_millis(20));
        c.add(Phase::Forward, Duration::from_millis(5));
        c.add(Phase::Optimizer, Duration::from_millis(10));
        let t = c.take();
        assert!((t[Phase::Forward as usize] - 0.025).abs() < 1e-9, "{t:?}");
        assert_eq!(c.take(), [0.0; PHASES], "take resets");
        let line = format_report(&t, 0.1);
        assert_eq!(
            line,
            "# time per phase: loading 0.00 s (0%), preparation 0.00 s (0%), forward 0.03 s (25%) (decoder \
             network 0.00 s), backward 0.00 s (0%) (decoder network 0.00 s), optimizer 0.01 s (10%), other \
             step work 0.01 s (6%), outside steps 0.06 s (59%)"
        );
        // Off unless asked for: `time` only runs the section.
        if !enabled() {
            assert_eq!(time(Phase::Load, || 7), 7);
            assert!(report(1.0).is_none());
        }
    }
}
