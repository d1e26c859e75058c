//! Atomic models: PDB, mmCIF (`_atom_site`) and coordinate trajectories (`.npy`, `(F, N, 3)` Å).
//!
//! An [`AtomicModel`] is one list of atoms (element, name, chain, B-factor) with one or more coordinate
//! sets ("models" of an NMR ensemble or an assembly, or frames of a trajectory). All models must hold the
//! same atoms in the same order, which is what ensembles and trajectories are; a file whose models differ
//! in atom count is an error naming the model.
//!
//! Coordinates are Å in the file's frame, f32. Elements are normalised symbols: first letter upper case,
//! the rest lower case (`"C"`, `"Zn"`).
//!
//! PDB: `ATOM`/`HETATM` records (columns 31–38, 39–46, 47–54 for x, y, z; 61–66 B-factor; 22 chain;
//! 13–16 name; 77–78 element), `MODEL`/`ENDMDL` delimit models. When columns 77–78 are blank the element
//! comes from the atom name: a name starting in column 14 (column 13 blank) is a one-letter element, one
//! starting in column 13 is a two-letter element when it is a known one (`FE`, `ZN`, …) and otherwise its
//! first letter (hydrogens such as `HG21`). Alternate locations other than blank, `A` or `1` are dropped so
//! each atom is counted once.
//!
//! mmCIF: the `loop_` of `_atom_site.*` items, read by column name (`Cartn_x/y/z`, `type_symbol`,
//! `label_atom_id`, `auth_asym_id` or `label_asym_id`, `B_iso_or_equiv`, `pdbx_PDB_model_num`,
//! `label_alt_id`). Values are whitespace-separated; quoted values are understood.

use std::path::Path;

use crate::npy::NpyArray;
use crate::{Error, Result};

/// Atoms with one or more coordinate sets.
#[derive(Debug, Clone, PartialEq)]
pub struct AtomicModel {
    /// Element symbol per atom (`"C"`, `"Zn"`).
    pub elements: Vec<String>,
    /// Atom name per atom (`"CA"`); empty for trajectories without topology.
    pub names: Vec<String>,
    /// Chain identifier per atom; empty strings when unknown.
    pub chains: Vec<String>,
    /// Isotropic B-factor per atom (Å²), from the first model; 0 when unknown.
    pub b_factors: Vec<f32>,
    /// Coordinates per model, each `N` atoms × `[x, y, z]` in Å.
    pub models: Vec<Vec<[f32; 3]>>,
}

impl AtomicModel {
    /// Number of atoms per model.
    pub fn n_atoms(&self) -> usize {
        self.elements.len()
    }

    /// Number of models (frames).
    pub fn n_models(&self) -> usize {
        self.models.len()
    }

    /// Reads a PDB (`.pdb`, `.ent`), mmCIF (`.cif`, `.mmcif`) or trajectory (`.npy`) file by extension.
    /// A `.npy` has no elements: they are all `"C"` unless [`Self::with_elements`] sets them.
    pub fn read(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let ext = path.extension().and_then(|e| e.to_str()).unwrap_or("").to_ascii_lowercase();
        match ext.as_str() {
            "pdb" | "ent" => read_pdb(path),
            "cif" | "mmcif" => read_mmcif(path),
            "npy" => read_npy_trajectory(path),
            _ => Err(Error::unsupported(
                path,
                None,
                format!("atomic model extension `.{ext}`"),
                "use a .pdb, .cif or .npy (F, N, 3) coordinate file",
            )),
        }
    }

    /// Replaces the elements (e.g. from [`read_element_list`]); their count must match the atoms.
    pub fn with_elements(mut self, elements: Vec<String>, source: &Path) -> Result<Self> {
        if elements.len() != self.n_atoms() {
            return Err(Error::invalid(
                source,
                None,
                format!("{} elements listed for {} atoms", elements.len(), self.n_atoms()),
                "the element list must have one row per atom, in the coordinate file's order",
            ));
        }
        self.elements = elements;
        Ok(self)
    }
}

/// Element symbols with two letters that PDB writers place starting in column 13 (name alignment rule).
const TWO_LETTER: &[&str] = &[
    "FE", "ZN", "MG", "CA", "CL", "NA", "MN", "CU", "CO", "NI", "SE", "BR", "CD", "HG", "LI", "AL", "SI",
    "AG", "AU", "PT", "PB", "BA", "SR", "CS", "RB", "GA", "GD", "YB", "XE", "KR", "AR", "NE", "HE", "TL",
    "IR", "OS",
];

