//! The STAR tokenizer and parser: one pass over the lines, no allocation per cell.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use super::{Block, Cell, Loop, StarFile, MAX_ROW_BYTES};
use crate::error::{Error, Result};

/// A token: `start..end` is the value (quotes excluded); `quoted` tells keywords from quoted text.
#[derive(Debug, Clone, Copy)]
struct Tok {
    start: usize,
    end: usize,
    quoted: bool,
}

fn is_space(b: u8) -> bool {
    matches!(b, b' ' | b'\t' | b'\r' | b'\x0b' | b'\x0c')
}

/// Split `bytes[start..end]` (one line) into tokens, appending to `out`. Returns the problem on a bad
/// quote.
fn tokenize(bytes: &[u8], start: usize, end: usize, out: &mut Vec<Tok>) -> std::result::Result<(), String> {
    out.clear();
    let mut i = start;
    while i < end {
        let b = bytes[i];
        if is_space(b) {
            i += 1;
            continue;
        }
        if b == b'#' {
            break;
        }
        if b == b'\'' || b == b'"' {
            // A quote closes only where it is followed by whitespace or the end of the line.
            let mut j = i + 1;
            loop {
                if j >= end {
                    return Err(format!(
                        "unterminated {} quote starting at column {}",
                        if b == b'"' { "double" } else { "single" },
                        i - start + 1
                    ));
                }
                if bytes[j] == b && (j + 1 == end || is_space(bytes[j + 1])) {
                    break;
                }
                j += 1;
            }
            out.push(Tok { start: i + 1, end: j, quoted: true });
            i = j + 1;
        } else {
            let mut j = i;
            while j < end && !is_space(bytes[j]) {
                j += 1;
            }
            out.push(Tok { start: i, end: j, quoted: false });
            i = j;
        }
    }
    Ok(())
}

/// Where the parser is.
enum State {
    /// Before the first `data_`.
    Top,
    /// Inside a block, outside loops.
    Block,
    /// After `loop_`, reading column names.
    Header,
    /// Reading loop rows.
    Body,
}

/// A loop being read.
struct OpenLoop {
    columns: Vec<String>,
    row_starts: Vec<usize>,
    cells: Vec<Cell>,
}

struct Parser<'a> {
    path: &'a Path,
    shared_path: Arc<PathBuf>,
    text: Arc<String>,
    blocks: Vec<Block>,
    open: Option<OpenLoop>,
    pending_version: Option<u32>,
}

/// Parse a whole STAR text.
pub(super) fn parse(path: &Path, text: String) -> Result<StarFile> {
    let text = Arc::new(text);
    let mut p = Parser {
        path,
        shared_path: Arc::new(path.to_path_buf()),
        text: Arc::clone(&text),
        blocks: Vec::new(),
        open: None,
        pending_version: None,
    };
    let bytes = text.as_bytes();
    let mut toks: Vec<Tok> = Vec::with_capacity(64);
    let mut state = State::Top;
    let mut pos = 0usize;
    let mut line_no = 0usize;
    while pos < bytes.len() {
        line_no += 1;
        let line_start = pos;
        let line_end = bytes[pos..].iter().position(|&b| b == b'\n').map_or(bytes.len(), |k| pos + k);
        pos = line_end + 1;
        let record = || Some(format!("line {line_no}"));
        tokenize(bytes, line_start, line_end, &mut toks)
            .map_err(|problem| Error::invalid(path, record(), problem, "close the quote or remove it"))?;
        let Some(&first) = toks.first() else {
            p.note_version_comment(&text[line_start..line_end]);
            continue;
        };
        let word = &text[first.start..first.end];
        let keyword = if first.quoted { Keyword::None } else { Keyword::of(word) };

        // A loop ends at the first line that is not a row (a new block, loop, key or stop_).
        if matches!(state, State::Body) && keyword != Keyword::None {
            p.close_loop();
            state = State::Block;
        }
        match keyword {
            Keyword::Data => {
                p.close_loop();
                if toks.len() > 1 {
                    return Err(Error::invalid(
                        path,
                        record(),
                        format!("unexpected text after `{word}`"),
                        "put data_ on a line of its own",
                    ));
                }
                p.blocks.push(Block {
                    name: word[5..].to_string(),
                    version: p.pending_version.take(),
                    pairs: Vec::new(),
                    loops: Vec::new(),
                });
                state = State::Block;
                continue;
            }
            Keyword::Unsupported => {
                return Err(Error::unsupported(
                    path,
                    record(),
                    format!("STAR/CIF `{word}` frames"),
                    "RELION files use only data_ blocks and loop_ tables",
                ));
            }
            _ => {}
        }
        if matches!(state, State::Top) {
            return Err(Error::invalid(
                path,
                record(),
                format!("`{word}` before the first data_ block"),
                "a STAR file must start its content with a data_NAME line",
            ));
        }
        match keyword {
            Keyword::Loop => {
                p.close_loop();
                p.open = Some(OpenLoop { columns: Vec::new(), row_starts: Vec::new(), cells: Vec::new() });
                state = State::Header;
                p.add_columns(&toks[1..], line_no)?;
            }
            Keyword::Stop => {
                p.close_loop();
                state = State::Block;
            }
            Keyword::Name if matches!(state, State::Header) => p.add_columns(&toks, line_no)?,
            Keyword::Name => {
                // A key–value pair; its value is on the same line or is a `;` text field below.
                let key = word.to_string();
                let value = match toks.get(1) {
                    Some(v) => {
                        if toks.len() > 2 {
                            return Err(Error::invalid(
                                path,
                                record(),
                                format!("key {key} has {} values", toks.len() - 1),
                                "quote values that contain spaces",
                            ));
                        }
                        text[v.start..v.end].to_string()
                    }
                    None if bytes.get(pos) == Some(&b';') => {
                        let (value, next, lines) = read_text_field(&text, pos).ok_or_else(|| {
                            Error::invalid(
                                path,
                                Some(format!("line {}", line_no + 1)),
                                format!("the ;-text field of {key} is never closed"),
                                "end it with a line that starts with ;",
                            )
                        })?;
                        pos = next;
                        line_no += lines;
                        value
                    }
                    None => {
                        return Err(Error::invalid(
                            path,
                            record(),
                            format!("key {key} has no value"),
                            "write a value after the key (use \"\" for an empty one)",
                        ))
                    }
                };
                if let Some(b) = p.blocks.last_mut() {
                    b.pairs.push((key, value));
                }
            }
            _ => {
                // A data row.
                if matches!(state, State::Header) {
                    state = State::Body;
                }
                if !matches!(state, State::Body) {
                    return Err(Error::invalid(
                        path,
                        record(),
                        format!("value `{word}` outside a loop_ and without a key"),
                        "start a table with loop_ and column names, or write `_key value`",
                    ));
                }
                if !first.quoted && word.starts_with(';') && first.start == line_start {
                    return Err(Error::unsupported(
                        path,
                        record(),
                        "a ;-delimited text field inside a loop",
                        "write the value on the row, quoted",
                    ));
                }
                p.push_row(&toks, line_start, line_end, line_no)?;
            }
        }
    }
    p.close_loop();
    Ok(StarFile { path: path.to_path_buf(), blocks: p.blocks })
}

