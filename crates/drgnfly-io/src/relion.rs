//! RELION particle tables: which STAR table holds the particles, optics-group joins, image names, and
//! the per-particle CTF and pose values the metadata commands extract.
//!
//! Conventions (cryoDRGN's, see reference §2.1, §2.5, §2.7):
//! - The particle table is the loop of `data_particles`, else the largest loop outside `data_optics`.
//! - RELION ≥ 3.1 files have a `data_optics` table; each particle's `_rlnOpticsGroup` selects its row.
//!   A value in the particle table wins over the optics table. Files without optics are RELION 3.0.
//! - `_rlnImageName` is `N@stack.mrcs` with N counting from 1; [`ImageName::index`] is 0-based.
//! - Angles are degrees (rot, tilt, psi: RELION's ZYZ Euler angles; the matrix is drgnfly-em's job).
//! - Origins are pixels: `_rlnOriginX/Y` (RELION 3.0) or `_rlnOriginX/YAngst` ÷ Å/px (RELION ≥ 3.1).
//! - Every row-returning method returns rows in file order: row i is the i-th data row of the particle
//!   table, which is how the images of a stack are matched to their metadata.
//! - Non-finite numbers (`nan`, `inf`) in a column that is used are errors naming row and column.

use std::collections::HashMap;
use std::path::Path;

use crate::error::{Error, Result};
use crate::star::{parse_integer, write_star, Block, Loop, LoopBuilder, StarFile};

/// RELION STAR layout generation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelionVersion {
    /// One particle table with every CTF value per particle and origins in pixels.
    Relion30,
    /// `data_optics` + `data_particles` (also RELION 4 and 5), origins in Å.
    Relion31,
}

/// A particle image reference parsed from `_rlnImageName`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ImageName<'a> {
    /// 0-based index of the image in its stack (the `N` of `N@path` minus 1).
    pub index: u64,
    /// The stack path as written (relative paths are resolved by the caller).
    pub path: &'a str,
}

/// All image references of a table, with each distinct stack path stored once.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ImageRefs {
    /// Distinct stack paths in order of first appearance.
    pub paths: Vec<String>,
    /// Per particle: index into `paths`.
    pub file: Vec<u32>,
    /// Per particle: 0-based image index within its stack.
    pub index: Vec<u64>,
}

/// Values that replace (or supply) CTF columns; each matches a command-line flag of `parse-ctf-star`.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct CtfOverrides {
    /// `-D`: box size of the original particles (px).
    pub d: Option<f64>,
    /// `--Apix`: pixel size of the original particles (Å).
    pub apix: Option<f64>,
    /// `--kv`: accelerating voltage (kV).
    pub kv: Option<f64>,
    /// `--cs`: spherical aberration (mm).
    pub cs: Option<f64>,
    /// `-w`: amplitude contrast.
    pub w: Option<f64>,
    /// `--ps`: phase shift (degrees).
    pub ps: Option<f64>,
}

/// A RELION particle table with its optics join.
#[derive(Debug, Clone)]
pub struct RelionParticles {
    star: StarFile,
    particles: (usize, usize),
    optics: Option<(usize, usize)>,
    /// Per particle, its row in the optics table (empty without optics).
    optics_row: Vec<u32>,
}

