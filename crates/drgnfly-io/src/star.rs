//! The STAR grammar (RELION 3.0–5, CIF-style quoting): blocks, key–value pairs and `loop_` tables.
//!
//! A file is a list of `data_NAME` blocks (`data_` alone gives the empty name). A block holds key–value
//! pairs (`_key value`) and any number of `loop_` tables. Conventions, following the STAR/CIF rules that
//! RELION and the `starfile` package use:
//! - `#` starts a comment where a token could start (so `_rlnImageName #1` names one column); a `#`
//!   inside a token or a quoted value is text.
//! - Values are whitespace-separated; `'…'` and `"…"` quote values with spaces, and a quote closes only
//!   where it is followed by whitespace or the end of the line, so `'it's'` is `it's`.
//! - Loop rows are lines: each row is one line with exactly one value per column (RELION's rule, stricter
//!   than CIF's token stream), so a short or long row is reported with its line number.
//! - `;`-delimited multi-line text fields are accepted as key–value values (not inside loops).
//! - `# version 30001` comments (RELION ≥ 3.1) are kept as [`Block::version`] of the block that follows.
//!
//! Memory: a loop does not hold one `String` per cell. All loops of a parsed file share the file's text,
//! and each cell is 4 bytes (offset and length within its row's line), so 10⁷ rows × 30 columns cost the
//! file's size plus about 1.2 GB of spans. Lines longer than 64 KiB inside a loop are refused.

mod parse;
mod write;

use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::error::{Error, Result};

pub use write::{format_star, write_star};

/// A parsed (or built) STAR file.
#[derive(Debug, Clone)]
pub struct StarFile {
    path: PathBuf,
    blocks: Vec<Block>,
}

/// One `data_` block.
#[derive(Debug, Clone)]
pub struct Block {
    name: String,
    version: Option<u32>,
    pairs: Vec<(String, String)>,
    loops: Vec<Loop>,
}

/// One `loop_` table: column names plus rows of string cells stored as spans into one shared text buffer.
#[derive(Debug, Clone)]
pub struct Loop {
    path: Arc<PathBuf>,
    block: String,
    columns: Vec<String>,
    buf: Arc<String>,
    /// Whether `buf` is the whole source file, so that byte offsets map to its line numbers.
    buf_is_file: bool,
    row_starts: Vec<usize>,
    cells: Vec<Cell>,
}

/// A cell's position inside its row: `row_start + start .. + len` in the loop's buffer.
#[derive(Debug, Clone, Copy)]
struct Cell {
    start: u16,
    len: u16,
}

/// The longest row (in bytes of its line) a loop can hold.
pub const MAX_ROW_BYTES: usize = u16::MAX as usize;

impl StarFile {
    /// Read and parse `path`.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let text = crate::input::read_text(path, "STAR")?;
        Self::parse(path, text)
    }

    /// Parse STAR `text`; `path` is used in error messages and kept as [`StarFile::path`].
    pub fn parse(path: impl AsRef<Path>, text: String) -> Result<Self> {
        parse::parse(path.as_ref(), text)
    }

    /// An empty file to be filled with [`StarFile::push_block`] and written with [`write_star`].
    pub fn new(path: impl AsRef<Path>) -> Self {
        Self { path: path.as_ref().to_path_buf(), blocks: Vec::new() }
    }

    /// The file this was read from (or will be written to).
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// All blocks in file order.
    pub fn blocks(&self) -> &[Block] {
        &self.blocks
    }

    /// The first block named `name` (without the `data_` prefix).
    pub fn block(&self, name: &str) -> Option<&Block> {
        self.blocks.iter().find(|b| b.name == name)
    }

    /// Append a block.
    pub fn push_block(&mut self, block: Block) {
        self.blocks.push(block);
    }
}

impl Block {
    /// An empty block `data_<name>`.
    pub fn new(name: impl Into<String>) -> Self {
        Self { name: name.into(), version: None, pairs: Vec::new(), loops: Vec::new() }
    }

    /// The name after `data_` (may be empty).
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The RELION `# version N` comment that preceded this block, if any (30001 for RELION 3.1–5).
    pub fn version(&self) -> Option<u32> {
        self.version
    }

    /// Set the `# version N` comment written before this block.
    pub fn set_version(&mut self, version: Option<u32>) {
        self.version = version;
    }

    /// Key–value pairs in file order; keys keep their leading `_`.
    pub fn pairs(&self) -> &[(String, String)] {
        &self.pairs
    }

    /// The value of key `key` (with or without the leading `_`).
    pub fn pair(&self, key: &str) -> Option<&str> {
        self.pairs.iter().find(|(k, _)| same_name(k, key)).map(|(_, v)| v.as_str())
    }

