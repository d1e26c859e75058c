//! The KL weight β of the VAE loss and cryoDRGN's β schedules (`--beta`, `--beta-control`; reference §2.8).
//!
//! β is a constant (default 1/zdim) or one of cryoDRGN's named schedules, linear in the number of images seen
//! since the start of training and constant outside their ramp:
//!
//! | name | β from → to | over images |
//! |---|---|---|
//! | a | 0.001 → 15 | 0 – 1,000,000 |
//! | b | 5 → 15 | 200,000 – 800,000 |
//! | c | 5 → 18 | 200,000 – 800,000 |
//! | d | 5 → 18 | 1,000,000 – 5,000,000 |
//!
//! Schedules are targets for the KLD and need `--beta-control γ`: the loss is then gen + γ·(β − KLD)²/N
//! instead of gen + β·KLD/N ([`crate::loss::KlWeight`]).

use std::str::FromStr;

use crate::error::Error;

/// β as a function of the number of images seen.
#[derive(Clone, Copy, Debug, PartialEq)]
pub enum BetaSchedule {
    /// The same β throughout.
    Constant(f64),
    /// `from` until `start` images, then linear to `to` at `end` images, then `to`.
    Linear { from: f64, to: f64, start: u64, end: u64 },
}

impl BetaSchedule {
    /// β after `images` images (counting the current batch).
    pub fn value(&self, images: u64) -> f64 {
        match *self {
            BetaSchedule::Constant(b) => b,
            BetaSchedule::Linear { from, to, start, end } => {
                let t = (images.saturating_sub(start) as f64 / (end - start) as f64).min(1.0);
                from + t * (to - from)
            }
        }
    }

    /// Whether β changes during training (a named schedule).
    pub fn is_scheduled(&self) -> bool {
        matches!(self, BetaSchedule::Linear { .. })
    }
}

impl std::fmt::Display for BetaSchedule {
    /// `0.125`, or `5 → 15 over images 200000–800000`.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            BetaSchedule::Constant(b) => write!(f, "{b}"),
            BetaSchedule::Linear { from, to, start, end } => {
                write!(f, "{from} → {to} over images {start}–{end}")
            }
        }
    }
}

impl FromStr for BetaSchedule {
    type Err = Error;

    /// A non-negative number, or a schedule name `a`–`d`.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let linear = |from, to, start, end| BetaSchedule::Linear { from, to, start, end };
        Ok(match s.trim() {
            "a" => linear(0.001, 15.0, 0, 1_000_000),
            "b" => linear(5.0, 15.0, 200_000, 800_000),
            "c" => linear(5.0, 18.0, 200_000, 800_000),
            "d" => linear(5.0, 18.0, 1_000_000, 5_000_000),
            other => match other.parse::<f64>() {
                Ok(b) if b.is_finite() && b >= 0.0 => BetaSchedule::Constant(b),
                _ => {
                    return Err(Error::Config {
                        field: "beta",
                        problem: format!(
                            "`{other}` is neither a number ≥ 0 nor a schedule name a, b, c or d"
                        ),
                    })
                }
            },
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn schedules_ramp_linearly_and_hold_outside_the_ramp() {
        let b: BetaSchedule = "b".parse().unwrap();
        assert!(b.is_scheduled());
        assert_eq!(b.value(0), 5.0);
        assert_eq!(b.value(200_000), 5.0);
        assert!((b.value(500_000) - 10.0).abs() < 1e-12);
        assert_eq!(b.value(800_000), 15.0);
        assert_eq!(b.value(u64::MAX), 15.0);
        let a: BetaSchedule = "a".parse().unwrap();
        assert!((a.value(500_000) - (0.001 + 0.5 * (15.0 - 0.001))).abs() < 1e-12);
        assert_eq!("0.25".parse::<BetaSchedule>().unwrap(), BetaSchedule::Constant(0.25));
        assert!(!BetaSchedule::Constant(0.25).is_scheduled());
        assert_eq!(b.to_string(), "5 → 15 over images 200000–800000");
        assert_eq!(BetaSchedule::Constant(0.125).to_string(), "0.125");
        for bad in ["e", "-1", "nan", ""] {
            assert!(bad.parse::<BetaSchedule>().is_err(), "{bad}");
        }
    }
}