impl RelionParticles {
    /// Read `path` and locate its particle and optics tables.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_star(StarFile::open(path)?)
    }

    /// Locate the particle and optics tables of a parsed file.
    pub fn from_star(star: StarFile) -> Result<Self> {
        let path = star.path().to_path_buf();
        let largest_in = |b: &Block| b.largest_loop();
        let mut particles = None;
        for (bi, b) in star.blocks().iter().enumerate() {
            if b.name() == "particles" {
                particles = largest_in(b).map(|li| (bi, li));
                break;
            }
        }
        if particles.is_none() {
            let mut best: Option<((usize, usize), usize)> = None;
            for (bi, b) in star.blocks().iter().enumerate().filter(|(_, b)| b.name() != "optics") {
                for (li, l) in b.loops().iter().enumerate() {
                    if best.is_none_or(|(_, n)| l.len() > n) {
                        best = Some(((bi, li), l.len()));
                    }
                }
            }
            particles = best.map(|(at, _)| at);
        }
        let Some(particles) = particles else {
            return Err(Error::invalid(
                &path,
                None,
                "no particle table (a loop_ outside data_optics)",
                "give a RELION particle STAR file (e.g. run_data.star or particles.star)",
            ));
        };
        let optics = star
            .blocks()
            .iter()
            .enumerate()
            .find(|(_, b)| b.name() == "optics")
            .and_then(|(bi, b)| b.largest_loop().map(|li| (bi, li)))
            .filter(|&at| at != particles);
        let mut me = Self { star, particles, optics, optics_row: Vec::new() };
        me.optics_row = me.join_optics()?;
        Ok(me)
    }

    fn table(&self, at: (usize, usize)) -> &Loop {
        &self.star.blocks()[at.0].loops()[at.1]
    }

    /// For every particle, its optics-table row.
    fn join_optics(&self) -> Result<Vec<u32>> {
        let Some(optics) = self.optics() else { return Ok(Vec::new()) };
        let parts = self.particles();
        let path = self.path();
        let Some(pcol) = parts.column_index("_rlnOpticsGroup") else {
            if optics.len() == 1 {
                return Ok(vec![0; parts.len()]);
            }
            return Err(Error::invalid(
                path,
                Some(format!("data_{}", parts.block_name())),
                format!("no _rlnOpticsGroup column, but data_optics has {} groups", optics.len()),
                "add _rlnOpticsGroup to the particles, or keep a single optics group",
            ));
        };
        let groups = optics.column_i64("_rlnOpticsGroup")?;
        let mut row_of: HashMap<i64, u32> = HashMap::with_capacity(groups.len());
        for (r, &g) in groups.iter().enumerate() {
            if row_of.insert(g, r as u32).is_some() {
                return Err(Error::invalid(
                    path,
                    Some(optics.cell_record(r, "_rlnOpticsGroup")),
                    format!("optics group {g} is defined twice"),
                    "give every optics group its own number",
                ));
            }
        }
        let mut out = Vec::with_capacity(parts.len());
        for (r, v) in parts.column(pcol).enumerate() {
            let group = parse_integer(v).ok_or_else(|| {
                Error::invalid(
                    path,
                    Some(parts.cell_record(r, "_rlnOpticsGroup")),
                    format!("`{v}` is not an optics group number"),
                    "fix or remove that row",
                )
            })?;
            let row = row_of.get(&group).copied().ok_or_else(|| {
                let mut known: Vec<i64> = groups.clone();
                known.sort_unstable();
                Error::invalid(
                    path,
                    Some(parts.cell_record(r, "_rlnOpticsGroup")),
                    format!("optics group {group} is not in data_optics (it has {known:?})"),
                    "add the group to data_optics or fix the particle's _rlnOpticsGroup",
                )
            })?;
            out.push(row);
        }
        Ok(out)
    }

    /// The STAR file.
    pub fn star(&self) -> &StarFile {
        &self.star
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.star.path()
    }

    /// RELION 3.1 and later when a `data_optics` table exists, else 3.0.
    pub fn version(&self) -> RelionVersion {
        if self.optics.is_some() {
            RelionVersion::Relion31
        } else {
            RelionVersion::Relion30
        }
    }

    /// The particle table.
    pub fn particles(&self) -> &Loop {
        self.table(self.particles)
    }

    /// The optics table, if any.
    pub fn optics(&self) -> Option<&Loop> {
        self.optics.map(|at| self.table(at))
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.particles().len()
    }

    /// Whether the table has no particles.
    pub fn is_empty(&self) -> bool {
        self.particles().is_empty()
    }

    /// The optics-table row of `particle`, if the file has optics.
    pub fn optics_row(&self, particle: usize) -> Option<usize> {
        self.optics_row.get(particle).map(|&r| r as usize)
    }

    /// Whether `name` is a particle column or an optics column.
    pub fn has_column(&self, name: &str) -> bool {
        self.particles().has_column(name) || self.optics().is_some_and(|o| o.has_column(name))
    }

    /// The value of `name` for `particle`: from the particle table, else from its optics group.
    pub fn value(&self, particle: usize, name: &str) -> Option<&str> {
        let parts = self.particles();
        if let Some(c) = parts.column_index(name) {
            return parts.get(particle, c);
        }
        let optics = self.optics()?;
        optics.get(self.optics_row(particle)?, optics.column_index(name)?)
    }

    /// Column `name` as finite numbers, one per particle (particle table first, then optics), or `None`
    /// when neither table has it.
    pub fn column_f64(&self, name: &str) -> Result<Option<Vec<f64>>> {
        let parts = self.particles();
        if let Some(c) = parts.column_index(name) {
            let v = parts.column_f64_at(c)?;
            check_finite(parts, &v, name, |r| r)?;
            return Ok(Some(v));
        }
        let Some(optics) = self.optics() else { return Ok(None) };
        let Some(c) = optics.column_index(name) else { return Ok(None) };
        let per_group = optics.column_f64_at(c)?;
        check_finite(optics, &per_group, name, |r| r)?;
        Ok(Some(self.optics_row.iter().map(|&r| per_group[r as usize]).collect()))
    }

    /// Column `name`, required: the error names the column and `how` (e.g. "pass --kv").
    fn require_f64(&self, name: &str, how: &str) -> Result<Vec<f64>> {
        self.column_f64(name)?.ok_or_else(|| {
            Error::invalid(
                self.path(),
                Some(format!("data_{}", self.particles().block_name())),
                format!("no {name} in the particle or optics table"),
                how.to_string(),
            )
        })
    }

    /// The image reference of `particle`.
    pub fn image_name(&self, particle: usize) -> Result<ImageName<'_>> {
        self.image_name_in(self.particles().require_column("_rlnImageName")?, particle)
    }

    /// The image reference of `particle`, its `_rlnImageName` being column `c`.
    fn image_name_in(&self, c: usize, particle: usize) -> Result<ImageName<'_>> {
        let parts = self.particles();
        let v = parts.get(particle, c).ok_or_else(|| {
            Error::invalid(
                self.path(),
                None,
                format!("particle {particle} is out of range (the table has {} rows)", parts.len()),
                "",
            )
        })?;
        parse_image_name(v).map_err(|problem| {
            Error::invalid(
                self.path(),
                Some(parts.cell_record(particle, "_rlnImageName")),
                problem,
                "RELION image names are N@stack.mrcs with N counting from 1",
            )
        })
    }

    /// Every particle's image reference, with stack paths deduplicated.
    pub fn image_refs(&self) -> Result<ImageRefs> {
        let mut refs = ImageRefs::default();
        let mut ids: HashMap<&str, u32> = HashMap::new();
        refs.file.reserve(self.len());
        refs.index.reserve(self.len());
        let c = self.particles().require_column("_rlnImageName")?;
        for p in 0..self.len() {
            let name = self.image_name_in(c, p)?;
            let id = match ids.get(name.path) {
                Some(&id) => id,
                None => {
                    let id = refs.paths.len() as u32;
                    refs.paths.push(name.path.to_string());
                    ids.insert(name.path, id);
                    id
                }
            };
            refs.file.push(id);
            refs.index.push(name.index);
        }
        Ok(refs)
    }

    /// Per-particle box size (px): `d` if given, else `_rlnImageSize`.
    pub fn box_size(&self, d: Option<f64>) -> Result<Vec<f64>> {
        match d {
            Some(d) => Ok(vec![d; self.len()]),
            None => self.require_f64("_rlnImageSize", "pass -D (the box size of the original particles, px)"),
        }
    }

    /// Per-particle pixel size (Å): `apix` if given, else `_rlnImagePixelSize`, else (RELION 3.0)
    /// `_rlnDetectorPixelSize` (µm) × 10⁴ / `_rlnMagnification`.
    pub fn pixel_size(&self, apix: Option<f64>) -> Result<Vec<f64>> {
        if let Some(a) = apix {
            return Ok(vec![a; self.len()]);
        }
        if let Some(v) = self.column_f64("_rlnImagePixelSize")? {
            return Ok(v);
        }
        if let (Some(det), Some(mag)) =
            (self.column_f64("_rlnDetectorPixelSize")?, self.column_f64("_rlnMagnification")?)
        {
            if let Some(r) = mag.iter().position(|&m| m <= 0.0) {
                return Err(Error::invalid(
                    self.path(),
                    Some(self.particles().cell_record(r, "_rlnMagnification")),
                    "magnification must be positive",
                    "pass --Apix",
                ));
            }
            return Ok(det.iter().zip(&mag).map(|(d, m)| d * 1e4 / m).collect());
        }
        Err(Error::invalid(
            self.path(),
            Some(format!("data_{}", self.particles().block_name())),
            "no _rlnImagePixelSize (nor _rlnDetectorPixelSize and _rlnMagnification)",
            "pass --Apix (the pixel size of the original particles, Å)",
        ))
    }

    /// cryoDRGN's ctf.pkl rows `[D, Apix, dfU, dfV, dfAng, kV, Cs, w, phase]` (px, Å, Å, Å, °, kV, mm,
    /// –, °), one per particle, as `parse_ctf_star` builds them. Overrides replace columns. Without
    /// `_rlnPhaseShift` (or `--ps`) the phase shift is 0, as RELION reads it.
    pub fn ctf_params(&self, o: &CtfOverrides) -> Result<Vec<[f64; 9]>> {
        let d = self.box_size(o.d)?;
        let apix = self.pixel_size(o.apix)?;
        let no_flag = "the STAR file must have it (no flag supplies it)";
        let df_u = self.require_f64("_rlnDefocusU", no_flag)?;
        let df_v = self.require_f64("_rlnDefocusV", no_flag)?;
        let df_ang = self.require_f64("_rlnDefocusAngle", no_flag)?;
        let or = |v: Option<f64>, name: &str, flag: &str| match v {
            Some(v) => Ok(vec![v; self.len()]),
            None => self.require_f64(name, &format!("pass {flag}")),
        };
        let kv = or(o.kv, "_rlnVoltage", "--kv (kV)")?;
        let cs = or(o.cs, "_rlnSphericalAberration", "--cs (mm)")?;
        let w = or(o.w, "_rlnAmplitudeContrast", "-w (amplitude contrast)")?;
        // RELION reads an absent phase shift as 0 (no phase plate); callers note it (has_column).
        let ps = match (o.ps, self.column_f64("_rlnPhaseShift")?) {
            (Some(v), _) => vec![v; self.len()],
            (None, Some(col)) => col,
            (None, None) => vec![0.0; self.len()],
        };
        Ok((0..self.len())
            .map(|i| [d[i], apix[i], df_u[i], df_v[i], df_ang[i], kv[i], cs[i], w[i], ps[i]])
            .collect())
    }

    /// Euler angles `[rot, tilt, psi]` in degrees per particle.
    pub fn euler_deg(&self) -> Result<Vec<[f64; 3]>> {
        let how = "this STAR file has no poses: use the output of a 3D refinement or classification";
        let rot = self.require_f64("_rlnAngleRot", how)?;
        let tilt = self.require_f64("_rlnAngleTilt", how)?;
        let psi = self.require_f64("_rlnAnglePsi", how)?;
        Ok((0..self.len()).map(|i| [rot[i], tilt[i], psi[i]]).collect())
    }

    /// Origins `[x, y]` in pixels per particle: `_rlnOriginX/Y`, or `_rlnOriginX/YAngst` ÷ Å/px (the
    /// pixel size from `apix`, else [`RelionParticles::pixel_size`]). `None` when the file has neither.
    pub fn origin_px(&self, apix: Option<f64>) -> Result<Option<Vec<[f64; 2]>>> {
        if let (Some(x), Some(y)) = (self.column_f64("_rlnOriginX")?, self.column_f64("_rlnOriginY")?) {
            return Ok(Some(x.iter().zip(&y).map(|(&x, &y)| [x, y]).collect()));
        }
        let (Some(x), Some(y)) = (self.column_f64("_rlnOriginXAngst")?, self.column_f64("_rlnOriginYAngst")?)
        else {
            return Ok(None);
        };
        let a = self.pixel_size(apix)?;
        Ok(Some((0..self.len()).map(|i| [x[i] / a[i], y[i] / a[i]]).collect()))
    }

    /// A copy of the file with only the particles `indices` (0-based, in that order) and only the optics
    /// groups they still use (as `filter-star`). Other blocks are kept unchanged.
    pub fn filter_particles(&self, indices: &[usize]) -> Result<StarFile> {
        let parts = self.particles().select_rows(indices)?;
        let optics = match self.optics() {
            Some(o) => {
                let mut used = vec![false; o.len()];
                for &i in indices {
                    if let Some(r) = self.optics_row(i) {
                        used[r] = true;
                    }
                }
                let keep: Vec<usize> = (0..o.len()).filter(|&r| used[r]).collect();
                Some(o.select_rows(&keep)?)
            }
            None => None,
        };
        let mut out = StarFile::new(self.path());
        for (bi, b) in self.star.blocks().iter().enumerate() {
            let mut nb = Block::new(b.name());
            nb.set_version(b.version());
            for (k, v) in b.pairs() {
                nb.push_pair(k, v.clone());
            }
            for (li, l) in b.loops().iter().enumerate() {
                if (bi, li) == self.particles {
                    nb.push_loop(parts.clone());
                } else if Some((bi, li)) == self.optics {
                    nb.push_loop(optics.clone().unwrap_or_else(|| l.clone()));
                } else {
                    nb.push_loop(l.clone());
                }
            }
            out.push_block(nb);
        }
        Ok(out)
    }
}

