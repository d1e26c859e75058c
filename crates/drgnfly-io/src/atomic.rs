//! Atomic file output: write to a temporary name beside the target, then rename, so a crash or a full
//! disk never leaves a half-written file under the final name.

use std::fs::File;
use std::io::{BufWriter, Write};
use std::path::{Path, PathBuf};

use crate::error::{Error, Result};

/// A file being written; it appears under its final name only after [`AtomicFile::commit`].
/// Dropping it without committing removes the temporary file.
pub struct AtomicFile {
    target: PathBuf,
    tmp: PathBuf,
    writer: Option<BufWriter<File>>,
}

impl AtomicFile {
    /// Start writing `target` (its parent directory must exist). A symlink is followed: the file it points
    /// to is replaced and the link kept. A target that exists but is not a regular file (a device such as
    /// `/dev/full`, a FIFO, a socket, a directory) is refused: renaming over it would destroy it.
    pub fn create(target: impl AsRef<Path>) -> Result<Self> {
        let target = output_path(target.as_ref())?;
        let tmp = temp_path(&target);
        let file = File::create(&tmp).map_err(|e| Error::io(&target, e))?;
        Ok(Self { target, tmp, writer: Some(BufWriter::with_capacity(1 << 20, file)) })
    }

    /// The final path.
    pub fn path(&self) -> &Path {
        &self.target
    }

    /// The buffered writer. Errors from it should be mapped with [`AtomicFile::io_err`].
    pub fn writer(&mut self) -> &mut BufWriter<File> {
        // Invariant: `writer` is only taken in `commit`, which consumes `self`.
        self.writer.as_mut().expect("AtomicFile used after commit")
    }

    /// Turn an I/O error during writing into an [`Error`] naming the target file.
    pub fn io_err(&self, e: std::io::Error) -> Error {
        Error::io(&self.target, e)
    }

    /// Write all of `bytes`.
    pub fn write_all(&mut self, bytes: &[u8]) -> Result<()> {
        let target = self.target.clone();
        self.writer().write_all(bytes).map_err(|e| Error::io(target, e))
    }

    /// Flush, sync and rename into place.
    pub fn commit(mut self) -> Result<()> {
        let writer = self.writer.take().expect("AtomicFile committed twice");
        let file = writer.into_inner().map_err(|e| Error::io(&self.target, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(&self.target, e))?;
        drop(file);
        std::fs::rename(&self.tmp, &self.target).map_err(|e| Error::io(&self.target, e))
    }
}

impl Drop for AtomicFile {
    fn drop(&mut self) {
        if self.writer.is_some() {
            self.writer = None;
            let _ = std::fs::remove_file(&self.tmp);
        }
    }
}

/// Symlinks followed before a link points nowhere useful (the kernel's own limit).
const MAX_SYMLINKS: usize = 40;

/// The regular file an output named `path` should replace: `path` itself when absent or a regular file,
/// the file a symlink (chain) points to, and an error for anything else, naming what it is.
pub fn output_path(path: &Path) -> Result<PathBuf> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_SYMLINKS {
        let meta = match std::fs::symlink_metadata(&current) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(current),
            Err(e) => return Err(Error::io(&current, e)),
        };
        let kind = meta.file_type();
        if kind.is_file() {
            return Ok(current);
        }
        if kind.is_symlink() {
            let dest = std::fs::read_link(&current).map_err(|e| Error::io(&current, e))?;
            current = match current.parent() {
                Some(dir) if dest.is_relative() => dir.join(dest),
                _ => dest,
            };
            continue;
        }
        return Err(Error::invalid(
            path,
            None,
            format!("exists and is {}, not a regular file", describe(&kind)),
            "outputs are written to a new file and renamed over the old one, which would destroy it; \
             give the path of a regular file",
        ));
    }
    Err(Error::invalid(path, None, "too many levels of symbolic links", "point the link at a regular file"))
}

fn describe(kind: &std::fs::FileType) -> &'static str {
    #[cfg(unix)]
    {
        use std::os::unix::fs::FileTypeExt;
        if kind.is_char_device() {
            return "a character device";
        }
        if kind.is_block_device() {
            return "a block device";
        }
        if kind.is_fifo() {
            return "a FIFO (named pipe)";
        }
        if kind.is_socket() {
            return "a socket";
        }
    }
    if kind.is_dir() {
        "a directory"
    } else {
        "a special file"
    }
}

