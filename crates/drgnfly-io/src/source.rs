//! `ParticleSource`: one interface over every way users hand us particle images.
//!
//! A source maps *dataset positions* `0..len()` to images in one or more MRC stacks:
//! - `.mrc`/`.mrcs`: one stack, position = image index;
//! - `.txt`: a list of stacks (one path per line, relative to the .txt's directory), concatenated;
//! - `.star`: one row per particle, `_rlnImageName` = `N@path` (N 1-based);
//! - `.cs`: one row per particle, `blob/path` + `blob/idx` (0-based).
//!
//! An `--ind` selection maps positions to rows of the file, in the selection's order, so position `p` is
//! particle `ind[p]` of the file (as in cryoDRGN, where poses and CTF are indexed the same way).
//!
//! Paths inside .star/.cs/.txt files are resolved as cryoDRGN does, extended so a moved project still
//! opens: the path as given, then relative to the listing file's directory, then `--datadir`/path and
//! `--datadir`/basename. Everything that can be checked is checked at open time, and all problems are
//! reported together ([`Error::Many`]): missing files, stacks too short for the indices that reference
//! them, box sizes that disagree, selections out of range.
//!
//! Images are read through memory maps, never by loading a whole stack; [`ParticleSource::stream`] reads
//! chunks on a background thread and serves chunk-shuffled batches, so memory stays bounded by the chunk
//! size whatever the number of particles.

use std::collections::HashMap;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use crate::cs::CsFile;
use crate::error::{Error, Result};
use crate::mrc::{MrcStack, StackInfo};
use crate::relion::{ImageRefs, RelionParticles};

/// Options for opening a [`ParticleSource`].
#[derive(Clone, Debug, Default)]
pub struct SourceOptions {
    /// Directory to look for the stacks named in a .star/.cs/.txt file (`--datadir`).
    pub datadir: Option<PathBuf>,
    /// Selected rows of the input, in order (`--ind`, already loaded and range-checked or not).
    pub ind: Option<Vec<usize>>,
}

/// The kind of file a source was opened from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum SourceKind {
    /// A single .mrc/.mrcs stack.
    Mrcs,
    /// A .txt list of stacks.
    StackList,
    /// A RELION .star file.
    Star,
    /// A cryoSPARC .cs file.
    Cs,
}

/// Where the images of a dataset live.
#[derive(Debug)]
enum ImageMap {
    /// Stacks concatenated in order; `starts[i]` is the first position of stack `i` (plus a final total).
    Concat { starts: Vec<usize> },
    /// One (stack, image) pair per row of the listing file.
    Rows { stack: Vec<u32>, image: Vec<u32> },
}

/// Random-access and streaming reader of particle images. Cheap to share (`Arc`) across threads.
#[derive(Debug)]
pub struct ParticleSource {
    input: PathBuf,
    kind: SourceKind,
    stacks: Stacks,
    map: ImageMap,
    /// Selected rows of the file (`--ind`); `None` means all rows in order.
    ind: Option<Vec<usize>>,
    n_rows: usize,
    d: usize,
}

impl ParticleSource {
    /// Open `path` (.mrc/.mrcs/.txt/.star/.cs), resolving and validating everything it references.
    pub fn open(path: impl AsRef<Path>, opts: &SourceOptions) -> Result<Self> {
        let input = path.as_ref().to_path_buf();
        let ext =
            input.extension().and_then(|e| e.to_str()).map(|e| e.to_ascii_lowercase()).unwrap_or_default();
        let listing_dir = input.parent().map(Path::to_path_buf).unwrap_or_default();
        let (kind, stacks, map) =
            match ext.as_str() {
                "mrc" | "mrcs" | "map" | "gz" | "bz2" => {
                    let stack = MrcStack::inspect(&input)?;
                    let starts = vec![0, stack.len];
                    (SourceKind::Mrcs, vec![stack], ImageMap::Concat { starts })
                }
                "txt" => {
                    let paths = read_stack_list(&input)?;
                    let stacks = open_all(&input, &paths, &listing_dir, opts.datadir.as_deref())?;
                    let mut starts = Vec::with_capacity(stacks.len() + 1);
                    let mut total = 0usize;
                    for s in &stacks {
                        starts.push(total);
                        total += s.len;
                    }
                    starts.push(total);
                    (SourceKind::StackList, stacks, ImageMap::Concat { starts })
                }
                "star" => {
                    let refs = RelionParticles::open(&input)?.image_refs()?;
                    let (stacks, map) = open_rows(&input, refs, &listing_dir, opts.datadir.as_deref())?;
                    (SourceKind::Star, stacks, map)
                }
                "cs" => {
                    let refs = CsFile::open(&input)?.image_refs()?;
                    let (stacks, map) = open_rows(&input, refs, &listing_dir, opts.datadir.as_deref())?;
                    (SourceKind::Cs, stacks, map)
                }
                _ => return Err(Error::unsupported(
                    &input,
                    None,
                    format!("particle file type `.{ext}`"),
                    "give an .mrcs/.mrc stack, a .txt list of stacks, a RELION .star or a cryoSPARC .cs file",
                )),
            };
        let d = check_boxes(&input, &stacks)?;
        let n_rows = match &map {
            ImageMap::Concat { starts } => starts.last().copied().unwrap_or(0),
            ImageMap::Rows { stack, .. } => stack.len(),
        };
        if let Some(ind) = &opts.ind {
            check_selection(&input, ind, n_rows)?;
        }
        let stacks = Stacks { info: stacks, open: Mutex::new(Vec::new()) };
        Ok(Self { input, kind, stacks, map, ind: opts.ind.clone(), n_rows, d })
    }

