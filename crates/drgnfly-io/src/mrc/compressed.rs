//! gzip- and bzip2-compressed MRC files (`.map.gz`, `.mrc.bz2` as EMDB distributes them).
//!
//! Compression is recognised by magic bytes (gzip `1f 8b`, bzip2 `BZh`), not by the file name, so a
//! compressed file renamed to `.mrc` still opens. Such files are decompressed into memory by the reader.

use std::fs::File;
use std::io::{BufReader, ErrorKind, Read, Seek, SeekFrom};
use std::path::Path;

use crate::error::{Error, Result};

/// A compression format recognised from the first bytes of a file.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) enum Compression {
    Gzip,
    Bzip2,
}

impl Compression {
    /// The format whose magic bytes start `prefix`, if any.
    pub(crate) fn detect(prefix: &[u8]) -> Option<Self> {
        if prefix.starts_with(&[0x1f, 0x8b]) {
            Some(Compression::Gzip)
        } else if prefix.starts_with(b"BZh") {
            Some(Compression::Bzip2)
        } else {
            None
        }
    }

    pub(crate) fn name(self) -> &'static str {
        match self {
            Compression::Gzip => "gzip",
            Compression::Bzip2 => "bzip2",
        }
    }
}

/// Open `path` and peek at its first bytes; returns the file rewound to the start and its compression.
pub(crate) fn open_detect(path: &Path) -> Result<(File, Option<Compression>)> {
    let mut file = File::open(path).map_err(|e| Error::io(path, e))?;
    let mut magic = [0u8; 3];
    let got = super::header::read_up_to(path, &mut file, &mut magic)?;
    file.seek(SeekFrom::Start(0)).map_err(|e| Error::io(path, e))?;
    Ok((file, Compression::detect(&magic[..got])))
}

/// A sequential reader over the (decompressed) content of `path`, and the compression found.
pub(crate) fn open_reader(path: &Path) -> Result<(Box<dyn Read>, Option<Compression>)> {
    let (file, compression) = open_detect(path)?;
    Ok((decoder(file, compression), compression))
}

/// Wrap `file` (positioned at its start) in the decoder for `compression`.
pub(crate) fn decoder(file: File, compression: Option<Compression>) -> Box<dyn Read> {
    match compression {
        // Multi-member decoders: `cat a.gz b.gz` and pbzip2 output are valid single files.
        Some(Compression::Gzip) => Box::new(flate2::read::MultiGzDecoder::new(BufReader::new(file))),
        Some(Compression::Bzip2) => Box::new(bzip2::read::MultiBzDecoder::new(BufReader::new(file))),
        None => Box::new(BufReader::new(file)),
    }
}

/// Turn an error from a (possibly decompressing) reader into an [`Error`]: corrupt or cut-off compressed
/// streams are reported as damaged content, everything else as I/O.
pub(crate) fn read_error(path: &Path, e: std::io::Error) -> Error {
    match e.kind() {
        ErrorKind::InvalidData | ErrorKind::InvalidInput | ErrorKind::UnexpectedEof => Error::invalid(
            path,
            None,
            format!("cannot decompress: {e}"),
            "the compressed file is damaged or incomplete; re-download it or decompress it by hand to check",
        ),
        _ => Error::io(path, e),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn detects_by_magic_bytes() {
        assert_eq!(Compression::detect(&[0x1f, 0x8b, 8]), Some(Compression::Gzip));
        assert_eq!(Compression::detect(b"BZh9"), Some(Compression::Bzip2));
        assert_eq!(Compression::detect(&[64, 0, 0, 0]), None);
        assert_eq!(Compression::detect(&[]), None);
    }

    #[test]
    fn damaged_gzip_is_invalid() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.mrc.gz");
        std::fs::write(&p, [0x1f, 0x8b, 8, 0, 0, 0, 0, 0, 0, 0xff, 1, 2, 3, 4, 5]).unwrap();
        let (mut r, c) = open_reader(&p).unwrap();
        assert_eq!(c, Some(Compression::Gzip));
        let mut out = Vec::new();
        let e = read_error(&p, r.read_to_end(&mut out).unwrap_err());
        assert!(matches!(e, Error::Invalid { .. }));
    }
}
