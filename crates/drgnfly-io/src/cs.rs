//! cryoSPARC `.cs` particle files: numpy structured arrays with `blob/*`, `ctf/*` and `alignments*/*`
//! fields, read with cryoDRGN's conventions (reference §2.1, §2.5–2.7):
//! - `blob/path` is the stack (a leading `>` marks a path relative to the project and is stripped);
//!   `blob/idx` is the 0-based image index in it; `blob/shape` is (ny, nx) px; `blob/psize_A` is Å/px.
//! - CTF: `ctf/df1_A`, `ctf/df2_A` (Å), `ctf/df_angle_rad` and `ctf/phase_shift_rad` (radians, converted to
//!   degrees), `ctf/accel_kv`, `ctf/cs_mm`, `ctf/amp_contrast`.
//! - Poses: `alignments3D/pose` is an axis-angle vector (radians; the matrix is drgnfly-em's job) and
//!   `alignments3D/shift` a shift in pixels; ab initio jobs store them under `alignments_class_0/`.
//! - Rows are returned in file order; errors name rows 0-based, as cryoSPARC and numpy count them.
//!   Non-finite values in a used field are errors.

use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::Path;

use crate::error::{Error, Result};
use crate::npy::NpyArray;
use crate::relion::ImageRefs;

/// An opened cryoSPARC `.cs` file.
#[derive(Debug)]
pub struct CsFile {
    array: NpyArray,
}

/// What produces each field family, for messages about missing fields.
fn producer(field: &str) -> &'static str {
    if field.starts_with("blob/") {
        "it comes from particle extraction: export the particles of a job that has images (blob/ fields)"
    } else if field.starts_with("ctf/") {
        "it comes from CTF estimation: export the particles of an extraction or refinement job"
    } else if field.starts_with("alignments_class_0/") {
        "it comes from an ab-initio reconstruction job; without --abinit, alignments3D/ is read"
    } else if field.starts_with("alignments3D/") {
        "it comes from a 3D refinement job (homogeneous, non-uniform or heterogeneous refinement)"
    } else {
        "check that this is the right .cs file"
    }
}