/// Error on the first non-finite value of a column; `row_of` maps a value index to its table row.
fn check_finite(table: &Loop, v: &[f64], name: &str, row_of: impl Fn(usize) -> usize) -> Result<()> {
    match v.iter().position(|x| !x.is_finite()) {
        None => Ok(()),
        Some(i) => Err(Error::invalid(
            table.path(),
            Some(table.cell_record(row_of(i), name)),
            format!("{} is not a finite number", v[i]),
            "fix or remove that row",
        )),
    }
}

/// Parse `N@path` (N ≥ 1) into a 0-based index and the path. The error text says what is wrong.
pub fn parse_image_name(s: &str) -> std::result::Result<ImageName<'_>, String> {
    let Some((n, path)) = s.split_once('@') else {
        return Err(format!("image name `{s}` has no `@`"));
    };
    let n: u64 = n.parse().map_err(|_| format!("`{n}` before the @ in `{s}` is not a whole number"))?;
    if n == 0 {
        return Err(format!("image number 0 in `{s}`: RELION counts images from 1"));
    }
    if path.is_empty() {
        return Err(format!("image name `{s}` has no stack path after the @"));
    }
    Ok(ImageName { index: n - 1, path })
}

/// `N@path` for a 0-based image `index`, with RELION's six-digit zero padding.
pub fn format_image_name(index: u64, path: &str) -> String {
    format!("{:06}@{path}", index + 1)
}

