//! Particle selections (`--ind`): 0-based indices into a particle stack, as cryoDRGN's `filter`,
//! `select_random` and the dashboard write them.
//!
//! Formats read:
//! - `.pkl`: a 1-D numpy integer array (cryoDRGN writes int64; int32 is accepted too).
//! - text (`.txt` or any other name that is not a pickle): integers separated by whitespace, usually one
//!   per line; `#` starts a comment that runs to the end of the line.
//!
//! Indices may come in any order but not repeat: a selection is a set of particles (numpy would select a
//! repeated particle twice, which in `backproject` can put one image in both half maps and inflate the FSC).
//! Negative or out-of-range indices are errors too: numpy would wrap −1 to the last particle, which is
//! never what a selection means.
//! Written selections are `int64 (M,)` pickles.

use std::path::{Path, PathBuf};

use rand::SeedableRng;

use crate::error::{Error, Result};
use crate::pickle::{self, fmt_shape, ArrayData, NdArray};

/// How many offending indices an error lists.
const SHOWN: usize = 5;

/// A selection as read from a file, not yet checked against a dataset.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Selection {
    path: PathBuf,
    indices: Vec<i64>,
}

impl Selection {
    /// Read a `.pkl` or text selection (see the module docs).
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let is_pickle = matches!(path.extension().and_then(|e| e.to_str()), Some("pkl" | "pickle"))
            || starts_with_pickle_header(path)?;
        let indices = if is_pickle { indices_from_pickle(path)? } else { indices_from_text(path)? };
        Ok(Self { path: path.to_path_buf(), indices })
    }

    /// The file the selection came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The indices in file order.
    pub fn indices(&self) -> &[i64] {
        &self.indices
    }

    /// Number of indices (counting repeats).
    pub fn len(&self) -> usize {
        self.indices.len()
    }

    /// True when the file lists no index.
    pub fn is_empty(&self) -> bool {
        self.indices.is_empty()
    }

    /// The indices listed more than once, each with the file positions of all its entries, in order of
    /// first appearance.
    pub fn duplicates(&self) -> Vec<(i64, Vec<usize>)> {
        let mut by_index: Vec<(i64, usize)> = self.indices.iter().enumerate().map(|(p, &i)| (i, p)).collect();
        by_index.sort_unstable();
        let mut out: Vec<(i64, Vec<usize>)> = Vec::new();
        for run in by_index.chunk_by(|a, b| a.0 == b.0).filter(|r| r.len() > 1) {
            out.push((run[0].0, run.iter().map(|&(_, p)| p).collect()));
        }
        out.sort_by_key(|(_, positions)| positions[0]);
        out
    }

    /// The indices as positions into a dataset of `n_total` particles, in file order. Every index must
    /// lie in `[0, n_total)`; the error lists the first few that do not (with their positions in the
    /// file) and how many there are. An empty selection is an error too.
    pub fn resolve(&self, n_total: usize) -> Result<Vec<usize>> {
        if self.indices.is_empty() {
            return Err(Error::invalid(
                &self.path,
                None,
                "the selection is empty",
                "Select at least one particle",
            ));
        }
        let in_range = |i: i64| usize::try_from(i).ok().filter(|&u| u < n_total);
        let bad: Vec<(usize, i64)> = self
            .indices
            .iter()
            .enumerate()
            .filter(|(_, &i)| in_range(i).is_none())
            .map(|(p, &i)| (p, i))
            .collect();
        if let Some(&(first, _)) = bad.first() {
            let listed: Vec<String> =
                bad.iter().take(SHOWN).map(|(p, i)| format!("entry {p} is {i}")).collect();
            return Err(Error::invalid(
                &self.path,
                Some(format!("entry {first}")),
                format!(
                    "{} of {} indices are outside 0..{} for a dataset of {n_total} particles ({}{})",
                    bad.len(),
                    self.indices.len(),
                    n_total.saturating_sub(1),
                    listed.join(", "),
                    if bad.len() > SHOWN { ", …" } else { "" }
                ),
                "Was the selection made for a different particle stack? Indices are 0-based",
            ));
        }
        let repeated = self.duplicates();
        if let Some((_, positions)) = repeated.first() {
            let listed: Vec<String> = repeated
                .iter()
                .take(SHOWN)
                .map(|(i, ps)| {
                    let entries: Vec<String> = ps.iter().map(usize::to_string).collect();
                    format!("{i} at entries {}", entries.join(", "))
                })
                .collect();
            return Err(Error::invalid(
                &self.path,
                Some(format!("entry {}", positions[1])),
                format!(
                    "{} {} listed more than once ({}{}); a selection is a set of particles",
                    repeated.len(),
                    if repeated.len() == 1 { "index is" } else { "indices are" },
                    listed.join("; "),
                    if repeated.len() > SHOWN { "; …" } else { "" }
                ),
                "Remove the repeated indices (for a text file: sort -un ind.txt)",
            ));
        }
        Ok(self.indices.iter().filter_map(|&i| in_range(i)).collect())
    }
}