impl CsFile {
    /// Open and check that `path` is a 1-D structured array.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        Self::from_array(NpyArray::open(path)?)
    }

    /// Wrap an opened array.
    pub fn from_array(array: NpyArray) -> Result<Self> {
        if array.fields().next().is_none() || array.shape().len() != 1 {
            return Err(Error::invalid(
                array.path(),
                None,
                format!(
                    "not a cryoSPARC particle file: a structured 1-D array is expected, found shape {:?}",
                    array.shape()
                ),
                "give the particles .cs exported from a cryoSPARC job",
            ));
        }
        Ok(Self { array })
    }

    /// The underlying array.
    pub fn array(&self) -> &NpyArray {
        &self.array
    }

    /// The file's path.
    pub fn path(&self) -> &Path {
        self.array.path()
    }

    /// Number of particles.
    pub fn len(&self) -> usize {
        self.array.len()
    }

    /// Whether there are no particles.
    pub fn is_empty(&self) -> bool {
        self.array.is_empty()
    }

    fn missing(&self, field: &str, flag: Option<&str>) -> Error {
        let hint = match flag {
            Some(flag) => format!("a .cs without {field}: pass {flag}"),
            None => producer(field).to_string(),
        };
        Error::invalid(self.path(), Some(format!("field {field}")), "no such field", hint)
    }

    /// Field `name` as finite f64 values (rows × elements per row), with `elems` checked.
    fn floats(&self, name: &str, elems: usize, flag: Option<&str>) -> Result<Vec<f64>> {
        if !self.array.has_field(name) {
            return Err(self.missing(name, flag));
        }
        let f = self.array.field(name)?;
        if f.field().count() != elems {
            return Err(Error::invalid(
                self.path(),
                Some(format!("field {name}")),
                format!("expected {elems} value(s) per row, found type {}", f.field().type_str()),
                producer(name),
            ));
        }
        let v = f.column_f64()?;
        if let Some(i) = v.iter().position(|x| !x.is_finite()) {
            return Err(Error::invalid(
                self.path(),
                Some(format!("row {} (0-based), field {name}", i / elems.max(1))),
                format!("{} is not a finite number", v[i]),
                "remove that particle (filter-cs with an index file)",
            ));
        }
        Ok(v)
    }

    /// Stack paths per particle (`blob/path`, a leading `>` stripped).
    pub fn blob_paths(&self) -> Result<Vec<String>> {
        let f = self.field("blob/path")?;
        (0..self.len())
            .map(|r| f.str_at(r).map(|s| s.strip_prefix('>').map(str::to_string).unwrap_or(s)))
            .collect()
    }

    /// 0-based image indices per particle (`blob/idx`).
    pub fn blob_idx(&self) -> Result<Vec<u64>> {
        self.field("blob/idx")?.column_u64()
    }

    fn field(&self, name: &str) -> Result<crate::npy::FieldView<'_>> {
        if !self.array.has_field(name) {
            return Err(self.missing(name, None));
        }
        self.array.field(name)
    }

    /// Every particle's image reference, with stack paths deduplicated.
    pub fn image_refs(&self) -> Result<ImageRefs> {
        let f = self.field("blob/path")?;
        let index = self.blob_idx()?;
        let mut refs = ImageRefs { index, ..Default::default() };
        let mut ids: HashMap<String, u32> = HashMap::new();
        refs.file.reserve(self.len());
        for r in 0..self.len() {
            let s = f.str_at(r)?;
            let s = s.strip_prefix('>').unwrap_or(&s);
            let id = match ids.get(s) {
                Some(&id) => id,
                None => {
                    let id = refs.paths.len() as u32;
                    refs.paths.push(s.to_string());
                    ids.insert(s.to_string(), id);
                    id
                }
            };
            refs.file.push(id);
        }
        Ok(refs)
    }

    /// The box size (px): `d` if given, else `blob/shape[0]` of row 0, which every row must share.
    /// `None` for a file with no rows and no override.
    pub fn box_size(&self, d: Option<f64>) -> Result<Option<f64>> {
        if let Some(d) = d {
            return Ok(Some(d));
        }
        if !self.array.has_field("blob/shape") {
            return Err(self.missing("blob/shape", Some("-D (the box size of the particles, px)")));
        }
        let shapes = self.array.field("blob/shape")?.column_u64()?;
        let per_row = shapes.len().checked_div(self.len()).unwrap_or(0);
        let Some(&first) = shapes.first() else { return Ok(None) };
        if let Some(r) = (0..self.len()).find(|&r| shapes.get(r * per_row) != Some(&first)) {
            return Err(Error::invalid(
                self.path(),
                Some(format!("row {r} (0-based), field blob/shape")),
                format!(
                    "box size {} differs from row 0's {first}",
                    shapes.get(r * per_row).copied().unwrap_or(0)
                ),
                "particles of one dataset must share a box size; split the file or pass -D",
            ));
        }
        Ok(Some(first as f64))
    }

    /// cryoDRGN's ctf.pkl rows `[D, Apix, dfU, dfV, dfAng°, kV, Cs, w, phase°]`, as `parse_ctf_csparc`
    /// builds them; `d` and `apix` override `blob/shape` and `blob/psize_A`.
    pub fn ctf_params(&self, d: Option<f64>, apix: Option<f64>) -> Result<Vec<[f64; 9]>> {
        if self.is_empty() {
            return Ok(Vec::new());
        }
        let d = self.box_size(d)?.unwrap_or(0.0);
        let apix = match apix {
            Some(a) => vec![a; self.len()],
            None => self.floats("blob/psize_A", 1, Some("--Apix (the pixel size, Å)"))?,
        };
        let col = |name: &str| self.floats(name, 1, None);
        let (df1, df2, ang) = (col("ctf/df1_A")?, col("ctf/df2_A")?, col("ctf/df_angle_rad")?);
        let (kv, cs, w, ps) =
            (col("ctf/accel_kv")?, col("ctf/cs_mm")?, col("ctf/amp_contrast")?, col("ctf/phase_shift_rad")?);
        Ok((0..self.len())
            .map(|i| {
                [d, apix[i], df1[i], df2[i], ang[i].to_degrees(), kv[i], cs[i], w[i], ps[i].to_degrees()]
            })
            .collect())
    }

    fn alignments(abinit: bool) -> &'static str {
        if abinit {
            "alignments_class_0"
        } else {
            "alignments3D"
        }
    }

    /// Axis-angle pose vectors (radians) per particle: `alignments3D/pose`, or `alignments_class_0/pose`
    /// for ab initio jobs.
    pub fn pose_vectors(&self, abinit: bool) -> Result<Vec<[f64; 3]>> {
        let v = self.floats(&format!("{}/pose", Self::alignments(abinit)), 3, None)?;
        Ok(v.chunks_exact(3).map(|c| [c[0], c[1], c[2]]).collect())
    }

    /// Shifts in pixels per particle: `alignments3D/shift` (or `alignments_class_0/shift`), doubled for
    /// heterogeneous refinement (`hetrefine`), which stores them at half the box.
    pub fn shifts_px(&self, abinit: bool, hetrefine: bool) -> Result<Vec<[f64; 2]>> {
        let v = self.floats(&format!("{}/shift", Self::alignments(abinit)), 2, None)?;
        let k = if hetrefine { 2.0 } else { 1.0 };
        Ok(v.chunks_exact(2).map(|c| [c[0] * k, c[1] * k]).collect())
    }

    /// Write the particles `indices` (0-based, in that order) to `out` with every field unchanged
    /// (`filter-cs`).
    pub fn filter_rows(&self, indices: &[usize], out: impl AsRef<Path>) -> Result<()> {
        self.array.write_rows(out, indices)
    }

    /// Field names, types and the first row's values, one field per line (`view-header`).
    pub fn describe(&self) -> String {
        let a = &self.array;
        let mut s = format!(
            "{}: {} rows, {} fields, {} bytes per row\n",
            self.path().display(),
            a.len(),
            a.fields().count(),
            a.dtype().itemsize()
        );
        let width = a.fields().map(|f| f.name.len()).max().unwrap_or(0);
        for f in a.fields() {
            let first = match a.field(&f.name) {
                Ok(v) if !a.is_empty() => v.format_at(0),
                _ => String::new(),
            };
            let _ = writeln!(s, "  {:width$}  {:12}  {first}", f.name, f.type_str());
        }
        s
    }
}

#[cfg(test)]
mod tests;
