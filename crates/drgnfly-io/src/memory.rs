//! How much memory this process may still allocate, so that a size from the user or a file (a box size,
//! a particle count, a layer width) is checked before the allocation that would abort the process.
//!
//! Rust aborts on a failed allocation (exit 134, no message a user can act on); every large buffer sized
//! from input is therefore estimated first and compared with [`available_bytes`]: the smaller of the
//! system's `MemAvailable` plus free swap and the address-space headroom under `ulimit -v`.

use crate::error::{Error, Result};

/// Bytes this process may still allocate, or `None` where it cannot be told (not Linux).
pub fn available_bytes() -> Option<u64> {
    let meminfo = std::fs::read_to_string("/proc/meminfo").ok()?;
    let field = |name: &str| -> Option<u64> {
        let line = meminfo.lines().find(|l| l.starts_with(name))?;
        let kb: u64 = line.split_whitespace().nth(1)?.parse().ok()?;
        Some(kb.saturating_mul(1024))
    };
    let system = field("MemAvailable:")?.saturating_add(field("SwapFree:").unwrap_or(0));
    Some(match address_space_headroom() {
        Some(h) => system.min(h),
        None => system,
    })
}

/// `ulimit -v` minus the address space already mapped, when a limit is set.
fn address_space_headroom() -> Option<u64> {
    let limits = std::fs::read_to_string("/proc/self/limits").ok()?;
    let line = limits.lines().find(|l| l.starts_with("Max address space"))?;
    let soft: u64 = line.split_whitespace().nth(3)?.parse().ok()?; // "unlimited" → None
    let status = std::fs::read_to_string("/proc/self/status").ok()?;
    let used_kb: u64 =
        status.lines().find(|l| l.starts_with("VmSize:"))?.split_whitespace().nth(1)?.parse().ok()?;
    Some(soft.saturating_sub(used_kb.saturating_mul(1024)))
}

/// Refuse an allocation of about `bytes` for `what` when it cannot fit; `hint` says what to change.
/// Where the available memory is unknown, only sizes beyond any machine (> 2⁴⁶ bytes, 64 TiB) are refused.
pub fn check_fits(what: impl Into<String>, bytes: u64, hint: impl Into<String>) -> Result<()> {
    let available = available_bytes().unwrap_or(1 << 46);
    if bytes <= available {
        return Ok(());
    }
    Err(Error::TooLarge { what: what.into(), needed: bytes, available, hint: hint.into() })
}

/// `n` bytes for people: "512 B", "3.4 MB", "1.2 TB" (powers of 1000).
pub fn human_bytes(n: u64) -> String {
    const UNITS: [&str; 6] = ["kB", "MB", "GB", "TB", "PB", "EB"];
    if n < 1000 {
        return format!("{n} B");
    }
    let mut v = n as f64 / 1000.0;
    let mut unit = 0;
    while v >= 1000.0 && unit + 1 < UNITS.len() {
        v /= 1000.0;
        unit += 1;
    }
    format!("{v:.1} {}", UNITS[unit])
}

/// `a × b × …` in bytes of `f32` elements, saturating (sizes from input can overflow `u64`).
pub fn f32_bytes(dims: &[usize]) -> u64 {
    dims.iter().fold(4u64, |acc, &d| acc.saturating_mul(d as u64))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn absurd_sizes_are_refused_with_the_numbers_and_the_fix() {
        let e = check_fits("a 100000³ volume", f32_bytes(&[100_000, 100_000, 100_000]), "use a smaller -D")
            .unwrap_err()
            .to_string();
        assert!(e.contains("a 100000³ volume needs 4.0 PB"), "{e}");
        assert!(e.contains("use a smaller -D"), "{e}");
        assert!(check_fits("a small buffer", 1024, "").is_ok());
    }

    #[test]
    fn byte_counts_read_well() {
        assert_eq!(human_bytes(999), "999 B");
        assert_eq!(human_bytes(1_500_000), "1.5 MB");
        assert_eq!(f32_bytes(&[usize::MAX, 4]), u64::MAX);
    }
}