/// The temporary name `dir/.NAME.PID.tmp` beside `target` ([`remove_stale_temps`] knows the pattern).
pub fn temp_path(target: &Path) -> PathBuf {
    let name = target.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    target.with_file_name(format!(".{name}.{}.tmp", std::process::id()))
}

/// Write `bytes` to `path` atomically.
pub fn write_atomic(path: impl AsRef<Path>, bytes: &[u8]) -> Result<()> {
    let mut f = AtomicFile::create(path)?;
    f.write_all(bytes)?;
    f.commit()
}

/// Removes the temporary files (`.NAME.PID.tmp`, as [`AtomicFile`] and checkpoints name them) that killed
/// processes left in `dir`: a kill during a write leaves one behind, up to a full checkpoint in size, that
/// no later run would otherwise remove. Files of a process still running are kept (where its liveness can
/// be checked, Linux's `/proc`; elsewhere none are removed). Returns the files removed.
pub fn remove_stale_temps(dir: &Path) -> Result<Vec<PathBuf>> {
    let entries = std::fs::read_dir(dir).map_err(|e| Error::io(dir, e))?;
    let proc = Path::new("/proc/self");
    let mut removed = Vec::new();
    for entry in entries.flatten() {
        let name = entry.file_name();
        let Some(pid) = name
            .to_str()
            .filter(|n| n.starts_with('.'))
            .and_then(|n| n.strip_suffix(".tmp"))
            .and_then(|n| n.rsplit_once('.'))
            .and_then(|(_, pid)| pid.parse::<u32>().ok())
        else {
            continue;
        };
        let dead = proc.exists() && !Path::new(&format!("/proc/{pid}")).exists();
        if dead && entry.file_type().is_ok_and(|t| t.is_file()) && std::fs::remove_file(entry.path()).is_ok()
        {
            removed.push(entry.path());
        }
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commit_renames_and_drop_cleans_up() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("out.bin");
        write_atomic(&p, b"hello").unwrap();
        assert_eq!(std::fs::read(&p).unwrap(), b"hello");

        let q = dir.path().join("never.bin");
        {
            let mut f = AtomicFile::create(&q).unwrap();
            f.write_all(b"partial").unwrap();
        }
        assert!(!q.exists());
        let leftovers: Vec<_> = std::fs::read_dir(dir.path()).unwrap().collect();
        assert_eq!(leftovers.len(), 1, "only out.bin should remain");
    }

    /// A device, FIFO or directory is never replaced; a symlink's target is written and the link kept.
    #[cfg(unix)]
    #[test]
    fn special_files_are_refused_and_symlinks_followed() {
        let dir = tempfile::tempdir().unwrap();
        let e = write_atomic("/dev/null", b"x").unwrap_err().to_string();
        assert!(e.contains("/dev/null") && e.contains("a character device"), "{e}");
        assert!(!Path::new("/dev/null").metadata().unwrap().file_type().is_file());
        let e = write_atomic(dir.path(), b"x").unwrap_err().to_string();
        assert!(e.contains("a directory"), "{e}");
        let fifo = dir.path().join("fifo");
        let c = std::ffi::CString::new(fifo.to_str().unwrap()).unwrap();
        assert_eq!(unsafe { libc::mkfifo(c.as_ptr(), 0o644) }, 0);
        assert!(write_atomic(&fifo, b"x").unwrap_err().to_string().contains("FIFO"));

        let real = dir.path().join("real.txt");
        let link = dir.path().join("link.txt");
        std::os::unix::fs::symlink("real.txt", &link).unwrap();
        write_atomic(&link, b"through").unwrap();
        assert!(std::fs::symlink_metadata(&link).unwrap().file_type().is_symlink(), "the link is kept");
        assert_eq!(std::fs::read(&real).unwrap(), b"through");
    }

    #[test]
    fn stale_temps_of_dead_processes_are_removed() {
        if !Path::new("/proc/self").exists() {
            eprintln!("skipped: no /proc to tell dead processes from live ones");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        // A pid far above any default pid_max is dead; our own is alive.
        let dead = dir.path().join(".weights.3.safetensors.999999999.tmp");
        let alive = dir.path().join(format!(".z.3.pkl.{}.tmp", std::process::id()));
        let other = dir.path().join(".hidden.tmp");
        for p in [&dead, &alive, &other] {
            std::fs::write(p, b"x").unwrap();
        }
        assert_eq!(remove_stale_temps(dir.path()).unwrap(), vec![dead.clone()]);
        assert!(!dead.exists() && alive.exists() && other.exists());
    }
}
