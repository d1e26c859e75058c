//! The STAR writer: RELION layout (`# version`, `data_`, pairs, `loop_` with `#N` column numbers), values
//! quoted only when needed, written atomically.

use std::borrow::Cow;
use std::io::Write;
use std::path::Path;

use super::{Block, StarFile};
use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

/// Write `star` to `path` atomically (temporary file, then rename).
pub fn write_star(path: impl AsRef<Path>, star: &StarFile) -> Result<()> {
    let path = path.as_ref();
    check_writable(path, star)?;
    let mut out = AtomicFile::create(path)?;
    let w = out.writer();
    let res = write_all(w, star);
    res.map_err(|e| Error::io(path, e))?;
    out.commit()
}

/// The text [`write_star`] writes.
pub fn format_star(star: &StarFile) -> Result<String> {
    check_writable(star.path(), star)?;
    let mut v = Vec::new();
    write_all(&mut v, star).map_err(|e| Error::io(star.path(), e))?;
    String::from_utf8(v).map_err(|e| Error::invalid(star.path(), None, format!("internal: {e}"), ""))
}

/// Refuse values that no STAR quoting can represent before creating the file.
fn check_writable(path: &Path, star: &StarFile) -> Result<()> {
    for b in star.blocks() {
        for l in b.loops() {
            for (c, name) in l.columns().iter().enumerate() {
                for (r, v) in l.column(c).enumerate() {
                    if v.contains(['\n', '\r']) || quote(v).is_none() {
                        return Err(Error::invalid(
                            path,
                            Some(format!("data_{} row {}, column {name}", b.name(), r + 1)),
                            format!("value {v:?} cannot be written in a STAR loop"),
                            "values in loops cannot contain line breaks or both ' and \" followed by spaces",
                        ));
                    }
                }
            }
        }
        for (k, v) in b.pairs() {
            let breaks_text_field = v.contains('\n') && v.split('\n').skip(1).any(|l| l.starts_with(';'));
            if breaks_text_field || (!v.contains('\n') && quote(v).is_none()) {
                return Err(Error::invalid(
                    path,
                    Some(format!("data_{} key {k}", b.name())),
                    format!("value {v:?} cannot be quoted"),
                    "",
                ));
            }
        }
    }
    Ok(())
}

fn write_all(w: &mut impl Write, star: &StarFile) -> std::io::Result<()> {
    for (i, b) in star.blocks().iter().enumerate() {
        if i > 0 {
            writeln!(w)?;
        }
        write_block(w, b)?;
    }
    w.flush()
}

fn write_block(w: &mut impl Write, b: &Block) -> std::io::Result<()> {
    if let Some(v) = b.version() {
        writeln!(w, "# version {v}\n")?;
    }
    writeln!(w, "data_{}\n", b.name())?;
    for (k, v) in b.pairs() {
        match quote(v) {
            Some(q) if !v.contains('\n') => writeln!(w, "{k} {q}")?,
            _ => writeln!(w, "{k}\n;{v}\n;")?,
        }
    }
    if !b.pairs().is_empty() {
        writeln!(w)?;
    }
    for l in b.loops() {
        writeln!(w, "loop_")?;
        for (i, c) in l.columns().iter().enumerate() {
            writeln!(w, "{c} #{}", i + 1)?;
        }
        for r in 0..l.len() {
            for (c, v) in l.row(r).enumerate() {
                if c > 0 {
                    w.write_all(b" ")?;
                }
                // Checked in `check_writable`.
                w.write_all(quote(v).unwrap_or(Cow::Borrowed(v)).as_bytes())?;
            }
            writeln!(w)?;
        }
        writeln!(w)?;
    }
    Ok(())
}

/// `v` as a STAR token: bare when it can be, else in `"…"` or `'…'`. `None` when neither quote can
/// hold it (a quote char followed by whitespace closes a quoted value early).
pub(crate) fn quote(v: &str) -> Option<Cow<'_, str>> {
    let reserved = ["data_", "loop_", "stop_", "save_", "global_"];
    let lower_starts =
        |p: &str| v.len() >= p.len() && v.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes());
    let needs = v.is_empty()
        || v.chars().any(char::is_whitespace)
        || v.starts_with(['_', '#', '\'', '"', ';'])
        || reserved.iter().any(|p| lower_starts(p));
    if !needs {
        return Some(Cow::Borrowed(v));
    }
    let closes_early = |q: char| {
        let mut it = v.chars().peekable();
        while let Some(c) = it.next() {
            if c == q && it.peek().is_some_and(|n| n.is_whitespace()) {
                return true;
            }
        }
        false
    };
    for q in ['"', '\''] {
        if !closes_early(q) {
            return Some(Cow::Owned(format!("{q}{v}{q}")));
        }
    }
    None
}
