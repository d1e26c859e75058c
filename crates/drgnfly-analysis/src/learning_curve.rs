//! Learning curves parsed from training logs (`run.log`), for `analyze`'s learning-curve plot and the
//! convergence report.
//!
//! Recognised lines (ours and cryoDRGN's), anywhere in a line:
//!
//! ```text
//! # =====> Epoch: 3 Average gen loss = 1.2e-03, KLD = 4.5, total loss = 1.3e-03; Finished in 0:01:02.5
//! # =====> Epoch: 3 Average loss = 0.0123; Finished in 12.5s
//! ```
//!
//! Numbers may be `nan`, `inf`, `-inf` (any case) or use exponents; a line whose numbers do not parse
//! is skipped and reported, never fatal (cryoDRGN #346 crashed `analyze` on NaN losses). When an
//! epoch appears twice (a run resumed with `--load`), the later line wins.

use std::collections::BTreeMap;

/// Losses of one epoch. Values are kept as logged: NaN and ±∞ included, so plots can mark them.
#[derive(Clone, Debug, PartialEq, serde::Serialize)]
pub struct EpochLoss {
    /// Epoch number as logged (1-based).
    pub epoch: usize,
    /// Average reconstruction (generative) loss; `None` for homogeneous-training lines.
    pub gen_loss: Option<f64>,
    /// Average KL divergence; `None` when not logged.
    pub kld: Option<f64>,
    /// Total loss.
    pub total_loss: f64,
    /// Wall time of the epoch in seconds, when logged.
    pub seconds: Option<f64>,
}

/// A parsed learning curve.
#[derive(Clone, Debug, Default, PartialEq, serde::Serialize)]
pub struct LearningCurve {
    /// One entry per epoch, sorted by epoch.
    pub epochs: Vec<EpochLoss>,
    /// 1-based numbers of epoch lines that could not be parsed.
    pub skipped_lines: Vec<usize>,
}

impl LearningCurve {
    /// Epochs whose total loss is NaN or infinite.
    pub fn non_finite_epochs(&self) -> Vec<usize> {
        self.epochs.iter().filter(|e| !e.total_loss.is_finite()).map(|e| e.epoch).collect()
    }
}

/// Parse every epoch summary line of a log.
pub fn parse_learning_curve(log: &str) -> LearningCurve {
    let mut by_epoch = BTreeMap::new();
    let mut skipped_lines = Vec::new();
    for (ln, line) in log.lines().enumerate() {
        let Some(pos) = line.find("=====> Epoch:") else { continue };
        match parse_line(&line[pos + "=====> Epoch:".len()..]) {
            Some(e) => {
                by_epoch.insert(e.epoch, e);
            }
            None => skipped_lines.push(ln + 1),
        }
    }
    LearningCurve { epochs: by_epoch.into_values().collect(), skipped_lines }
}

/// Parse the part after "=====> Epoch:".
fn parse_line(rest: &str) -> Option<EpochLoss> {
    let rest = rest.trim_start();
    let end = rest.find(|c: char| !c.is_ascii_digit()).unwrap_or(rest.len());
    let epoch: usize = rest[..end].parse().ok()?;
    let gen_loss = field(rest, "gen loss =");
    let kld = field(rest, "KLD =");
    // A KL term without a generative loss is a damaged line; a generative loss alone is a model without a
    // prior (`abinit`'s conformation table).
    let total_loss = field(rest, "total loss =").or_else(|| field(rest, "Average loss ="))?;
    if kld.is_some() && gen_loss.is_none() {
        return None;
    }
    let seconds =
        rest.find("Finished in").and_then(|p| duration_seconds(rest[p + "Finished in".len()..].trim()));
    Some(EpochLoss { epoch, gen_loss, kld, total_loss, seconds })
}

/// The number after `key` (up to `,`, `;` or whitespace).
fn field(s: &str, key: &str) -> Option<f64> {
    let p = s.find(key)? + key.len();
    let v = s[p..].trim_start();
    let end = v.find([',', ';', ' ']).unwrap_or(v.len());
    parse_number(&v[..end])
}