/// Normalises a symbol: `"ZN"` → `"Zn"`, `" c"` → `"C"`; `None` if it has no letters.
fn normalise_element(s: &str) -> Option<String> {
    let letters: String = s.trim().chars().filter(|c| c.is_ascii_alphabetic()).collect();
    let mut it = letters.chars();
    let first = it.next()?.to_ascii_uppercase();
    Some(std::iter::once(first).chain(it.map(|c| c.to_ascii_lowercase())).collect())
}

/// Standard residues, whose atoms are all one-letter elements (H C N O S P).
const POLYMER_RESIDUES: &[&str] = &[
    "ALA", "ARG", "ASN", "ASP", "CYS", "GLN", "GLU", "GLY", "HIS", "HSD", "HSE", "HSP", "ILE", "LEU", "LYS",
    "MET", "PHE", "PRO", "SER", "THR", "TRP", "TYR", "VAL", "MSE", "A", "C", "G", "U", "DA", "DC", "DG",
    "DT",
];

/// The element of a PDB atom from its name field (columns 13–16, untrimmed) and residue name when columns
/// 77–78 are blank. In standard residues the first letter is the element: CHARMM-style files left-justify
/// names, so `CD1` of a leucine must not read as cadmium.
fn element_from_name(field: &str, residue: &str) -> Option<String> {
    if POLYMER_RESIDUES.contains(&residue.trim().to_ascii_uppercase().as_str()) {
        let first = field.chars().find(|c| c.is_ascii_alphabetic())?;
        return normalise_element(&first.to_string());
    }
    let bytes = field.as_bytes();
    let first_is_blank = bytes.first().is_none_or(|b| b.is_ascii_whitespace() || b.is_ascii_digit());
    let letters: String = field.chars().filter(|c| c.is_ascii_alphabetic()).collect();
    // A hydrogen name fills all four columns (`HG21`), a metal is its symbol alone (`HG  `).
    let long_hydrogen = field.trim().len() > 2 && letters.starts_with(['H', 'h']);
    if !first_is_blank
        && !long_hydrogen
        && letters.len() >= 2
        && TWO_LETTER.contains(&letters[..2].to_ascii_uppercase().as_str())
    {
        return normalise_element(&letters[..2]);
    }
    normalise_element(letters.get(..1)?)
}

/// Columns `a..=b` (1-based, inclusive) of a line, or `""` when the line is shorter.
fn cols(line: &str, a: usize, b: usize) -> &str {
    let end = b.min(line.len());
    line.get(a - 1..end).unwrap_or("")
}

/// Collects models and checks each has the same atom count as the first.
struct ModelBuilder<'p> {
    path: &'p Path,
    model: AtomicModel,
    current: Vec<[f32; 3]>,
    current_label: String,
}

impl<'p> ModelBuilder<'p> {
    fn new(path: &'p Path) -> Self {
        let model = AtomicModel {
            elements: vec![],
            names: vec![],
            chains: vec![],
            b_factors: vec![],
            models: vec![],
        };
        Self { path, model, current: vec![], current_label: "model 1".into() }
    }

    fn first(&self) -> bool {
        self.model.models.is_empty()
    }

    fn push(&mut self, xyz: [f32; 3], element: String, name: &str, chain: &str, b: f32) {
        if self.first() {
            self.model.elements.push(element);
            self.model.names.push(name.to_string());
            self.model.chains.push(chain.to_string());
            self.model.b_factors.push(b);
        }
        self.current.push(xyz);
    }

    /// Closes the current model (ignored when empty).
    fn close(&mut self, next_label: String) -> Result<()> {
        if self.current.is_empty() {
            self.current_label = next_label;
            return Ok(());
        }
        if !self.first() && self.current.len() != self.model.n_atoms() {
            return Err(Error::invalid(
                self.path,
                Some(self.current_label.clone()),
                format!("{} atoms, but the first model has {}", self.current.len(), self.model.n_atoms()),
                "all models must hold the same atoms in the same order; split the file per model",
            ));
        }
        self.model.models.push(std::mem::take(&mut self.current));
        self.current_label = next_label;
        Ok(())
    }