    /// Restrict the source to `rows` of its file, in that order (`--ind`), without opening anything again:
    /// the selection needs the number of rows, which only an opened source knows. Replaces any earlier
    /// selection.
    pub fn select(mut self, rows: Vec<usize>) -> Result<Self> {
        check_selection(&self.input, &rows, self.n_rows)?;
        self.ind = Some(rows);
        Ok(self)
    }

    /// The file the source was opened from.
    pub fn path(&self) -> &Path {
        &self.input
    }

    /// What kind of file that is.
    pub fn kind(&self) -> SourceKind {
        self.kind
    }

    /// Number of particles (after `--ind`).
    pub fn len(&self) -> usize {
        self.ind.as_ref().map_or(self.n_rows, Vec::len)
    }

    /// Whether there are no particles.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Number of rows of the file before `--ind`.
    pub fn n_rows(&self) -> usize {
        self.n_rows
    }

    /// Box size D (images are D×D).
    pub fn box_size(&self) -> usize {
        self.d
    }

    /// The row of the input file that dataset position `pos` refers to.
    pub fn row_of(&self, pos: usize) -> Option<usize> {
        match &self.ind {
            Some(ind) => ind.get(pos).copied(),
            None => (pos < self.n_rows).then_some(pos),
        }
    }

    /// The pixel size of the first stack's header, when it records one.
    pub fn header_apix(&self) -> Option<f32> {
        self.stacks.info.first().and_then(|s| s.header.known_apix())
    }

    /// (stack, image) of file row `row`.
    fn locate(&self, row: usize) -> Option<(usize, usize)> {
        match &self.map {
            ImageMap::Concat { starts } => {
                if row >= *starts.last()? {
                    return None;
                }
                // `starts` is sorted: the stack is the last one starting at or before `row`.
                let s = starts.partition_point(|&st| st <= row) - 1;
                Some((s, row - starts[s]))
            }
            ImageMap::Rows { stack, image } => Some((*stack.get(row)? as usize, *image.get(row)? as usize)),
        }
    }

    /// Read the image at dataset position `pos` into `out` (D×D, row-major, x fastest).
    pub fn read_into(&self, pos: usize, out: &mut [f32]) -> Result<()> {
        let (s, i) = self.position(pos)?;
        self.stacks.get(s)?.read_image_into(i, out)
    }