/// Read `path` and resolve it against `n_total` particles in one step.
pub fn load_selection(path: impl AsRef<Path>, n_total: usize) -> Result<Vec<usize>> {
    Selection::load(path)?.resolve(n_total)
}

/// Write `indices` as an `int64 (M,)` pickle, as cryoDRGN's selection tools do. Atomic.
pub fn write_selection(path: impl AsRef<Path>, indices: &[i64]) -> Result<()> {
    pickle::write_array(path, &NdArray::new(vec![indices.len()], ArrayData::I64(indices.to_vec())))
}

/// `n_select` distinct indices drawn uniformly from `0..n_total`, sorted ascending. The same seed gives
/// the same selection (ChaCha20 stream; reproducible for a given drgnfly version).
pub fn select_random(n_total: usize, n_select: usize, seed: u64) -> Result<Vec<i64>> {
    if n_select > n_total {
        return Err(Error::invalid(
            "select_random",
            None,
            format!("cannot select {n_select} of {n_total} particles"),
            format!("Ask for at most {n_total}"),
        ));
    }
    let mut rng = rand_chacha::ChaCha20Rng::seed_from_u64(seed);
    let mut picked = rand::seq::index::sample(&mut rng, n_total, n_select).into_vec();
    picked.sort_unstable();
    Ok(picked.into_iter().map(|i| i as i64).collect())
}

/// The indices of `0..n_total` not in `selected`, ascending (the "rest" file of a split). Values
/// outside the range are ignored.
pub fn complement(n_total: usize, selected: &[i64]) -> Vec<i64> {
    let mut keep = vec![true; n_total];
    for &i in selected {
        if let Some(k) = usize::try_from(i).ok().and_then(|u| keep.get_mut(u)) {
            *k = false;
        }
    }
    keep.iter().enumerate().filter(|(_, &k)| k).map(|(i, _)| i as i64).collect()
}

/// True when the file starts with the pickle PROTO opcode (a pickle under another extension).
fn starts_with_pickle_header(path: &Path) -> Result<bool> {
    use std::io::Read;
    let mut first = [0u8; 1];
    let mut file = std::fs::File::open(path).map_err(|e| Error::io(path, e))?;
    let n = file.read(&mut first).map_err(|e| Error::io(path, e))?;
    Ok(n == 1 && first[0] == 0x80)
}

fn indices_from_pickle(path: &Path) -> Result<Vec<i64>> {
    let a = pickle::load_array(path)?;
    let hint = "An index .pkl holds a 1-D int64 array, e.g. np.array(ind, dtype=np.int64)";
    if a.shape.len() != 1 {
        return Err(Error::invalid(
            path,
            None,
            format!("indices must be a 1-D array, found shape {}", fmt_shape(&a.shape)),
            hint,
        ));
    }
    match a.data {
        ArrayData::I64(v) => Ok(v),
        ArrayData::I32(v) => Ok(v.into_iter().map(i64::from).collect()),
        ArrayData::Bool(_) => Err(Error::invalid(
            path,
            None,
            "holds a boolean mask, not indices",
            "Convert it with np.nonzero(mask)[0]",
        )),
        other => Err(Error::invalid(
            path,
            None,
            format!("indices must be integers, found {}", other.dtype()),
            "Convert with ind.astype(np.int64)",
        )),
    }
}

