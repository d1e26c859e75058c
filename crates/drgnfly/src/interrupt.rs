//! Clean interrupts of training: the first SIGINT (Ctrl-C) or SIGTERM (a scheduler's kill) asks the run to
//! stop after the batch in progress; a second one ends the process at once, as usual. The run then says
//! which checkpoint to resume from and exits with 128 + the signal number (130, 143), as shells expect.

use std::sync::atomic::{AtomicI32, Ordering};

/// The signal received, or 0.
static RECEIVED: AtomicI32 = AtomicI32::new(0);

extern "C" fn on_signal(sig: libc::c_int) {
    // Only async-signal-safe work here: remember the signal, and let the next one act by default.
    RECEIVED.store(sig, Ordering::SeqCst);
    // SAFETY: `signal` is async-signal-safe (POSIX), and SIG_DFL is a valid disposition.
    unsafe {
        libc::signal(sig, libc::SIG_DFL);
    }
}

/// Catch SIGINT and SIGTERM for the rest of the process.
pub fn install() {
    for sig in [libc::SIGINT, libc::SIGTERM] {
        // SAFETY: `on_signal` has the handler signature `signal` expects and only touches an atomic.
        unsafe {
            libc::signal(sig, on_signal as extern "C" fn(libc::c_int) as libc::sighandler_t);
        }
    }
}

/// The signal that asked to stop, if any.
pub fn requested() -> Option<i32> {
    match RECEIVED.load(Ordering::SeqCst) {
        0 => None,
        sig => Some(sig),
    }
}