    /// Read the image at dataset position `pos`.
    pub fn read(&self, pos: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.d * self.d];
        self.read_into(pos, &mut out)?;
        Ok(out)
    }

    /// Read the images at `positions` into `out` (len × D × D). Runs of consecutive images of one stack
    /// are read with one bulk copy each.
    pub fn read_many_into(&self, positions: &[usize], out: &mut [f32]) -> Result<()> {
        let n = self.d * self.d;
        if out.len() != positions.len() * n {
            return Err(Error::invalid(
                &self.input,
                None,
                format!(
                    "buffer of {} values for {} images of {}×{}",
                    out.len(),
                    positions.len(),
                    self.d,
                    self.d
                ),
                "",
            ));
        }
        for run in self.runs(positions) {
            let (k, s, i, len) = run?;
            self.stacks.get(s)?.read_images_into(i, len, &mut out[k * n..(k + len) * n])?;
        }
        Ok(())
    }

    /// Let the OS drop the mapped pages of the images at `positions` from memory (see
    /// [`MrcStack::release_images`]); streaming does this after each chunk so memory stays flat.
    pub fn release(&self, positions: &[usize]) {
        for (_, s, i, len) in self.runs(positions).flatten() {
            if let Some(stack) = self.stacks.mapped(s) {
                stack.release_images(i, len);
            }
        }
    }

    /// Split `positions` into runs of consecutive images of one stack: (offset in `positions`, stack,
    /// first image, length).
    fn runs<'a>(
        &'a self,
        positions: &'a [usize],
    ) -> impl Iterator<Item = Result<(usize, usize, usize, usize)>> + 'a {
        let mut k = 0;
        std::iter::from_fn(move || {
            if k >= positions.len() {
                return None;
            }
            let (s, i) = match self.position(positions[k]) {
                Ok(loc) => loc,
                Err(e) => {
                    k = positions.len();
                    return Some(Err(e));
                }
            };
            let mut len = 1;
            while k + len < positions.len() {
                match self.position(positions[k + len]) {
                    Ok((s2, i2)) if s2 == s && i2 == i + len => len += 1,
                    _ => break,
                }
            }
            let run = (k, s, i, len);
            k += len;
            Some(Ok(run))
        })
    }

    fn position(&self, pos: usize) -> Result<(usize, usize)> {
        self.row_of(pos).and_then(|r| self.locate(r)).ok_or_else(|| {
            Error::invalid(
                &self.input,
                Some(format!("particle {pos}")),
                format!("index out of range (the dataset has {} particles)", self.len()),
                "",
            )
        })
    }

    /// Stream the whole dataset once as batches, reading ahead on a background thread.
    ///
    /// With `shuffle: Some(seed)`, positions are split into chunks of consecutive positions, the chunk order
    /// is shuffled, and images are shuffled within each chunk: reads stay sequential on disk while batches
    /// are well mixed. Memory is about `(prefetch + 1) × chunk` images.
    pub fn stream(self: &Arc<Self>, opts: &StreamOptions) -> BatchStream {
        crate::stream::BatchStream::start(Arc::clone(self), opts)
    }
}

pub use crate::stream::{share, Batch, BatchStream, StreamOptions};

/// Parse a .txt list of stacks: one path per line, blank lines and `#` comments ignored.
pub fn read_stack_list(path: &Path) -> Result<Vec<String>> {
    let text = crate::input::read_text(path, "stack list (.txt)")?;
    let paths: Vec<String> = text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .map(str::to_string)
        .collect();
    if paths.is_empty() {
        return Err(Error::invalid(
            path,
            None,
            "the stack list names no files",
            "list one .mrcs path per line",
        ));
    }
    Ok(paths)
}

/// Find `name` (as written in a listing file) on disk: as given, beside the listing file, then in `datadir`
/// (full relative path, then basename). Returns the candidates tried when nothing exists.
pub fn resolve_path(name: &str, listing_dir: &Path, datadir: Option<&Path>) -> Result<PathBuf, Vec<PathBuf>> {
    let given = PathBuf::from(name);
    let mut candidates = vec![given.clone()];
    if given.is_relative() {
        candidates.push(listing_dir.join(&given));
    }
    if let Some(dd) = datadir {
        if given.is_relative() {
            candidates.push(dd.join(&given));
        }
        if let Some(base) = given.file_name() {
            candidates.push(dd.join(base));
        }
    }
    if datadir.is_none() {
        if let Some(base) = given.file_name() {
            candidates.push(listing_dir.join(base));
        }
    }
    candidates.dedup();
    match candidates.iter().find(|c| c.is_file()) {
        Some(found) => Ok(found.clone()),
        None => Err(candidates),
    }
}

/// Check every stack named in `names` (without mapping it), collecting every failure.
fn open_all(listing: &Path, names: &[String], dir: &Path, datadir: Option<&Path>) -> Result<Vec<StackInfo>> {
    let mut stacks = Vec::with_capacity(names.len());
    let mut errors = Vec::new();
    for name in names {
        match resolve_path(name, dir, datadir) {
            Ok(p) => match MrcStack::inspect(&p) {
                Ok(s) => stacks.push(s),
                Err(e) => errors.push(e),
            },
            Err(tried) => errors.push(missing_stack(listing, name, &tried)),
        }
    }
    Error::from_list(errors)?;
    Ok(stacks)
}

fn missing_stack(listing: &Path, name: &str, tried: &[PathBuf]) -> Error {
    let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
    Error::invalid(
        listing,
        Some(format!("stack `{name}`")),
        format!("file not found (tried {})", tried.join(", ")),
        "pass --datadir with the directory that holds the stacks",
    )
}

