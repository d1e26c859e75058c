//! The files `analyze` writes, remembered (relative to the output directory) for the report's file
//! list and the summary, and the report items made from them.

use std::path::{Path, PathBuf};

use anyhow::{Context, Result};
use drgnfly_analysis::plot::RgbImage;
use drgnfly_analysis::report::{ImageSource, Item};

use crate::cmd::analysis_common::write_text;

/// The output directory and what has been written into it.
pub struct Outputs {
    /// `WORKDIR/analyze.EPOCH` or `-o`.
    pub dir: PathBuf,
    /// Files written, relative to `dir`, in order.
    pub files: Vec<String>,
    /// Warnings and skipped steps, shown in the report and the summary.
    pub notes: Vec<String>,
}

impl Outputs {
    /// Create the directory.
    pub fn create(dir: PathBuf) -> Result<Self> {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
        Ok(Self { dir, files: Vec::new(), notes: Vec::new() })
    }

    /// A subdirectory (created) and its path.
    pub fn subdir(&self, rel: &str) -> Result<PathBuf> {
        let p = self.dir.join(rel);
        std::fs::create_dir_all(&p).with_context(|| format!("creating {}", p.display()))?;
        Ok(p)
    }

    /// Remember a file written by someone else (volumes, pickles).
    pub fn record(&mut self, path: &Path) {
        let rel = path.strip_prefix(&self.dir).unwrap_or(path);
        self.files.push(rel.to_string_lossy().into_owned());
    }

    /// Write a text file at `rel`.
    pub fn text(&mut self, rel: &str, text: &str) -> Result<()> {
        write_text(&self.dir.join(rel), text)?;
        self.files.push(rel.to_string());
        Ok(())
    }

    /// Write a PNG at `rel` and return it as a report picture captioned `caption`.
    pub fn png(&mut self, img: &RgbImage, rel: &str, caption: &str) -> Result<Item> {
        let bytes = img.encode_png()?;
        drgnfly_io::atomic::write_atomic(self.dir.join(rel), &bytes)?;
        self.files.push(rel.to_string());
        Ok(Item::Image { caption: format!("{caption} ({rel})"), source: ImageSource::Png(bytes) })
    }

    /// A warning: printed now and kept for the report and summary.
    pub fn note(&mut self, msg: String) {
        say!("warning: {msg}");
        self.notes.push(msg);
    }
}