fn indices_from_text(path: &Path) -> Result<Vec<i64>> {
    let text = crate::input::read_text(path, "index (.txt)")?;
    let mut indices = Vec::new();
    for (line_no, line) in text.lines().enumerate() {
        let content = line.split('#').next().unwrap_or("");
        for token in content.split_whitespace() {
            let i = token.parse::<i64>().map_err(|_| {
                Error::invalid(
                    path,
                    Some(format!("line {}", line_no + 1)),
                    format!("`{token}` is not an integer index"),
                    "A text selection lists 0-based particle indices, one per line",
                )
            })?;
            indices.push(i);
        }
    }
    Ok(indices)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::fixtures::fixture;

    #[test]
    #[cfg_attr(
        shared_data_absent,
        ignore = "needs the shared test data (../shared/data or DRGNFLY_TEST_DATA)"
    )]
    fn cryodrgn_index_pickles() {
        let Some(p) = fixture("cryodrgn/ind100-rand.pkl") else { return };
        let s = Selection::load(&p).unwrap();
        // numpy: ind = pickle.load(open('ind100-rand.pkl', 'rb')); ind[0], ind[50], ind[-1] = 1, 482, 994
        assert_eq!((s.len(), s.indices()[0], s.indices()[50], s.indices()[99]), (100, 1, 482, 994));
        assert!(s.duplicates().is_empty());
        let resolved = s.resolve(1000).unwrap();
        assert_eq!(resolved[99], 994);
        let err = s.resolve(500).unwrap_err();
        assert!(matches!(err, Error::Invalid { .. }));
        let msg = err.to_string();
        // 994 is the largest; everything ≥ 500 is reported with a count.
        assert!(msg.contains("indices are outside 0..499 for a dataset of 500 particles"), "{msg}");
        assert!(msg.contains(", …"), "more than five are elided: {msg}");
    }

    #[test]
    fn text_selections_with_comments_and_whitespace() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ind.txt");
        std::fs::write(&p, "# particles to keep\n3\n  1 \t2  # two on a line\n\n7\r\n").unwrap();
        let s = Selection::load(&p).unwrap();
        assert_eq!(s.indices(), &[3, 1, 2, 7]);
        assert_eq!(s.resolve(8).unwrap(), vec![3, 1, 2, 7]);

        std::fs::write(&p, "1\n2\nthree\n").unwrap();
        let err = Selection::load(&p).unwrap_err();
        assert!(matches!(err, Error::Invalid { record: Some(ref r), .. } if r == "line 3"), "{err}");

        std::fs::write(&p, "4\n-1\n4\n9\n").unwrap();
        let s = Selection::load(&p).unwrap();
        assert_eq!(s.duplicates(), vec![(4, vec![0, 2])]);
        let err = s.resolve(5).unwrap_err();
        assert!(matches!(err, Error::Invalid { record: Some(ref r), .. } if r == "entry 1"), "{err}");
        assert!(
            err.to_string().contains("2 of 4 indices") && err.to_string().contains("entry 3 is 9"),
            "{err}"
        );

        // In range but repeated: refused, naming the repeats.
        std::fs::write(&p, "4\n1\n4\n2\n1\n4\n").unwrap();
        let err = Selection::load(&p).unwrap().resolve(5).unwrap_err();
        assert!(matches!(err, Error::Invalid { record: Some(ref r), .. } if r == "entry 2"), "{err}");
        assert!(
            err.to_string()
                .contains("2 indices are listed more than once (4 at entries 0, 2, 5; 1 at entries 1, 4)"),
            "{err}"
        );

        std::fs::write(&p, "# nothing\n").unwrap();
        assert!(Selection::load(&p).unwrap().resolve(5).is_err(), "an empty selection is refused");
    }

    #[test]
    fn pickle_dtypes_and_round_trip() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("ind.pkl");
        write_selection(&p, &[9, 0, 4]).unwrap();
        assert_eq!(load_selection(&p, 10).unwrap(), vec![9, 0, 4]);

        pickle::write_array(&p, &NdArray::new(vec![2], ArrayData::I32(vec![5, 6]))).unwrap();
        assert_eq!(Selection::load(&p).unwrap().indices(), &[5, 6]);

        // A pickle under a .txt name is still read as a pickle.
        let q = dir.path().join("ind.txt");
        std::fs::copy(&p, &q).unwrap();
        assert_eq!(Selection::load(&q).unwrap().indices(), &[5, 6]);

        for (data, shape, needle) in [
            (ArrayData::F64(vec![1.0]), vec![1], "indices must be integers, found float64"),
            (ArrayData::Bool(vec![true]), vec![1], "boolean mask"),
            (ArrayData::I64(vec![1, 2]), vec![1, 2], "1-D array, found shape (1, 2)"),
        ] {
            pickle::write_array(&p, &NdArray::new(shape, data)).unwrap();
            let err = Selection::load(&p).unwrap_err();
            assert!(err.to_string().contains(needle), "{err}");
        }
    }

    #[test]
    fn random_selection_is_reproducible_and_valid() {
        let a = select_random(1000, 100, 42).unwrap();
        assert_eq!(a, select_random(1000, 100, 42).unwrap(), "same seed, same selection");
        assert_ne!(a, select_random(1000, 100, 43).unwrap());
        assert_eq!(a.len(), 100);
        assert!(a.windows(2).all(|w| w[0] < w[1]), "sorted and distinct");
        assert!(a.iter().all(|&i| (0..1000).contains(&i)));
        assert_eq!(select_random(5, 5, 0).unwrap(), vec![0, 1, 2, 3, 4]);
        assert!(matches!(select_random(5, 6, 0).unwrap_err(), Error::Invalid { .. }));

        let rest = complement(1000, &a);
        assert_eq!(rest.len(), 900);
        let mut all: Vec<i64> = a.iter().chain(&rest).copied().collect();
        all.sort_unstable();
        assert_eq!(all, (0..1000).collect::<Vec<i64>>());
        assert_eq!(complement(4, &[1, -3, 17]), vec![0, 2, 3]);
    }
}
