//! The one error type of `drgnfly-io`.
//!
//! Every variant that can come from a user's file carries the path and, where there is one, the record
//! (image index, STAR row, pickle opcode offset, …) and a hint that tells the user what to do. The
//! `Display` form is the message the CLI prints.

use std::fmt;
use std::path::{Path, PathBuf};

/// Result alias for this crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Errors from reading or writing cryo-EM files.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Error {
    /// The operating system refused an operation on `path`.
    // The OS error is part of the message rather than a `#[source]`, so that printing the error chain
    // does not repeat it.
    #[error("{}: {error}", path.display())]
    Io {
        /// The file involved.
        path: PathBuf,
        /// What the OS said.
        error: std::io::Error,
    },
    /// The file ends before the data its header (or a referencing file) promises.
    #[error("{}: {what}: file is truncated (needs {expected} bytes, has {got}). {hint}", path.display())]
    Truncated {
        /// The file involved.
        path: PathBuf,
        /// What was being read, e.g. "image 17" or "header".
        what: String,
        /// Bytes needed.
        expected: u64,
        /// Bytes present.
        got: u64,
        /// What the user can do about it.
        hint: String,
    },
    /// The content does not follow the format.
    #[error("{}{}: {problem}{}", path.display(), Location(record), Hint(hint))]
    Invalid {
        /// The file involved.
        path: PathBuf,
        /// Where in the file, e.g. "line 12", "row 5 (_rlnImageName)", "field blob/shape".
        record: Option<String>,
        /// What is wrong.
        problem: String,
        /// What the user can do about it (may be empty).
        hint: String,
    },
    /// The content is valid for the format but uses something drgnfly does not handle.
    #[error("{}{}: unsupported: {what}{}", path.display(), Location(record), Hint(hint))]
    Unsupported {
        /// The file involved.
        path: PathBuf,
        /// Where in the file.
        record: Option<String>,
        /// What is unsupported.
        what: String,
        /// What the user can do about it.
        hint: String,
    },
    /// A pickle asked to call something other than numpy's array reconstruction. It is refused so that
    /// opening a .pkl can never run code.
    #[error("{}: refusing pickle global `{global}` at byte {offset}: only numpy arrays (and tuples/lists of them) are accepted, so a .pkl can never run code. Re-save the data with numpy (e.g. pickle.dump(np.asarray(x), f))", path.display())]
    UnsafePickle {
        /// The file involved.
        path: PathBuf,
        /// `module.name` of the refused global.
        global: String,
        /// Byte offset of the opcode.
        offset: u64,
    },
    /// A size from the user or a file would need more memory than this process can get.
    #[error("{what} needs {} of memory, but only {} is available. {hint}", crate::memory::human_bytes(*.needed), crate::memory::human_bytes(*.available))]
    TooLarge {
        /// What would be allocated, with the size that asks for it.
        what: String,
        /// Estimated bytes.
        needed: u64,
        /// Bytes the process may still allocate.
        available: u64,
        /// What to change.
        hint: String,
    },
    /// Several independent problems found while validating inputs; all are reported at once.
    #[error("{} problems found:\n{}", .0.len(), ListErrors(.0))]
    Many(Vec<Error>),
}

impl Error {
    /// Wrap an I/O error with the path it concerns.
    pub fn io(path: impl AsRef<Path>, source: std::io::Error) -> Self {
        Error::Io { path: path.as_ref().to_path_buf(), error: source }
    }

    /// A format violation at `record` in `path`.
    pub fn invalid(
        path: impl AsRef<Path>,
        record: impl Into<Option<String>>,
        problem: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Invalid {
            path: path.as_ref().to_path_buf(),
            record: record.into(),
            problem: problem.into(),
            hint: hint.into(),
        }
    }

    /// A valid but unsupported feature at `record` in `path`.
    pub fn unsupported(
        path: impl AsRef<Path>,
        record: impl Into<Option<String>>,
        what: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        Error::Unsupported {
            path: path.as_ref().to_path_buf(),
            record: record.into(),
            what: what.into(),
            hint: hint.into(),
        }
    }

    /// Collapse a list of problems: none is `Ok`, one is itself, more is [`Error::Many`].
    pub fn from_list(mut errors: Vec<Error>) -> Result<()> {
        match errors.len() {
            0 => Ok(()),
            1 => Err(errors.remove(0)),
            _ => Err(Error::Many(errors)),
        }
    }
}

struct Location<'a>(&'a Option<String>);
impl fmt::Display for Location<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            Some(r) if !r.is_empty() => write!(f, ": {r}"),
            _ => Ok(()),
        }
    }
}

struct Hint<'a>(&'a str);
impl fmt::Display for Hint<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        if self.0.is_empty() {
            Ok(())
        } else {
            write!(f, ". {}", self.0)
        }
    }
}

struct ListErrors<'a>(&'a [Error]);
impl fmt::Display for ListErrors<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        const SHOWN: usize = 20;
        for e in self.0.iter().take(SHOWN) {
            writeln!(f, "  - {e}")?;
        }
        if self.0.len() > SHOWN {
            writeln!(f, "  … and {} more", self.0.len() - SHOWN)?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn messages_name_file_record_and_hint() {
        let e = Error::invalid("a.star", Some("row 3".to_string()), "bad number `x`", "fix the column");
        assert_eq!(e.to_string(), "a.star: row 3: bad number `x`. fix the column");
        let e = Error::invalid("a.star", None, "empty", "");
        assert_eq!(e.to_string(), "a.star: empty");
    }

    #[test]
    fn from_list_collapses() {
        assert!(Error::from_list(vec![]).is_ok());
        let one = Error::from_list(vec![Error::invalid("a", None, "x", "")]).unwrap_err();
        assert!(matches!(one, Error::Invalid { .. }));
        let many =
            Error::from_list(vec![Error::invalid("a", None, "x", ""), Error::invalid("b", None, "y", "")])
                .unwrap_err();
        assert!(matches!(many, Error::Many(ref v) if v.len() == 2));
        assert!(many.to_string().starts_with("2 problems found"));
    }
}