    /// Add a key–value pair (`key` gets a leading `_` if it has none).
    pub fn push_pair(&mut self, key: &str, value: impl Into<String>) {
        self.pairs.push((with_underscore(key), value.into()));
    }

    /// The loops in file order.
    pub fn loops(&self) -> &[Loop] {
        &self.loops
    }

    /// Add a loop to this block.
    pub fn push_loop(&mut self, mut table: Loop) {
        table.block.clone_from(&self.name);
        self.loops.push(table);
    }

    /// Index of the loop with the most rows (the first of equals), if the block has loops.
    pub fn largest_loop(&self) -> Option<usize> {
        let mut best: Option<(usize, usize)> = None;
        for (i, l) in self.loops.iter().enumerate() {
            if best.is_none_or(|(_, n)| l.len() > n) {
                best = Some((i, l.len()));
            }
        }
        best.map(|(i, _)| i)
    }
}

impl Loop {
    /// The file this table came from.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The name of the block holding this table.
    pub fn block_name(&self) -> &str {
        &self.block
    }

    /// Column names, with their leading `_` (e.g. `_rlnImageName`).
    pub fn columns(&self) -> &[String] {
        &self.columns
    }

    /// Number of columns.
    pub fn ncols(&self) -> usize {
        self.columns.len()
    }

    /// Number of data rows.
    pub fn len(&self) -> usize {
        self.row_starts.len()
    }

    /// Whether the table has no rows.
    pub fn is_empty(&self) -> bool {
        self.row_starts.is_empty()
    }

    /// The index of column `name` (`_rlnVoltage` or `rlnVoltage`).
    pub fn column_index(&self, name: &str) -> Option<usize> {
        self.columns.iter().position(|c| same_name(c, name))
    }

    /// Whether column `name` exists.
    pub fn has_column(&self, name: &str) -> bool {
        self.column_index(name).is_some()
    }

    /// The (unquoted) value at `row`, `col` (0-based), or `None` outside the table.
    pub fn get(&self, row: usize, col: usize) -> Option<&str> {
        let ncols = self.columns.len();
        if col >= ncols {
            return None;
        }
        let start = *self.row_starts.get(row)?;
        let cell = self.cells.get(row * ncols + col)?;
        let a = start + cell.start as usize;
        self.buf.get(a..a + cell.len as usize)
    }

    /// The values of column `col` in row order.
    pub fn column(&self, col: usize) -> impl Iterator<Item = &str> + '_ {
        (0..self.len()).map(move |r| self.get(r, col).unwrap_or(""))
    }

    /// The values of `row` in column order.
    pub fn row(&self, row: usize) -> impl Iterator<Item = &str> + '_ {
        (0..self.ncols()).map(move |c| self.get(row, c).unwrap_or(""))
    }

    /// The 1-based line number of data row `row` in the source file (`None` for built tables).
    pub fn line_of_row(&self, row: usize) -> Option<usize> {
        if !self.buf_is_file {
            return None;
        }
        let start = *self.row_starts.get(row)?;
        Some(1 + self.buf.as_bytes()[..start].iter().filter(|&&b| b == b'\n').count())
    }

    /// "row 5 (line 42), column _rlnVoltage": where a cell is, for error messages. Rows count from 1.
    pub fn cell_record(&self, row: usize, col: &str) -> String {
        match self.line_of_row(row) {
            Some(line) => format!("data_{} row {} (line {line}), column {col}", self.block, row + 1),
            None => format!("data_{} row {}, column {col}", self.block, row + 1),
        }
    }

    /// The index of column `name`, or an error naming the block and the columns it has.
    pub fn require_column(&self, name: &str) -> Result<usize> {
        self.column_index(name).ok_or_else(|| {
            let shown: Vec<&str> = self.columns.iter().map(String::as_str).take(40).collect();
            Error::invalid(
                self.path(),
                Some(format!("data_{}", self.block)),
                format!("no column {}", with_underscore(name)),
                format!("the table has: {}", shown.join(" ")),
            )
        })
    }

    /// Column `name` parsed as numbers. Errors name the row, its line and the column. `nan`/`inf` parse
    /// (callers that need finite values check them).
    pub fn column_f64(&self, name: &str) -> Result<Vec<f64>> {
        let col = self.require_column(name)?;
        self.column_f64_at(col)
    }

    /// Column `col` parsed as numbers; see [`Loop::column_f64`].
    pub fn column_f64_at(&self, col: usize) -> Result<Vec<f64>> {
        let name = self.columns.get(col).map(String::as_str).unwrap_or("?");
        self.column(col)
            .enumerate()
            .map(|(r, v)| {
                v.parse::<f64>().map_err(|_| {
                    Error::invalid(
                        self.path(),
                        Some(self.cell_record(r, name)),
                        format!("`{v}` is not a number"),
                        "fix or remove that row",
                    )
                })
            })
            .collect()
    }

    /// Column `name` parsed as integers; a value such as `2.000000` is accepted as 2.
    pub fn column_i64(&self, name: &str) -> Result<Vec<i64>> {
        let col = self.require_column(name)?;
        let colname = &self.columns[col];
        self.column(col)
            .enumerate()
            .map(|(r, v)| {
                parse_integer(v).ok_or_else(|| {
                    Error::invalid(
                        self.path(),
                        Some(self.cell_record(r, colname)),
                        format!("`{v}` is not an integer"),
                        "fix or remove that row",
                    )
                })
            })
            .collect()
    }

    /// A new table with the rows `indices` (in that order, repeats allowed) and the same columns.
    pub fn select_rows(&self, indices: &[usize]) -> Result<Loop> {
        let mut b = LoopBuilder::new(self.columns.iter().cloned());
        b.path = self.path.clone();
        let mut vals: Vec<&str> = Vec::with_capacity(self.ncols());
        for &i in indices {
            if i >= self.len() {
                return Err(Error::invalid(
                    self.path(),
                    Some(format!("data_{}", self.block)),
                    format!("index {i} is out of range: the table has {} rows", self.len()),
                    "check that the index file belongs to this STAR file (indices are 0-based)",
                ));
            }
            vals.clear();
            vals.extend(self.row(i));
            b.push_row(&vals)?;
        }
        let mut out = b.finish();
        out.block.clone_from(&self.block);
        Ok(out)
    }
}

