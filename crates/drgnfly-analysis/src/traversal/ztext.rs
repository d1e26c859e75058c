//! The z-values text format: numpy `savetxt`/`loadtxt` of an M×zdim array.

use crate::error::{Error, Result};

/// Format M×zdim values as numpy's `savetxt` does with `fmt='%.9e'`: one row per line, space
/// separated, exponent with sign and at least two digits (`1.500000000e+00`). Nine decimals round-trip
/// every f32 exactly.
///
/// # Panics
/// If `zdim == 0` (a programmer error).
pub fn format_z_text(z: &[f32], zdim: usize) -> String {
    assert!(zdim > 0, "format_z_text: zdim must be positive");
    let mut out = String::with_capacity(z.len() * 17);
    for row in z.chunks(zdim) {
        let fields: Vec<String> = row.iter().map(|&v| numpy_exp(v)).collect();
        out.push_str(&fields.join(" "));
        out.push('\n');
    }
    out
}

/// `%.9e` with numpy's exponent style.
fn numpy_exp(v: f32) -> String {
    let s = format!("{v:.9e}");
    match s.split_once('e') {
        Some((mant, exp)) => {
            let e: i32 = exp.parse().unwrap_or(0);
            format!("{mant}e{}{:02}", if e < 0 { '-' } else { '+' }, e.abs())
        }
        None => s,
    }
}

/// Parse a z-values text file (as `np.loadtxt`): blank lines and `#` comments are skipped, every other
/// line holds the same number of whitespace-separated finite numbers. Returns `(values, zdim)`.
///
/// Errors: [`Error::Parse`] naming the 1-based line for a non-number, a non-finite value or a row whose
/// length differs from the first row's; [`Error::Degenerate`] for a file with no rows.
pub fn parse_z_text(text: &str) -> Result<(Vec<f32>, usize)> {
    let mut values = Vec::new();
    let mut zdim = None;
    for (ln, line) in text.lines().enumerate() {
        let line = line.split('#').next().unwrap_or("").trim();
        if line.is_empty() {
            continue;
        }
        let mut count = 0;
        for field in line.split_whitespace() {
            let v: f32 = field.parse().map_err(|_| Error::Parse {
                line: ln + 1,
                problem: format!(
                    "`{field}` is not a number; expected {} numbers per line",
                    zdim.unwrap_or(count + 1)
                ),
            })?;
            if !v.is_finite() {
                return Err(Error::Parse {
                    line: ln + 1,
                    problem: format!("`{field}` is not a finite z value"),
                });
            }
            values.push(v);
            count += 1;
        }
        match zdim {
            None => zdim = Some(count),
            Some(d) if d != count => {
                return Err(Error::Parse {
                    line: ln + 1,
                    problem: format!(
                        "{count} values, but the first row has {d}; every row must hold zdim values"
                    ),
                })
            }
            Some(_) => {}
        }
    }
    match zdim {
        Some(d) => Ok((values, d)),
        None => Err(Error::Degenerate { what: "z values file", why: "it holds no rows".into() }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numpy_style_and_round_trip() {
        let z = [1.5f32, -0.000123, 3.4028235e38, 1e-45];
        let text = format_z_text(&z, 2);
        assert_eq!(text.lines().next(), Some("1.500000000e+00 -1.230000053e-04"));
        let (back, zdim) = parse_z_text(&format!("# header\n{text}\n")).unwrap();
        assert_eq!(zdim, 2);
        assert_eq!(back, z);
    }

    #[test]
    fn bad_lines_are_named() {
        assert!(matches!(parse_z_text("1 2\n3\n"), Err(Error::Parse { line: 2, .. })));
        assert!(matches!(parse_z_text("1 2\n\n3 x\n"), Err(Error::Parse { line: 3, .. })));
        assert!(matches!(parse_z_text("1 nan\n"), Err(Error::Parse { line: 1, .. })));
        assert!(matches!(parse_z_text("# only a comment\n"), Err(Error::Degenerate { .. })));
    }
}
