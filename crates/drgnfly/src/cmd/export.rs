//! What `write-star` and `write-cs` share: the images of a `.mrcs`/`.txt` dataset and the ctf.pkl and
//! pose.pkl that describe them, checked against each other and reduced to an `--ind` selection.
//!
//! Conventions:
//! - ctf.pkl and pose.pkl describe every image of the input, in order (as in cryoDRGN); `--ind` selects
//!   the same rows of all three. A count that differs is an error naming the file that is off.
//! - Stack paths are written as they resolve from the current directory (RELION resolves image names from
//!   its project directory), or absolute with `--full-path`. Entries of a `.txt` list are relative to the
//!   list's directory; cryoDRGN copies them unchanged, which breaks when the list lives elsewhere.
//! - The written box and pixel size are those of the images in the stack. When ctf.pkl describes the
//!   original particles at another box D₀ (a downsampled stack), its first two columns are rescaled:
//!   D, Apix₀·D₀/D. cryoDRGN writes D₀ and Apix₀, which RELION would misread for the downsampled images.

use std::path::{Path, PathBuf};

use anyhow::{bail, Context, Result};
use drgnfly_io::mrc::MrcStack;
use drgnfly_io::pickle::{self, Poses};
use drgnfly_io::selection::Selection;
use drgnfly_io::source::{read_stack_list, resolve_path};

/// The selected images with their metadata.
pub struct Export {
    /// Per selected image: its stack's path as written and its 0-based index in that stack.
    pub images: Vec<(usize, u64)>,
    /// Stack paths as they are written.
    pub stack_paths: Vec<String>,
    /// Box size of the images (px).
    pub d: usize,
    /// Pixel size in the first stack's header, if it records one.
    pub header_apix: Option<f32>,
    /// ctf.pkl rows of the selected images, rescaled to box `d`.
    pub ctf: Option<Vec<[f64; 9]>>,
    /// Poses of the selected images (translations as fractions of the box; zero when the file has none).
    pub poses: Option<Poses>,
}

/// The inputs named on the command line.
pub struct ExportInputs<'a> {
    /// `.mrcs`/`.mrc` stack or `.txt` list of stacks.
    pub particles: &'a Path,
    /// ctf.pkl.
    pub ctf: Option<&'a Path>,
    /// pose.pkl.
    pub poses: Option<&'a Path>,
    /// Index selection (.pkl or .txt).
    pub ind: Option<&'a Path>,
    /// Where to look for the stacks of a .txt list.
    pub datadir: Option<&'a Path>,
    /// Write absolute stack paths.
    pub full_path: bool,
}

/// Open the stacks, read the metadata, check the counts and apply `--ind`.
pub fn load(inp: &ExportInputs<'_>) -> Result<Export> {
    let (stack_paths, counts, d, header_apix) = open_stacks(inp.particles, inp.datadir, inp.full_path)?;
    let n: usize = counts.iter().sum();
    let all: Vec<(usize, u64)> =
        counts.iter().enumerate().flat_map(|(s, &c)| (0..c as u64).map(move |i| (s, i))).collect();
    let what = format!("{} has {n} images", inp.particles.display());

    let ctf = match inp.ctf {
        Some(p) => {
            let c = pickle::load_ctf(p)?;
            if c.len() != n {
                bail!("{}: has {} CTF rows but {what}; the CTF file must describe every image of the input, in order (--ind selects from both)", p.display(), c.len());
            }
            Some(c)
        }
        None => None,
    };
    let poses = match inp.poses {
        Some(p) => {
            let mut poses = pickle::load_poses(p)?;
            if poses.len() != n {
                bail!("{}: has poses for {} images but {what}; the pose file must describe every image of the input, in order (--ind selects from both)", p.display(), poses.len());
            }
            if poses.trans.is_none() {
                tracing::warn!("{}: rotations only; translations are written as 0", p.display());
                poses.trans = Some(vec![[0.0; 2]; n]);
            }
            Some(poses)
        }
        None => None,
    };

    let rows: Vec<usize> = match inp.ind {
        Some(p) => Selection::load(p)?.resolve(n)?,
        None => (0..n).collect(),
    };
    let images = rows.iter().map(|&r| all[r]).collect();
    let ctf = ctf.map(|c| {
        let other_box = rows.iter().filter(|&&r| f64::from(c[r][0]) != d as f64).count();
        if other_box > 0 {
            tracing::warn!(
                "{other_box} CTF rows describe another box size than the stack's {d} px; box and pixel size are rescaled to the stack"
            );
        }
        rows.iter().map(|&r| rescale_ctf(c[r], d)).collect::<Vec<_>>()
    });
    let poses = poses.map(|p| Poses {
        rot: rows.iter().map(|&r| p.rot[r]).collect(),
        trans: p.trans.map(|t| rows.iter().map(|&r| t[r]).collect()),
    });
    Ok(Export { images, stack_paths, d, header_apix, ctf, poses })
}

/// A ctf.pkl row for images of box `d`: `[d, Apix₀·D₀/d, …]` (the pixel size scales with the box).
fn rescale_ctf(row: [f32; 9], d: usize) -> [f64; 9] {
    let mut r = row.map(f64::from);
    let d = d as f64;
    if r[0] != d && r[0] > 0.0 {
        r[1] *= r[0] / d;
        r[0] = d;
    }
    r
}

type Stacks = (Vec<String>, Vec<usize>, usize, Option<f32>);

/// Paths as written, image counts, the common box size and the first header's pixel size.
fn open_stacks(particles: &Path, datadir: Option<&Path>, full_path: bool) -> Result<Stacks> {
    let ext = particles.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
    let files: Vec<PathBuf> = match ext.as_str() {
        "mrcs" | "mrc" => vec![particles.to_path_buf()],
        "txt" => {
            let dir = particles.parent().map(Path::to_path_buf).unwrap_or_default();
            read_stack_list(particles)?
                .iter()
                .map(|name| {
                    resolve_path(name, &dir, datadir).map_err(|tried| {
                        let tried: Vec<String> = tried.iter().map(|p| p.display().to_string()).collect();
                        anyhow::anyhow!(
                            "{}: stack `{name}`: file not found (tried {}). Pass --datadir with the directory that holds the stacks",
                            particles.display(),
                            tried.join(", ")
                        )
                    })
                })
                .collect::<Result<_>>()?
        }
        _ => bail!(
            "{}: expected an .mrcs stack or a .txt list of stacks (a .star input is filtered by write-star, a .cs input by filter-cs)",
            particles.display()
        ),
    };
    let mut paths = Vec::with_capacity(files.len());
    let mut counts = Vec::with_capacity(files.len());
    let mut shape = None;
    let mut header_apix = None;
    for f in &files {
        let stack = MrcStack::open(f)?;
        let s = stack.image_shape();
        match shape {
            None => {
                if s.0 != s.1 {
                    bail!("{}: images are {}×{}, not square", f.display(), s.1, s.0);
                }
                shape = Some(s);
                header_apix = stack.header().known_apix();
            }
            Some(first) if first != s => {
                bail!(
                    "{}: images are {}×{} but the first stack's are {}×{}",
                    f.display(),
                    s.1,
                    s.0,
                    first.1,
                    first.0
                )
            }
            Some(_) => {}
        }
        counts.push(stack.len());
        let written = if full_path {
            std::fs::canonicalize(f).with_context(|| format!("resolving {}", f.display()))?
        } else {
            f.clone()
        };
        paths.push(written.to_string_lossy().into_owned());
    }
    let d = shape.map_or(0, |s| s.1);
    Ok((paths, counts, d, header_apix))
}