    fn finish(mut self) -> Result<AtomicModel> {
        self.close(String::new())?;
        if self.model.models.is_empty() {
            return Err(Error::invalid(
                self.path,
                None,
                "no atoms found",
                "the file needs ATOM/HETATM records (PDB) or an _atom_site loop (mmCIF)",
            ));
        }
        Ok(self.model)
    }
}

fn parse_f32(path: &Path, record: &str, what: &str, text: &str) -> Result<f32> {
    match text.trim().parse::<f32>() {
        Ok(v) if v.is_finite() => Ok(v),
        _ => Err(Error::invalid(
            path,
            Some(record.to_string()),
            format!("{what} `{}` is not a finite number", text.trim()),
            "fix or remove this atom record",
        )),
    }
}

/// Reads a PDB file (see the [module docs](self) for the columns and rules).
pub fn read_pdb(path: impl AsRef<Path>) -> Result<AtomicModel> {
    let path = path.as_ref();
    let text = crate::input::read_text(path, "PDB")?;
    let mut b = ModelBuilder::new(path);
    for (i, line) in text.lines().enumerate() {
        let record = format!("line {}", i + 1);
        if line.starts_with("MODEL") {
            b.close(format!("MODEL {} ({record})", cols(line, 11, 14).trim()))?;
        } else if line.starts_with("ENDMDL") {
            b.close(format!("model after {record}"))?;
        } else if line.starts_with("ATOM") || line.starts_with("HETATM") {
            let alt = cols(line, 17, 17).trim();
            if !(alt.is_empty() || alt == "A" || alt == "1") {
                continue;
            }
            if line.len() < 54 {
                return Err(Error::invalid(
                    path,
                    Some(record),
                    format!("atom record has {} characters; coordinates need columns 31–54", line.len()),
                    "the PDB is fixed-width: check it was not reformatted",
                ));
            }
            let xyz = [
                parse_f32(path, &record, "x (columns 31–38)", cols(line, 31, 38))?,
                parse_f32(path, &record, "y (columns 39–46)", cols(line, 39, 46))?,
                parse_f32(path, &record, "z (columns 47–54)", cols(line, 47, 54))?,
            ];
            let name = cols(line, 13, 16);
            let element = normalise_element(cols(line, 77, 78))
                .or_else(|| element_from_name(name, cols(line, 18, 20)))
                .ok_or_else(|| {
                    Error::invalid(
                        path,
                        Some(record.clone()),
                        "no element in columns 77–78 and no letters in the atom name",
                        "add the element symbol in columns 77–78",
                    )
                })?;
            let bfac = cols(line, 61, 66).trim().parse::<f32>().unwrap_or(0.0);
            b.push(xyz, element, name.trim(), cols(line, 22, 22).trim(), bfac);
        }
    }
    b.finish()
}

/// Splits an mmCIF data line into values, honouring single and double quotes.
fn cif_tokens(line: &str) -> Vec<&str> {
    let mut out = vec![];
    let bytes = line.as_bytes();
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i].is_ascii_whitespace() {
            i += 1;
            continue;
        }
        let q = bytes[i];
        if q == b'\'' || q == b'"' {
            // A quote closes only when followed by whitespace or the end of the line (CIF rule).
            let start = i + 1;
            let mut j = start;
            while j < bytes.len()
                && !(bytes[j] == q && (j + 1 == bytes.len() || bytes[j + 1].is_ascii_whitespace()))
            {
                j += 1;
            }
            out.push(&line[start..j.min(line.len())]);
            i = j + 1;
        } else {
            let start = i;
            while i < bytes.len() && !bytes[i].is_ascii_whitespace() {
                i += 1;
            }
            out.push(&line[start..i]);
        }
    }
    out
}

