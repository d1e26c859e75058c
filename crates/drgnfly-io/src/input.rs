//! Reading whole input files (STAR, `.txt` lists, index files, pickles, configs, atomic models) so that
//! any path a user gives ends in a clear error: text is checked for UTF-8 and NUL bytes with the line and
//! byte of the first bad one, a byte-order mark is skipped, and a stream that is not a regular file
//! (`/dev/zero`, `/dev/urandom`, a pipe) is read in bounded pieces, so it fails on its format instead of
//! exhausting memory.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

/// Most bytes read from something that is not a regular file (a pipe, a device).
const MAX_STREAM_BYTES: u64 = 1 << 30;
/// Piece size when reading a stream.
const PIECE: usize = 1 << 16;

/// The bytes of `path`. A regular file is read whole (its size is known); any other kind of file is read
/// up to 1 GiB, then refused.
pub fn read_bytes(path: &Path) -> Result<Vec<u8>> {
    read_bounded(path, false)
}

/// The text of `path`, a `kind` file ("STAR", "stack list", …): UTF-8 without NUL bytes; a leading
/// byte-order mark is dropped.
pub fn read_text(path: &Path, kind: &str) -> Result<String> {
    let bytes = read_bounded(path, true)?;
    let not_text = |problem: &str, before: &[u8]| {
        Error::invalid(
            path,
            Some(location(before)),
            problem,
            format!("{kind} files are text; check that this is the right file"),
        )
    };
    if let Some(at) = bytes.iter().position(|&b| b == 0) {
        return Err(not_text("binary data (a NUL byte), not text", &bytes[..at]));
    }
    let mut text = String::from_utf8(bytes).map_err(|e| {
        let offset = e.utf8_error().valid_up_to();
        not_text("not valid UTF-8 text", &e.as_bytes()[..offset])
    })?;
    if text.starts_with('\u{feff}') {
        text.drain(..'\u{feff}'.len_utf8());
    }
    Ok(text)
}

/// "line L (byte B)" of the byte after `before`.
fn location(before: &[u8]) -> String {
    let line = 1 + before.iter().filter(|&&b| b == b'\n').count();
    format!("line {line} (byte {})", before.len())
}

/// Read `path`: a regular file whole, anything else in pieces up to [`MAX_STREAM_BYTES`]; with
/// `stop_at_nul`, a stream ends after the piece holding its first NUL byte (text readers refuse it anyway,
/// and `/dev/zero` would otherwise be read to the limit).
fn read_bounded(path: &Path, stop_at_nul: bool) -> Result<Vec<u8>> {
    let meta = std::fs::metadata(path).map_err(|e| Error::io(path, e))?;
    if meta.is_dir() {
        return Err(Error::invalid(path, None, "is a directory", "give the path of a file"));
    }
    if meta.is_file() {
        return std::fs::read(path).map_err(|e| Error::io(path, e));
    }
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?.take(MAX_STREAM_BYTES + 1);
    let mut out = Vec::new();
    let mut piece = vec![0u8; PIECE];
    loop {
        let n = file.read(&mut piece).map_err(|e| Error::io(path, e))?;
        out.extend_from_slice(&piece[..n]);
        if n == 0 || (stop_at_nul && piece[..n].contains(&0)) {
            return Ok(out);
        }
        if out.len() as u64 > MAX_STREAM_BYTES {
            return Err(Error::invalid(
                path,
                None,
                format!("more than {MAX_STREAM_BYTES} bytes from a stream that is not a regular file"),
                "give a regular file",
            ));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn text_problems_name_line_and_byte_and_a_bom_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("a.star");
        std::fs::write(&p, b"\xef\xbb\xbfdata_\nloop_\n").unwrap();
        assert_eq!(read_text(&p, "STAR").unwrap(), "data_\nloop_\n");
        std::fs::write(&p, b"data_\nab\xffc\n").unwrap();
        let e = read_text(&p, "STAR").unwrap_err().to_string();
        assert!(e.contains("line 2 (byte 8)") && e.contains("not valid UTF-8"), "{e}");
        std::fs::write(&p, b"data_\n\0\0").unwrap();
        let e = read_text(&p, "STAR").unwrap_err().to_string();
        assert!(e.contains("line 2 (byte 6)") && e.contains("binary data"), "{e}");
    }

    /// Endless devices fail at once on their content instead of being read into memory.
    #[cfg(unix)]
    #[test]
    fn endless_devices_fail_on_format() {
        for dev in ["/dev/zero", "/dev/urandom"] {
            let e = read_text(Path::new(dev), "STAR").unwrap_err().to_string();
            assert!(e.contains(dev) && e.contains("binary data"), "{e}");
        }
        let e = read_text(Path::new("/"), "STAR").unwrap_err().to_string();
        assert!(e.contains("is a directory"), "{e}");
    }
}