/// Builds a [`Loop`] row by row, storing all values in one buffer.
#[derive(Debug)]
pub struct LoopBuilder {
    path: Arc<PathBuf>,
    columns: Vec<String>,
    buf: String,
    row_starts: Vec<usize>,
    cells: Vec<Cell>,
}

impl LoopBuilder {
    /// Start a table with these column names (a leading `_` is added where missing).
    pub fn new<S: AsRef<str>>(columns: impl IntoIterator<Item = S>) -> Self {
        Self {
            path: Arc::new(PathBuf::from("(new table)")),
            columns: columns.into_iter().map(|c| with_underscore(c.as_ref())).collect(),
            buf: String::new(),
            row_starts: Vec::new(),
            cells: Vec::new(),
        }
    }

    /// Number of rows pushed so far.
    pub fn len(&self) -> usize {
        self.row_starts.len()
    }

    /// Whether no row was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.row_starts.is_empty()
    }

    /// Append one row; it must have one value per column.
    pub fn push_row<S: AsRef<str>>(&mut self, values: &[S]) -> Result<()> {
        if values.len() != self.columns.len() {
            return Err(Error::invalid(
                self.path.as_path(),
                Some(format!("new row {}", self.len() + 1)),
                format!("{} values for {} columns", values.len(), self.columns.len()),
                "",
            ));
        }
        let start = self.buf.len();
        for v in values {
            let v = v.as_ref();
            let a = self.buf.len() - start;
            self.buf.push_str(v);
            if self.buf.len() - start > MAX_ROW_BYTES {
                self.buf.truncate(start);
                self.cells.truncate(self.row_starts.len() * self.columns.len());
                return Err(Error::unsupported(
                    self.path.as_path(),
                    Some(format!("new row {}", self.len() + 1)),
                    format!("a row longer than {MAX_ROW_BYTES} bytes"),
                    "shorten the values (paths) in this row",
                ));
            }
            self.cells.push(Cell { start: a as u16, len: v.len() as u16 });
        }
        self.row_starts.push(start);
        Ok(())
    }

    /// The finished table.
    pub fn finish(self) -> Loop {
        Loop {
            path: self.path,
            block: String::new(),
            columns: self.columns,
            buf: Arc::new(self.buf),
            buf_is_file: false,
            row_starts: self.row_starts,
            cells: self.cells,
        }
    }
}

/// `_rlnX` and `rlnX` name the same column.
fn same_name(stored: &str, query: &str) -> bool {
    stored.strip_prefix('_').unwrap_or(stored) == query.strip_prefix('_').unwrap_or(query)
}

fn with_underscore(name: &str) -> String {
    if name.starts_with('_') {
        name.to_string()
    } else {
        format!("_{name}")
    }
}

/// An integer, also accepting a float with no fractional part (`2.000000`), as RELION tools write.
pub(crate) fn parse_integer(v: &str) -> Option<i64> {
    if let Ok(i) = v.parse::<i64>() {
        return Some(i);
    }
    let f = v.parse::<f64>().ok()?;
    (f.is_finite() && f.fract() == 0.0 && f.abs() < 9.0e15).then_some(f as i64)
}

#[cfg(test)]
mod tests;