/// Reads the `_atom_site` loop of an mmCIF file (see the [module docs](self)).
pub fn read_mmcif(path: impl AsRef<Path>) -> Result<AtomicModel> {
    let path = path.as_ref();
    let text = crate::input::read_text(path, "mmCIF")?;
    let lines: Vec<&str> = text.lines().collect();
    // Find the loop whose items are `_atom_site.*`.
    let mut i = 0;
    let mut items: Vec<String> = vec![];
    while i < lines.len() {
        if lines[i].trim() == "loop_"
            && lines.get(i + 1).is_some_and(|l| l.trim_start().starts_with("_atom_site."))
        {
            i += 1;
            while let Some(l) = lines.get(i).map(|l| l.trim()) {
                match l.strip_prefix("_atom_site.") {
                    Some(name) => items.push(name.split_whitespace().next().unwrap_or("").to_string()),
                    None => break,
                }
                i += 1;
            }
            break;
        }
        i += 1;
    }
    if items.is_empty() {
        return Err(Error::invalid(
            path,
            None,
            "no `_atom_site` loop",
            "the mmCIF must list atoms in a loop_ of _atom_site.* items",
        ));
    }
    let col = |name: &str| items.iter().position(|n| n == name);
    let need = |name: &'static str| {
        col(name).ok_or_else(|| {
            Error::invalid(
                path,
                Some(format!("_atom_site loop (line {})", i)),
                format!("missing item _atom_site.{name}"),
                "the atom loop needs Cartn_x, Cartn_y, Cartn_z and type_symbol",
            )
        })
    };
    let (cx, cy, cz, ce) = (need("Cartn_x")?, need("Cartn_y")?, need("Cartn_z")?, need("type_symbol")?);
    let cname = col("label_atom_id").or(col("auth_atom_id"));
    let cchain = col("auth_asym_id").or(col("label_asym_id"));
    let cb = col("B_iso_or_equiv");
    let cmodel = col("pdbx_PDB_model_num");
    let calt = col("label_alt_id");

    let mut b = ModelBuilder::new(path);
    let mut current_model: Option<String> = None;
    let mut pending: Vec<&str> = vec![];
    let mut pending_line = i + 1;
    for (k, line) in lines.iter().enumerate().skip(i) {
        let t = line.trim();
        if t.is_empty() || t.starts_with('#') || t.starts_with('_') || t == "loop_" || t.starts_with("data_")
        {
            break;
        }
        if pending.is_empty() {
            pending_line = k + 1;
        }
        pending.extend(cif_tokens(line));
        if pending.len() < items.len() {
            continue; // a row may continue on the next line
        }
        let record = format!("line {pending_line}");
        if pending.len() > items.len() {
            return Err(Error::invalid(
                path,
                Some(record),
                format!("{} values for {} _atom_site items", pending.len(), items.len()),
                "each atom row needs exactly one value per item",
            ));
        }
        let row = std::mem::take(&mut pending);
        let get = |c: Option<usize>| c.and_then(|c| row.get(c)).copied().unwrap_or("");
        let alt = get(calt);
        if !(alt.is_empty() || alt == "." || alt == "?" || alt == "A" || alt == "1") {
            continue;
        }
        if let Some(m) = cmodel.and_then(|c| row.get(c)) {
            if current_model.as_deref() != Some(*m) {
                if current_model.is_some() {
                    b.close(format!("model {m} ({record})"))?;
                }
                current_model = Some(m.to_string());
            }
        }
        let xyz = [
            parse_f32(path, &record, "Cartn_x", get(Some(cx)))?,
            parse_f32(path, &record, "Cartn_y", get(Some(cy)))?,
            parse_f32(path, &record, "Cartn_z", get(Some(cz)))?,
        ];
        let element = normalise_element(get(Some(ce))).ok_or_else(|| {
            Error::invalid(
                path,
                Some(record.clone()),
                format!("type_symbol `{}` is not an element", get(Some(ce))),
                "set _atom_site.type_symbol",
            )
        })?;
        let bfac = get(cb).parse::<f32>().unwrap_or(0.0);
        b.push(xyz, element, get(cname), get(cchain), bfac);
    }
    if !pending.is_empty() {
        return Err(Error::invalid(
            path,
            Some(format!("line {pending_line}")),
            format!("the last atom row has {} of {} values", pending.len(), items.len()),
            "the file is truncated or the row is incomplete",
        ));
    }
    b.finish()
}