/// Read a `;` text field starting at byte `pos` (a line beginning with `;`) up to the next line that
/// begins with `;`. Returns the value (lines joined by `\n`), the byte after the closing line and the
/// number of lines consumed.
fn read_text_field(text: &str, pos: usize) -> Option<(String, usize, usize)> {
    let mut value = String::new();
    let mut consumed = 0usize;
    for (k, raw) in text[pos..].split_inclusive('\n').enumerate() {
        consumed += raw.len();
        let line = raw.trim_end_matches('\n').trim_end_matches('\r');
        if k == 0 {
            value.push_str(line.get(1..).unwrap_or(""));
            continue;
        }
        if line.starts_with(';') {
            return Some((value, pos + consumed, k + 1));
        }
        value.push('\n');
        value.push_str(line);
    }
    None
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Keyword {
    Data,
    Loop,
    Stop,
    Unsupported,
    /// `_name`: a column or a key.
    Name,
    None,
}

impl Keyword {
    fn of(word: &str) -> Self {
        // Compare bytes: slicing the str could split a multi-byte character.
        let lower_starts =
            |p: &str| word.len() >= p.len() && word.as_bytes()[..p.len()].eq_ignore_ascii_case(p.as_bytes());
        if word.starts_with('_') {
            Keyword::Name
        } else if lower_starts("data_") {
            Keyword::Data
        } else if word.eq_ignore_ascii_case("loop_") {
            Keyword::Loop
        } else if word.eq_ignore_ascii_case("stop_") {
            Keyword::Stop
        } else if lower_starts("save_") || word.eq_ignore_ascii_case("global_") {
            Keyword::Unsupported
        } else {
            Keyword::None
        }
    }
}

impl Parser<'_> {
    /// Remember `# version N` (RELION's marker) for the next block.
    fn note_version_comment(&mut self, line: &str) {
        let t = line.trim_start();
        if let Some(rest) = t.strip_prefix('#') {
            let mut words = rest.split_whitespace();
            if words.next() == Some("version") {
                if let Some(v) = words.next().and_then(|w| w.parse::<u32>().ok()) {
                    self.pending_version = Some(v);
                }
            }
        }
    }

    fn add_columns(&mut self, toks: &[Tok], line_no: usize) -> Result<()> {
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        for t in toks {
            let name = &self.text[t.start..t.end];
            if t.quoted || !name.starts_with('_') {
                return Err(Error::invalid(
                    self.path,
                    Some(format!("line {line_no}")),
                    format!("`{name}` among the column names of a loop_"),
                    "put each column name (_name) on its own line before the rows",
                ));
            }
            open.columns.push(name.to_string());
        }
        Ok(())
    }

    fn push_row(&mut self, toks: &[Tok], line_start: usize, line_end: usize, line_no: usize) -> Result<()> {
        let Some(open) = self.open.as_mut() else { return Ok(()) };
        if toks.len() != open.columns.len() {
            return Err(Error::invalid(
                self.path,
                Some(format!("line {line_no}")),
                format!(
                    "row {} has {} values but the loop has {} columns ({})",
                    open.row_starts.len() + 1,
                    toks.len(),
                    open.columns.len(),
                    open.columns.join(" ")
                ),
                "every row must have one value per column; quote values that contain spaces",
            ));
        }
        if line_end - line_start > MAX_ROW_BYTES {
            return Err(Error::unsupported(
                self.path,
                Some(format!("line {line_no}")),
                format!("a loop row longer than {MAX_ROW_BYTES} bytes"),
                "shorten the values (paths) in this row",
            ));
        }
        for t in toks {
            open.cells.push(Cell { start: (t.start - line_start) as u16, len: (t.end - t.start) as u16 });
        }
        open.row_starts.push(line_start);
        Ok(())
    }

    fn close_loop(&mut self) {
        let Some(open) = self.open.take() else { return };
        let Some(block) = self.blocks.last_mut() else { return };
        block.loops.push(Loop {
            path: Arc::clone(&self.shared_path),
            block: block.name.clone(),
            columns: open.columns,
            buf: Arc::clone(&self.text),
            buf_is_file: true,
            row_starts: open.row_starts,
            cells: open.cells,
        });
    }
}