/// A float as Python prints it, including `nan`, `inf`, `-inf` in any case.
fn parse_number(s: &str) -> Option<f64> {
    match s.to_ascii_lowercase().as_str() {
        "nan" | "-nan" => Some(f64::NAN),
        "inf" | "+inf" | "infinity" => Some(f64::INFINITY),
        "-inf" | "-infinity" => Some(f64::NEG_INFINITY),
        other => other.parse().ok(),
    }
}

/// `H:MM:SS.ffffff` (Python timedelta), `D day(s), H:MM:SS`, or seconds with an optional `s`.
fn duration_seconds(s: &str) -> Option<f64> {
    let s = s.split_whitespace().collect::<Vec<_>>().join(" ");
    let (days, clock) = match s.split_once(", ") {
        Some((d, c)) => (d.split(' ').next()?.parse::<f64>().ok()?, c.to_string()),
        None => (0.0, s),
    };
    let clock = clock.trim_end_matches('s');
    let parts: Vec<&str> = clock.split(':').collect();
    let secs = match parts.as_slice() {
        [h, m, sec] => {
            h.parse::<f64>().ok()? * 3600.0 + m.parse::<f64>().ok()? * 60.0 + sec.parse::<f64>().ok()?
        }
        [m, sec] => m.parse::<f64>().ok()? * 60.0 + sec.parse::<f64>().ok()?,
        [sec] => sec.parse::<f64>().ok()?,
        _ => return None,
    };
    Some(days * 86400.0 + secs)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_nan_inf_exponents_and_resumes() {
        let log = "\
2024-01-01 12:00:00 # =====> Epoch: 1 Average gen loss = 1.5e-02, KLD = 3.25, total loss = 0.0151; Finished in 0:01:02.500000
noise line
# =====> Epoch: 2 Average gen loss = nan, KLD = inf, total loss = NaN; Finished in 1 day, 0:00:01
# =====> Epoch: 3 Average gen loss = 1.0, KLD = 2.0, total loss = garbage; Finished in 3s
# =====> Epoch: 2 Average gen loss = 0.01, KLD = -Inf, total loss = 1E-2; Finished in 12.5
# =====> Epoch: 5 Average loss = 0.25; Finished in 0:00:10
# =====> Epoch: 6 Average gen loss = 0.5, total loss = 0.5; Finished in 0:00:10
# =====> Epoch: 7 Average KLD = 0.5, total loss = 0.5; Finished in 0:00:10
";
        let c = parse_learning_curve(log);
        assert_eq!(c.skipped_lines, vec![4, 8]);
        assert_eq!(c.epochs.iter().map(|e| e.epoch).collect::<Vec<_>>(), vec![1, 2, 5, 6]);
        let e1 = &c.epochs[0];
        assert_eq!(
            (e1.gen_loss, e1.kld, e1.total_loss, e1.seconds),
            (Some(0.015), Some(3.25), 0.0151, Some(62.5))
        );
        // Epoch 2 was logged twice (resumed run): the later line wins.
        let e2 = &c.epochs[1];
        assert_eq!((e2.kld, e2.total_loss, e2.seconds), (Some(f64::NEG_INFINITY), 0.01, Some(12.5)));
        let e5 = &c.epochs[2];
        assert_eq!((e5.gen_loss, e5.total_loss, e5.seconds), (None, 0.25, Some(10.0)));
        assert_eq!((c.epochs[3].gen_loss, c.epochs[3].kld), (Some(0.5), None));
        assert!(c.non_finite_epochs().is_empty());
        let nan = parse_learning_curve(
            "# =====> Epoch: 7 Average gen loss = nan, KLD = 1, total loss = nan; Finished in 1:00",
        );
        assert_eq!(nan.non_finite_epochs(), vec![7]);
        assert_eq!(nan.epochs[0].seconds, Some(60.0));
        assert_eq!(parse_learning_curve(""), LearningCurve::default());
    }
}