/// Reads a coordinate trajectory `.npy` of shape `(F, N, 3)` or `(N, 3)` (Å, any float type); elements
/// are set to `"C"` (use [`AtomicModel::with_elements`]).
pub fn read_npy_trajectory(path: impl AsRef<Path>) -> Result<AtomicModel> {
    let path = path.as_ref();
    let arr = NpyArray::open(path)?;
    let (f, n) = match *arr.shape() {
        [f, n, 3] => (f, n),
        [n, 3] => (1, n),
        ref s => {
            return Err(Error::invalid(
                path,
                None,
                format!("shape {s:?} is not (frames, atoms, 3)"),
                "save the coordinates as an (F, N, 3) array in Å",
            ));
        }
    };
    let flat = arr.to_f32_vec()?;
    if let Some(bad) = flat.iter().position(|v| !v.is_finite()) {
        return Err(Error::invalid(
            path,
            Some(format!("frame {}, atom {}", bad / (3 * n.max(1)), (bad / 3) % n.max(1))),
            "coordinate is NaN or infinite",
            "fix the trajectory export",
        ));
    }
    let models = flat
        .chunks_exact(3 * n.max(1))
        .take(f)
        .map(|fr| fr.chunks_exact(3).map(|a| [a[0], a[1], a[2]]).collect())
        .collect();
    Ok(AtomicModel {
        elements: vec!["C".into(); n],
        names: vec![String::new(); n],
        chains: vec![String::new(); n],
        b_factors: vec![0.0; n],
        models,
    })
}