/// Per-particle values for writing a RELION STAR file (`write-star`). All present vectors have one
/// entry per image name.
#[derive(Debug, Clone, Default)]
pub struct ParticleRecords {
    /// `N@path` names, e.g. from [`format_image_name`].
    pub image_names: Vec<String>,
    /// ctf.pkl rows `[D, Apix, dfU, dfV, dfAng, kV, Cs, w, phase]`.
    pub ctf: Option<Vec<[f64; 9]>>,
    /// `[rot, tilt, psi]` in degrees.
    pub euler_deg: Option<Vec<[f64; 3]>>,
    /// `[x, y]` origins in pixels.
    pub origin_px: Option<Vec<[f64; 2]>>,
    /// Box size (px) for the optics table when `ctf` is absent (RELION 3.1).
    pub image_size: Option<f64>,
    /// Pixel size (Å) when `ctf` is absent (optics table, Å origins).
    pub apix: Option<f64>,
}

/// Build a RELION STAR file from per-particle records.
///
/// - [`RelionVersion::Relion31`]: `data_optics` with one group per distinct (box, Å/px, kV, Cs, w) and
///   `data_particles` with `_rlnImageName`, defocus, phase shift, angles, `_rlnOriginX/YAngst` (px × Å/px)
///   and `_rlnOpticsGroup`.
/// - [`RelionVersion::Relion30`]: one `data_images` table with every CTF value per particle, origins in
///   pixels, and the pixel size as `_rlnMagnification` 10000 with `_rlnDetectorPixelSize` = Å/px.
pub fn relion_star(
    path: impl AsRef<Path>,
    rec: &ParticleRecords,
    version: RelionVersion,
) -> Result<StarFile> {
    let path = path.as_ref();
    let n = rec.image_names.len();
    let check = |what: &str, len: Option<usize>| match len {
        Some(l) if l != n => Err(Error::invalid(
            path,
            None,
            format!("{what} has {l} rows but there are {n} images"),
            "give as many CTF/pose rows as images (use --ind consistently)",
        )),
        _ => Ok(()),
    };
    check("the CTF", rec.ctf.as_ref().map(Vec::len))?;
    check("the rotations", rec.euler_deg.as_ref().map(Vec::len))?;
    check("the translations", rec.origin_px.as_ref().map(Vec::len))?;
    let apix_of = |i: usize| rec.ctf.as_ref().map(|c| c[i][1]).or(rec.apix);
    let f = |x: f64| format!("{x:.6}");

    let mut star = StarFile::new(path);
    let mut cols: Vec<&str> = vec!["_rlnImageName"];
    let has_ctf = rec.ctf.is_some();
    match version {
        RelionVersion::Relion31 => {
            if !has_ctf && n > 0 && (rec.image_size.is_none() || rec.apix.is_none()) {
                return Err(Error::invalid(
                    path,
                    None,
                    "a RELION 3.1 optics table needs the box size and pixel size",
                    "pass a CTF file, or -D and --Apix (or write RELION 3.0 with --relion30)",
                ));
            }
            // Optics groups: distinct (D, Apix, kV, Cs, w), numbered from 1 in order of appearance.
            let key = |i: usize| -> [u64; 5] {
                match &rec.ctf {
                    Some(c) => [c[i][0], c[i][1], c[i][5], c[i][6], c[i][7]].map(f64::to_bits),
                    None => [rec.image_size.unwrap_or(0.0), rec.apix.unwrap_or(0.0), 0.0, 0.0, 0.0]
                        .map(f64::to_bits),
                }
            };
            let mut groups: Vec<[u64; 5]> = Vec::new();
            let mut group_of = Vec::with_capacity(n);
            for i in 0..n {
                let k = key(i);
                let g = groups.iter().position(|x| *x == k).unwrap_or_else(|| {
                    groups.push(k);
                    groups.len() - 1
                });
                group_of.push(g + 1);
            }
            let mut ocols =
                vec!["_rlnOpticsGroup", "_rlnOpticsGroupName", "_rlnImageSize", "_rlnImagePixelSize"];
            if has_ctf {
                ocols.extend(["_rlnVoltage", "_rlnSphericalAberration", "_rlnAmplitudeContrast"]);
            }
            ocols.push("_rlnImageDimensionality");
            let mut ob = LoopBuilder::new(ocols);
            for (g, k) in groups.iter().enumerate() {
                let v = k.map(f64::from_bits);
                let mut row =
                    vec![format!("{}", g + 1), format!("opticsGroup{}", g + 1), format!("{}", v[0]), f(v[1])];
                if has_ctf {
                    row.extend([f(v[2]), f(v[3]), f(v[4])]);
                }
                row.push("2".into());
                ob.push_row(&row)?;
            }
            let mut optics = Block::new("optics");
            optics.set_version(Some(30001));
            optics.push_loop(ob.finish());
            star.push_block(optics);

            if has_ctf {
                cols.extend(["_rlnDefocusU", "_rlnDefocusV", "_rlnDefocusAngle", "_rlnPhaseShift"]);
            }
            if rec.euler_deg.is_some() {
                cols.extend(["_rlnAngleRot", "_rlnAngleTilt", "_rlnAnglePsi"]);
            }
            if rec.origin_px.is_some() {
                cols.extend(["_rlnOriginXAngst", "_rlnOriginYAngst"]);
            }
            cols.push("_rlnOpticsGroup");
            let mut pb = LoopBuilder::new(cols);
            let mut row: Vec<String> = Vec::new();
            for i in 0..n {
                row.clear();
                row.push(rec.image_names[i].clone());
                if let Some(c) = &rec.ctf {
                    row.extend([f(c[i][2]), f(c[i][3]), f(c[i][4]), f(c[i][8])]);
                }
                if let Some(e) = &rec.euler_deg {
                    row.extend(e[i].map(f));
                }
                if let Some(o) = &rec.origin_px {
                    let a = apix_of(i).unwrap_or(1.0);
                    row.extend([f(o[i][0] * a), f(o[i][1] * a)]);
                }
                row.push(group_of[i].to_string());
                pb.push_row(&row)?;
            }
            let mut parts = Block::new("particles");
            parts.set_version(Some(30001));
            parts.push_loop(pb.finish());
            star.push_block(parts);
        }
        RelionVersion::Relion30 => {
            if has_ctf {
                cols.extend([
                    "_rlnDefocusU",
                    "_rlnDefocusV",
                    "_rlnDefocusAngle",
                    "_rlnVoltage",
                    "_rlnSphericalAberration",
                    "_rlnAmplitudeContrast",
                    "_rlnPhaseShift",
                ]);
            }
            let with_apix = has_ctf || rec.apix.is_some();
            if with_apix {
                cols.extend(["_rlnMagnification", "_rlnDetectorPixelSize"]);
            }
            if rec.euler_deg.is_some() {
                cols.extend(["_rlnAngleRot", "_rlnAngleTilt", "_rlnAnglePsi"]);
            }
            if rec.origin_px.is_some() {
                cols.extend(["_rlnOriginX", "_rlnOriginY"]);
            }
            let mut pb = LoopBuilder::new(cols);
            let mut row: Vec<String> = Vec::new();
            for i in 0..n {
                row.clear();
                row.push(rec.image_names[i].clone());
                if let Some(c) = &rec.ctf {
                    row.extend([2, 3, 4, 5, 6, 7, 8].map(|k| f(c[i][k])));
                }
                if with_apix {
                    row.extend(["10000.000000".to_string(), f(apix_of(i).unwrap_or(1.0))]);
                }
                if let Some(e) = &rec.euler_deg {
                    row.extend(e[i].map(f));
                }
                if let Some(o) = &rec.origin_px {
                    row.extend(o[i].map(f));
                }
                pb.push_row(&row)?;
            }
            let mut b = Block::new("images");
            b.push_loop(pb.finish());
            star.push_block(b);
        }
    }
    Ok(star)
}

/// Build with [`relion_star`] and write atomically to `path`.
pub fn write_relion(path: impl AsRef<Path>, rec: &ParticleRecords, version: RelionVersion) -> Result<()> {
    let star = relion_star(path.as_ref(), rec, version)?;
    write_star(path, &star)
}

#[cfg(test)]
mod tests;