/// Open the stacks referenced by per-row image references and check every index against its stack.
fn open_rows(
    listing: &Path,
    refs: ImageRefs,
    dir: &Path,
    datadir: Option<&Path>,
) -> Result<(Vec<StackInfo>, ImageMap)> {
    let stacks = open_all(listing, &refs.paths, dir, datadir)?;
    let mut errors = Vec::new();
    let mut image = Vec::with_capacity(refs.index.len());
    // Report at most a few bad rows per stack: one bad export usually breaks thousands.
    let mut bad_per_stack: HashMap<u32, usize> = HashMap::new();
    for (row, (&s, &i)) in refs.file.iter().zip(&refs.index).enumerate() {
        let stack = &stacks[s as usize];
        if i >= stack.len as u64 {
            let count = bad_per_stack.entry(s).or_default();
            *count += 1;
            if *count <= 3 {
                errors.push(Error::invalid(
                    listing,
                    Some(format!("row {}", row + 1)),
                    format!(
                        "image {} of {} requested, but that stack holds {} images",
                        i + 1,
                        stack.path.display(),
                        stack.len
                    ),
                    "the metadata does not match the stack; re-export the particles or fix the image names",
                ));
            }
        }
        image.push(u32::try_from(i).unwrap_or(u32::MAX));
    }
    for (s, count) in bad_per_stack {
        if count > 3 {
            errors.push(Error::invalid(
                listing,
                None,
                format!(
                    "{} more rows point past the end of {}",
                    count - 3,
                    stacks[s as usize].path.display()
                ),
                "",
            ));
        }
    }
    Error::from_list(errors)?;
    Ok((stacks, ImageMap::Rows { stack: refs.file, image }))
}

/// All stacks must hold square images of one size.
fn check_boxes(input: &Path, stacks: &[StackInfo]) -> Result<usize> {
    let Some(first) = stacks.first() else {
        return Err(Error::invalid(input, None, "no particle stacks", ""));
    };
    let (ny, nx) = first.image_shape;
    let mut errors = Vec::new();
    if ny != nx {
        errors.push(Error::unsupported(
            &first.path,
            None,
            format!("non-square images ({nx}×{ny})"),
            "particles must be square; re-extract them with a square box",
        ));
    }
    for s in &stacks[1..] {
        if s.image_shape != (ny, nx) {
            let (sy, sx) = s.image_shape;
            errors.push(Error::invalid(
                &s.path,
                None,
                format!("images are {sx}×{sy} but {} has {nx}×{ny}", first.path.display()),
                "all stacks of a dataset must have the same box size; downsample or re-extract them to one size",
            ));
        }
    }
    Error::from_list(errors)?;
    Ok(nx)
}

/// Stacks mapped at once at most: a dataset of thousands of stacks (RELION writes one per micrograph) must
/// not map them all, or its address space alone exceeds `ulimit -v` limits on clusters.
const MAPPED_STACKS: usize = 64;

/// The stacks of a source: checked at open time, mapped on first read, least recently used unmapped first.
#[derive(Debug)]
struct Stacks {
    info: Vec<StackInfo>,
    /// Mapped stacks by index, most recently used last.
    open: Mutex<Vec<(usize, Arc<MrcStack>)>>,
}

impl Stacks {
    /// Stack `s`, mapped.
    fn get(&self, s: usize) -> Result<Arc<MrcStack>> {
        let mut open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if let Some(k) = open.iter().position(|(i, _)| *i == s) {
            let entry = open.remove(k);
            let stack = Arc::clone(&entry.1);
            open.push(entry);
            return Ok(stack);
        }
        let info = self.info.get(s).ok_or_else(|| Error::invalid("", None, format!("no stack {s}"), ""))?;
        let stack = Arc::new(MrcStack::open(&info.path)?);
        if open.len() >= MAPPED_STACKS {
            open.remove(0);
        }
        open.push((s, Arc::clone(&stack)));
        Ok(stack)
    }

    /// Stack `s` if it is mapped now.
    fn mapped(&self, s: usize) -> Option<Arc<MrcStack>> {
        let open = self.open.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        open.iter().find(|(i, _)| *i == s).map(|(_, stack)| Arc::clone(stack))
    }

    #[cfg(test)]
    fn mapped_count(&self) -> usize {
        self.open.lock().map(|o| o.len()).unwrap_or(0)
    }
}

fn check_selection(input: &Path, ind: &[usize], n_rows: usize) -> Result<()> {
    let bad: Vec<(usize, usize)> = ind.iter().copied().enumerate().filter(|&(_, v)| v >= n_rows).collect();
    if bad.is_empty() {
        return Ok(());
    }
    let shown: Vec<String> = bad.iter().take(5).map(|(p, v)| format!("{v} (entry {p})")).collect();
    Err(Error::invalid(
        input,
        None,
        format!(
            "{} selected indices are out of range for {} particles: {}",
            bad.len(),
            n_rows,
            shown.join(", ")
        ),
        "the --ind file was made for a different dataset; use indices in [0, N)",
    ))
}

#[cfg(test)]
mod tests;