/// Reads an element list: a tab- or whitespace-separated table with a header that has an `element`
/// column (like `adk_heavy_atoms.tsv`), or one symbol per line without a header.
pub fn read_element_list(path: impl AsRef<Path>) -> Result<Vec<String>> {
    let path = path.as_ref();
    let text = crate::input::read_text(path, "element list")?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let Some((_, header)) = lines.next() else {
        return Err(Error::invalid(path, None, "empty element list", "list one element per atom"));
    };
    let split = |l: &str| -> Vec<String> {
        l.split(['\t', ' ', ',']).filter(|s| !s.is_empty()).map(str::to_string).collect()
    };
    let head = split(header);
    let (column, rows): (usize, Vec<(usize, &str)>) =
        match head.iter().position(|h| h.eq_ignore_ascii_case("element")) {
            Some(c) => (c, lines.collect()),
            None => (0, std::iter::once((0, header)).chain(lines).collect()),
        };
    rows.into_iter()
        .map(|(i, l)| {
            split(l).get(column).and_then(|s| normalise_element(s)).ok_or_else(|| {
                Error::invalid(
                    path,
                    Some(format!("line {}", i + 1)),
                    format!("no element in column {}", column + 1),
                    "each row needs an element symbol",
                )
            })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixture_or_skip;

    fn count(m: &AtomicModel, el: &str) -> usize {
        m.elements.iter().filter(|e| *e == el).count()
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn small_pdb() {
        let p = fixture_or_skip!("cryojax/1uao.pdb");
        let m = AtomicModel::read(&p).unwrap();
        assert_eq!((m.n_atoms(), m.n_models()), (138, 1));
        assert_eq!(m.names[1], "CA");
        assert_eq!(m.elements[0], "N");
        assert_eq!(m.models[0][0], [-6.778, -1.424, 4.2]);
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn pdb_with_models() {
        let p = fixture_or_skip!("cryojax/1uao_assembly.pdb");
        let m = read_pdb(&p).unwrap();
        assert_eq!(m.n_models(), 10);
        assert!(m.models.iter().all(|c| c.len() == m.n_atoms()));
        let p = fixture_or_skip!("mdanalysis_adk/adk_dims_heavy_98models.pdb");
        let m = read_pdb(&p).unwrap();
        assert_eq!((m.n_models(), m.n_atoms()), (98, 1656));
        // Elements as the data README lists them: C 1040, N 289, O 320, S 7.
        assert_eq!([count(&m, "C"), count(&m, "N"), count(&m, "O"), count(&m, "S")], [1040, 289, 320, 7]);
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn cryo_em_pdb_with_hetero_atoms() {
        let p = fixture_or_skip!("biopython/7DDO.pdb");
        let m = read_pdb(&p).unwrap();
        // 6,468 records, 7 of which are the `B` alternate locations of atoms also present as `A`.
        assert_eq!(m.n_atoms(), 6468 - 7);
        assert_eq!(
            [count(&m, "C"), count(&m, "N"), count(&m, "O"), count(&m, "S"), count(&m, "Zn")],
            [4133 - 5, 1067 - 2, 1230, 37, 1]
        );
        assert!(m.b_factors.iter().all(|&b| b > 0.0));
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn mmcif_atom_site_loop() {
        let p = fixture_or_skip!("cryojax/8zpm.cif");
        let m = AtomicModel::read(&p).unwrap();
        assert_eq!((m.n_atoms(), m.n_models()), (3222, 1));
        let mut chains = m.chains.clone();
        chains.dedup();
        chains.sort();
        chains.dedup();
        assert_eq!(chains, ["N", "R"]);
        assert_eq!([count(&m, "C"), count(&m, "N"), count(&m, "O"), count(&m, "S")], [2136, 524, 547, 15]);
        assert_eq!(m.models[0][0], [117.691, 148.969, 115.148]);
        assert_eq!(m.names[1], "CA");
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn npy_trajectory_with_elements_from_tsv() {
        let p = fixture_or_skip!("mdanalysis_adk/adk_dims_heavy_xyz.npy");
        let t = fixture_or_skip!("mdanalysis_adk/adk_heavy_atoms.tsv");
        let m = read_npy_trajectory(&p).unwrap();
        assert_eq!((m.n_models(), m.n_atoms()), (98, 1656));
        let els = read_element_list(&t).unwrap();
        let m = m.with_elements(els, &t).unwrap();
        assert_eq!(count(&m, "S"), 7);
        // The PDB export holds the same frames (to PDB's 3 decimals).
        let pdb = read_pdb(fixture_or_skip!("mdanalysis_adk/adk_dims_heavy_98models.pdb")).unwrap();
        for f in [0, 97] {
            for a in [0, 1655] {
                for k in 0..3 {
                    assert!((pdb.models[f][a][k] - m.models[f][a][k]).abs() < 1e-3, "frame {f} atom {a}");
                }
            }
        }
        assert_eq!(pdb.elements, m.elements);
    }

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn charmm_pdb_without_element_columns_has_only_protein_elements() {
        let m = read_pdb(fixture_or_skip!("mdanalysis_adk/adk_open.pdb")).unwrap();
        assert_eq!(m.n_atoms(), 3341);
        assert!(m.elements.iter().all(|e| ["H", "C", "N", "O", "S"].contains(&e.as_str())), "{:?}", {
            let mut odd: Vec<_> =
                m.elements.iter().filter(|e| !["H", "C", "N", "O", "S"].contains(&e.as_str())).collect();
            odd.dedup();
            odd
        });
    }

    #[test]
    fn element_fallback_and_errors_name_the_line() {
        assert_eq!(element_from_name(" CA ", "GLY").as_deref(), Some("C"));
        assert_eq!(element_from_name("CA  ", "CA").as_deref(), Some("Ca"));
        assert_eq!(element_from_name("ZN  ", "ZN").as_deref(), Some("Zn"));
        assert_eq!(element_from_name("HG21", "THR").as_deref(), Some("H"));
        assert_eq!(element_from_name("1HB ", "ALA").as_deref(), Some("H"));
        // CHARMM left-justifies names: leucine's CD1 is carbon, not cadmium.
        assert_eq!(element_from_name("CD1 ", "LEU").as_deref(), Some("C"));
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("bad.pdb");
        std::fs::write(&p, "ATOM      1  CA  GLY A   1      -6.778  -1.424   4.200  1.00  0.00\nATOM      2  CA  GLY A   1      -6.778  abcdefg   4.200\n").unwrap();
        let e = read_pdb(&p).unwrap_err();
        assert!(matches!(&e, Error::Invalid { record: Some(r), .. } if r == "line 2"), "{e}");
        let p = dir.path().join("two.pdb");
        std::fs::write(&p, "MODEL 1\nATOM      1  CA  GLY A   1      -6.778  -1.424   4.200\nENDMDL\nMODEL 2\nENDMDL\nMODEL 3\nATOM      1  CA  GLY A   1      -6.778  -1.424   4.200\nATOM      1  CA  GLY A   1      -6.778  -1.424   4.200\nENDMDL\n").unwrap();
        assert!(matches!(read_pdb(&p), Err(Error::Invalid { .. })));
        let p = dir.path().join("x.cif");
        std::fs::write(&p, "data_x\nloop_\n_atom_site.type_symbol\n_atom_site.Cartn_x\n_atom_site.Cartn_y\n_atom_site.Cartn_z\nC 1 2 3\n'N' 4 5\n").unwrap();
        assert!(matches!(read_mmcif(&p), Err(Error::Invalid { record: Some(r), .. }) if r == "line 8"));
    }
}
