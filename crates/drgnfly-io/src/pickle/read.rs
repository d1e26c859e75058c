//! The pickle virtual machine: protocols 0–5, restricted to what numpy arrays need.
//!
//! The machine interprets opcodes the way CPython's `pickle._Unpickler` does (a value stack, a stack of
//! marks, a memo), but a `GLOBAL`/`STACK_GLOBAL` may only name numpy's array reconstruction helpers, the
//! `numpy.ndarray` and `numpy.dtype` types, and the two builtins that protocols 0–2 use to spell `bytes`
//! (`_codecs.encode`, `bytes`). Anything else is [`Error::UnsafePickle`] with its byte offset. Nothing is
//! called: `REDUCE` and `BUILD` on those names are interpreted here.
//!
//! Objects live in one arena and the stack and memo hold indices into it, so shared references (memo
//! `GET`s) behave as in Python, self-referencing structures cannot make dropping recurse, and clones are
//! cheap. Bytes are borrowed from the input. Converting the final object into a [`PyValue`] is bounded in
//! nesting depth and total work, so crafted pickles (cycles, exponential sharing) end in an error.

mod call;
mod finish;
#[cfg(test)]
mod tests;

use std::borrow::Cow;
use std::collections::HashMap;
use std::path::Path;

use call::Global;

use super::numpy::Dtype;
use super::opcode as op;
use super::value::{NdArray, PyValue};
use crate::error::{Error, Result};

/// Python objects one pickle may create; numpy array pickles create about 20 per array.
const MAX_OBJECTS: usize = 1 << 22;

const HINT: &str = "The file is not a numpy-array pickle as numpy/cryoDRGN write it; re-create it with numpy";

/// Every pickle in `data`, back to back (cryoDRGN's `z.N.pkl` holds two). `origin` names the source in
/// errors.
pub fn parse_all(data: &[u8], origin: &Path) -> Result<Vec<PyValue>> {
    if data.is_empty() {
        return Err(Error::invalid(origin, None, "the file is empty", HINT));
    }
    let mut values = Vec::new();
    let mut pos = 0;
    while pos < data.len() {
        let (value, end) = parse_at(data, pos, origin)?;
        values.push(value);
        pos = end;
    }
    Ok(values)
}

/// The first pickle in `data` and the offset just past its `STOP` opcode; what follows is not read.
pub fn parse_first(data: &[u8], origin: &Path) -> Result<(PyValue, usize)> {
    if data.is_empty() {
        return Err(Error::invalid(origin, None, "the file is empty", HINT));
    }
    parse_at(data, 0, origin)
}

fn parse_at(data: &[u8], start: usize, origin: &Path) -> Result<(PyValue, usize)> {
    Machine {
        origin,
        data,
        pos: start,
        op_at: start,
        op: 0,
        stack: Vec::new(),
        marks: Vec::new(),
        memo: HashMap::new(),
        objs: Vec::new(),
    }
    .run()
}

/// A stack or memo entry: small values inline, everything else an index into the object arena.
#[derive(Debug, Clone, Copy)]
enum Item {
    None,
    Bool(bool),
    Int(i64),
    Float(f64),
    Obj(usize),
}

enum Obj<'a> {
    Str(String),
    Bytes(Cow<'a, [u8]>),
    Tuple(Vec<Item>),
    List(Vec<Item>),
    /// Key–value pairs; only ever rejected or ignored, never looked up.
    Dict(Vec<(Item, Item)>),
    Global(Global),
    Dtype(Dtype),
    /// An ndarray: `None` between `_reconstruct` and the `BUILD` that gives it its state.
    Array(Option<NdArray>),
}

struct Machine<'a> {
    origin: &'a Path,
    data: &'a [u8],
    pos: usize,
    /// Offset and code of the opcode being executed, for messages.
    op_at: usize,
    op: u8,
    stack: Vec<Item>,
    /// Stack heights at each open `MARK`.
    marks: Vec<usize>,
    memo: HashMap<u64, Item>,
    objs: Vec<Obj<'a>>,
}

impl<'a> Machine<'a> {
    fn run(mut self) -> Result<(PyValue, usize)> {
        loop {
            self.op_at = self.pos;
            self.op = op::STOP;
            if self.pos >= self.data.len() {
                return Err(self.truncated(1, "the pickle ends without its STOP opcode"));
            }
            self.op = self.u8()?;
            match self.op {
                op::PROTO => {
                    let version = self.u8()?;
                    if version > 5 {
                        return Err(self.unsupported(format!("pickle protocol {version} (newest known is 5)")));
                    }
                }
                op::FRAME => {
                    // An advisory length; only frames that run past the end are rejected.
                    let len = self.u64_len()?;
                    self.need(len, "pickle frame")?;
                }
                op::STOP => {
                    let top = self.pop()?;
                    let end = self.pos;
                    return Ok((self.into_value(top)?, end));
                }
                op::MARK => self.marks.push(self.stack.len()),
                op::POP => {
                    if self.stack.len() > self.floor() {
                        self.stack.pop();
                    } else {
                        self.pop_mark()?;
                    }
                }
                op::POP_MARK => {
                    self.pop_mark()?;
                }
                op::DUP => {
                    let top = self.top()?;
                    self.stack.push(top);
                }

                // Scalars.
                op::NONE => self.stack.push(Item::None),
                op::NEWTRUE => self.stack.push(Item::Bool(true)),
                op::NEWFALSE => self.stack.push(Item::Bool(false)),
                op::BININT1 => {
                    let v = self.u8()?;
                    self.stack.push(Item::Int(i64::from(v)));
                }
                op::BININT2 => {
                    let v = u16::from_le_bytes(self.array::<2>()?);
                    self.stack.push(Item::Int(i64::from(v)));
                }
                op::BININT => {
                    let v = i32::from_le_bytes(self.array::<4>()?);
                    self.stack.push(Item::Int(i64::from(v)));
                }
                op::LONG1 => {
                    let n = usize::from(self.u8()?);
                    let v = self.long(n)?;
                    self.stack.push(Item::Int(v));
                }
                op::LONG4 => {
                    let n = i32::from_le_bytes(self.array::<4>()?);
                    let n = usize::try_from(n).map_err(|_| self.invalid("negative LONG4 length"))?;
                    let v = self.long(n)?;
                    self.stack.push(Item::Int(v));
                }
                op::BINFLOAT => {
                    let v = f64::from_be_bytes(self.array::<8>()?);
                    self.stack.push(Item::Float(v));
                }
                op::INT => {
                    let line = self.text_line()?;
                    let item = match line {
                        "00" => Item::Bool(false),
                        "01" => Item::Bool(true),
                        _ => Item::Int(self.parse_int(line)?),
                    };
                    self.stack.push(item);
                }
                op::LONG => {
                    let line = self.text_line()?;
                    let v = self.parse_int(line.strip_suffix('L').unwrap_or(line))?;
                    self.stack.push(Item::Int(v));
                }
                op::FLOAT => {
                    let line = self.text_line()?;
                    let v = line.parse::<f64>().map_err(|_| self.invalid(format!("bad float `{line}`")))?;
                    self.stack.push(Item::Float(v));
                }

                // Strings and bytes.
                op::UNICODE => {
                    let line = self.line()?;
                    let s = raw_unicode_escape(line).ok_or_else(|| self.invalid("bad raw-unicode-escape text"))?;
                    self.push_obj(Obj::Str(s))?;
                }
                op::BINUNICODE => {
                    let n = u64::from(u32::from_le_bytes(self.array::<4>()?));
                    self.push_utf8(n)?;
                }
                op::SHORT_BINUNICODE => {
                    let n = u64::from(self.u8()?);
                    self.push_utf8(n)?;
                }
                op::BINUNICODE8 => {
                    let n = self.u64_len()?;
                    self.push_utf8(n)?;
                }
                op::SHORT_BINBYTES | op::SHORT_BINSTRING => {
                    // SHORT_BINBYTES, and Python 2's SHORT_BINSTRING (read as bytes, as numpy does).
                    let n = u64::from(self.u8()?);
                    self.push_bytes(n)?;
                }
                op::BINBYTES => {
                    let n = u64::from(u32::from_le_bytes(self.array::<4>()?));
                    self.push_bytes(n)?;
                }
                op::BINSTRING => {
                    let n = i32::from_le_bytes(self.array::<4>()?);
                    let n = u64::try_from(n).map_err(|_| self.invalid("negative BINSTRING length"))?;
                    self.push_bytes(n)?;
                }
                op::BINBYTES8 | op::BYTEARRAY8 => {
                    let n = self.u64_len()?;
                    self.push_bytes(n)?;
                }

                // Containers.
                op::EMPTY_TUPLE => self.push_obj(Obj::Tuple(Vec::new()))?,
                op::TUPLE => {
                    let items = self.pop_mark()?;
                    self.push_obj(Obj::Tuple(items))?;
                }
                op::TUPLE1..=op::TUPLE3 => {
                    let n = usize::from(self.op - op::TUPLE1 + 1);
                    if self.stack.len() < self.floor() + n {
                        return Err(self.invalid("stack underflow"));
                    }
                    let items = self.stack.split_off(self.stack.len() - n);
                    self.push_obj(Obj::Tuple(items))?;
                }
                op::EMPTY_LIST => self.push_obj(Obj::List(Vec::new()))?,
                op::LIST => {
                    let items = self.pop_mark()?;
                    self.push_obj(Obj::List(items))?;
                }
                op::APPEND => {
                    let item = self.pop()?;
                    self.append(vec![item])?;
                }
                op::APPENDS => {
                    let items = self.pop_mark()?;
                    self.append(items)?;
                }
                op::EMPTY_DICT => self.push_obj(Obj::Dict(Vec::new()))?,
                op::DICT => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.push_obj(Obj::Dict(pairs))?;
                }
                op::SETITEM => {
                    let value = self.pop()?;
                    let key = self.pop()?;
                    self.set_items(vec![(key, value)])?;
                }
                op::SETITEMS => {
                    let items = self.pop_mark()?;
                    let pairs = self.pairs(items)?;
                    self.set_items(pairs)?;
                }

                // Memo.
                op::PUT => {
                    let line = self.text_line()?;
                    let key = self.parse_memo_key(line)?;
                    self.memo_put(key)?;
                }
                op::BINPUT => {
                    let key = u64::from(self.u8()?);
                    self.memo_put(key)?;
                }
                op::LONG_BINPUT => {
                    let key = u64::from(u32::from_le_bytes(self.array::<4>()?));
                    self.memo_put(key)?;
                }
                op::MEMOIZE => {
                    let key = self.memo.len() as u64;
                    self.memo_put(key)?;
                }
                op::GET => {
                    let line = self.text_line()?;
                    let key = self.parse_memo_key(line)?;
                    self.memo_get(key)?;
                }
                op::BINGET => {
                    let key = u64::from(self.u8()?);
                    self.memo_get(key)?;
                }
                op::LONG_BINGET => {
                    let key = u64::from(u32::from_le_bytes(self.array::<4>()?));
                    self.memo_get(key)?;
                }

                // Globals and calls.
                op::GLOBAL => {
                    let module = self.text_line()?;
                    let name = self.text_line()?;
                    let global = self.global(module, name)?;
                    self.push_obj(Obj::Global(global))?;
                }
                op::STACK_GLOBAL => {
                    let name = self.pop()?;
                    let module = self.pop()?;
                    let (Some(module), Some(name)) = (self.str_of(module), self.str_of(name)) else {
                        return Err(self.invalid("STACK_GLOBAL needs two strings"));
                    };
                    let global = self.global(module, name)?;
                    self.push_obj(Obj::Global(global))?;
                }
                op::INST => {
                    // INST instantiates `module.name` directly: never allowed.
                    let module = self.text_line()?;
                    let name = self.text_line()?;
                    return Err(self.unsafe_global(format!("{module}.{name}")));
                }
                op::REDUCE => {
                    let args = self.pop()?;
                    let callable = self.pop()?;
                    let result = self.reduce(callable, args)?;
                    self.push_obj(result)?;
                }
                op::NEWOBJ | op::NEWOBJ_EX => {
                    // NEWOBJ / NEWOBJ_EX: `cls.__new__(cls, *args)`; only an empty ndarray awaiting BUILD.
                    if self.op == op::NEWOBJ_EX {
                        self.pop()?;
                    }
                    self.pop()?;
                    let cls = self.pop()?;
                    if self.global_of(cls) != Some(Global::Ndarray) {
                        return Err(self.unsupported("creating an object other than numpy.ndarray"));
                    }
                    self.push_obj(Obj::Array(None))?;
                }
                op::BUILD => {
                    let state = self.pop()?;
                    let target = self.top()?;
                    self.build(target, state)?;
                }

                op::PERSID | op::BINPERSID => {
                    return Err(self.unsupported(
                        "persistent references (is this a PyTorch checkpoint? those are read as weights, not arrays)",
                    ))
                }
                op::EXT1..=op::EXT4 => return Err(self.unsupported("copyreg extension codes")),
                op::EMPTY_SET..=op::FROZENSET => return Err(self.unsupported("sets")),
                op::OBJ => return Err(self.unsupported("the OBJ opcode (object construction)")),
                op::NEXT_BUFFER | op::READONLY_BUFFER => {
                    return Err(self.unsupported("out-of-band buffers (pickle protocol 5 buffer_callback)"))
                }
                op::STRING => return Err(self.unsupported("Python 2 quoted strings (STRING opcode)")),
                other => return Err(self.invalid(format!("unknown pickle opcode 0x{other:02x}"))),
            }
        }
    }

    // ---- Reading the input ----

    /// The end offset of the next `n` bytes, or a truncation error when the input is shorter.
    fn need(&self, n: u64, what: &str) -> Result<usize> {
        let end = usize::try_from(n).ok().and_then(|n| self.pos.checked_add(n));
        match end {
            Some(end) if end <= self.data.len() => Ok(end),
            _ => Err(self.truncated(n, what)),
        }
    }

    fn truncated(&self, n: u64, what: &str) -> Error {
        Error::Truncated {
            path: self.origin.to_path_buf(),
            what: format!("{what} (pickle opcode {} at byte {})", op::name(self.op), self.op_at),
            expected: (self.pos as u64).saturating_add(n),
            got: self.data.len() as u64,
            hint: "The file was cut short (interrupted write or copy?); re-create or re-copy it".to_string(),
        }
    }

    fn take(&mut self, n: usize) -> Result<&'a [u8]> {
        let end = self.need(n as u64, "pickle data")?;
        let data: &'a [u8] = self.data;
        let bytes = &data[self.pos..end];
        self.pos = end;
        Ok(bytes)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N]> {
        let mut out = [0u8; N];
        out.copy_from_slice(self.take(N)?);
        Ok(out)
    }

    fn u8(&mut self) -> Result<u8> {
        Ok(self.array::<1>()?[0])
    }

    fn u64_len(&mut self) -> Result<u64> {
        Ok(u64::from_le_bytes(self.array::<8>()?))
    }

    /// A protocol-0 argument: the bytes up to (not including) the next newline.
    fn line(&mut self) -> Result<&'a [u8]> {
        let data: &'a [u8] = self.data;
        let rest = &data[self.pos..];
        let Some(n) = rest.iter().position(|&b| b == b'\n') else {
            return Err(self.truncated(rest.len() as u64 + 1, "a newline-terminated argument"));
        };
        self.pos += n + 1;
        Ok(&rest[..n])
    }

    fn text_line(&mut self) -> Result<&'a str> {
        let line = self.line()?;
        std::str::from_utf8(line).map_err(|_| self.invalid("argument is not text"))
    }

    fn parse_int(&self, text: &str) -> Result<i64> {
        text.trim()
            .parse::<i64>()
            .map_err(|_| self.unsupported(format!("integer `{text}` (not a number, or larger than 64 bits)")))
    }

    fn parse_memo_key(&self, text: &str) -> Result<u64> {
        text.trim().parse::<u64>().map_err(|_| self.invalid(format!("bad memo key `{text}`")))
    }

    /// A little-endian two's-complement integer of `n` bytes (LONG1/LONG4).
    fn long(&mut self, n: usize) -> Result<i64> {
        if n > 8 {
            return Err(self.unsupported(format!("a {n}-byte integer (larger than 64 bits)")));
        }
        let bytes = self.take(n)?;
        let mut buf = match bytes.last() {
            Some(&last) if last & 0x80 != 0 => [0xffu8; 8],
            _ => [0u8; 8],
        };
        buf[..n].copy_from_slice(bytes);
        Ok(i64::from_le_bytes(buf))
    }

    fn push_utf8(&mut self, n: u64) -> Result<()> {
        let end = self.need(n, "string")?;
        let data: &'a [u8] = self.data;
        let text =
            std::str::from_utf8(&data[self.pos..end]).map_err(|_| self.invalid("string is not UTF-8"))?;
        self.pos = end;
        self.push_obj(Obj::Str(text.to_string()))
    }

    fn push_bytes(&mut self, n: u64) -> Result<()> {
        let end = self.need(n, "bytes")?;
        let data: &'a [u8] = self.data;
        let bytes = &data[self.pos..end];
        self.pos = end;
        self.push_obj(Obj::Bytes(Cow::Borrowed(bytes)))
    }

    // ---- Stack, marks, memo ----

    /// The stack height below which the innermost open MARK hides items (as Python's per-mark stacks do).
    fn floor(&self) -> usize {
        self.marks.last().copied().unwrap_or(0)
    }

    fn pop(&mut self) -> Result<Item> {
        if self.stack.len() <= self.floor() {
            return Err(self.invalid("stack underflow"));
        }
        self.stack.pop().ok_or_else(|| self.invalid("stack underflow"))
    }

    fn top(&self) -> Result<Item> {
        if self.stack.len() <= self.floor() {
            return Err(self.invalid("stack underflow"));
        }
        self.stack.last().copied().ok_or_else(|| self.invalid("stack underflow"))
    }

    fn pop_mark(&mut self) -> Result<Vec<Item>> {
        let mark = self.marks.pop().ok_or_else(|| self.invalid("no MARK to close"))?;
        if mark > self.stack.len() {
            return Err(self.invalid("stack underflow"));
        }
        Ok(self.stack.split_off(mark))
    }

    fn push_obj(&mut self, obj: Obj<'a>) -> Result<()> {
        if self.objs.len() >= MAX_OBJECTS {
            return Err(self.unsupported(format!(
                "more than {MAX_OBJECTS} Python objects (numpy-array pickles hold a few per array)"
            )));
        }
        self.objs.push(obj);
        self.stack.push(Item::Obj(self.objs.len() - 1));
        Ok(())
    }

    fn memo_put(&mut self, key: u64) -> Result<()> {
        let top = self.top()?;
        self.memo.insert(key, top);
        Ok(())
    }

    fn memo_get(&mut self, key: u64) -> Result<()> {
        let item =
            *self.memo.get(&key).ok_or_else(|| self.invalid(format!("memo key {key} was never stored")))?;
        self.stack.push(item);
        Ok(())
    }

    /// APPEND/APPENDS: extend the list on top of the stack.
    fn append(&mut self, items: Vec<Item>) -> Result<()> {
        let target = self.top()?;
        if let Item::Obj(i) = target {
            if let Some(Obj::List(list)) = self.objs.get_mut(i) {
                list.extend(items);
                return Ok(());
            }
        }
        Err(self.invalid(format!("APPEND to {}, not a list", self.describe(target))))
    }

    /// SETITEM/SETITEMS: add pairs to the dict on top of the stack.
    fn set_items(&mut self, pairs: Vec<(Item, Item)>) -> Result<()> {
        let target = self.top()?;
        if let Item::Obj(i) = target {
            if let Some(Obj::Dict(dict)) = self.objs.get_mut(i) {
                dict.extend(pairs);
                return Ok(());
            }
        }
        Err(self.invalid(format!("SETITEM on {}, not a dict", self.describe(target))))
    }

    fn pairs(&self, items: Vec<Item>) -> Result<Vec<(Item, Item)>> {
        if !items.len().is_multiple_of(2) {
            return Err(self.invalid("odd number of items for a dict"));
        }
        Ok(items.chunks_exact(2).map(|kv| (kv[0], kv[1])).collect())
    }

    // ---- Typed views of items ----

    fn obj(&self, item: Item) -> Option<&Obj<'a>> {
        match item {
            Item::Obj(i) => self.objs.get(i),
            _ => None,
        }
    }

    fn str_of(&self, item: Item) -> Option<&str> {
        match self.obj(item) {
            Some(Obj::Str(s)) => Some(s),
            _ => None,
        }
    }

    fn bytes_of(&self, item: Item) -> Option<&[u8]> {
        match self.obj(item) {
            Some(Obj::Bytes(b)) => Some(b),
            _ => None,
        }
    }

    fn tuple_of(&self, item: Item) -> Option<Vec<Item>> {
        match self.obj(item) {
            Some(Obj::Tuple(items)) => Some(items.clone()),
            _ => None,
        }
    }

    fn global_of(&self, item: Item) -> Option<Global> {
        match self.obj(item) {
            Some(Obj::Global(g)) => Some(*g),
            _ => None,
        }
    }

    fn dtype_of(&self, item: Item) -> Option<Dtype> {
        match self.obj(item) {
            Some(Obj::Dtype(d)) => Some(*d),
            _ => None,
        }
    }

    fn bool_of(item: Item) -> Option<bool> {
        match item {
            Item::Bool(b) => Some(b),
            Item::Int(i) => Some(i != 0),
            _ => None,
        }
    }

    /// A shape: a tuple of non-negative ints (numpy also accepts a bare int).
    fn shape_of(&self, item: Item) -> Option<Vec<usize>> {
        match item {
            Item::Int(n) => usize::try_from(n).ok().map(|n| vec![n]),
            _ => self
                .tuple_of(item)?
                .into_iter()
                .map(|d| match d {
                    Item::Int(n) => usize::try_from(n).ok(),
                    _ => None,
                })
                .collect(),
        }
    }

    fn describe(&self, item: Item) -> String {
        match item {
            Item::None => "None".into(),
            Item::Bool(_) => "a bool".into(),
            Item::Int(_) => "an int".into(),
            Item::Float(_) => "a float".into(),
            Item::Obj(_) => match self.obj(item) {
                Some(Obj::Str(_)) => "a str".into(),
                Some(Obj::Bytes(_)) => "bytes".into(),
                Some(Obj::Tuple(t)) => format!("a tuple of {} items", t.len()),
                Some(Obj::List(l)) => format!("a list of {} items", l.len()),
                Some(Obj::Dict(_)) => "a dict".into(),
                Some(Obj::Global(g)) => format!("the global `{}`", g.name()),
                Some(Obj::Dtype(d)) => format!("a numpy dtype ({})", d.dtype),
                Some(Obj::Array(_)) => "a numpy array".into(),
                None => "nothing".into(),
            },
        }
    }

    // ---- Errors ----

    fn record(&self) -> Option<String> {
        Some(format!("byte {} (pickle opcode {})", self.op_at, op::name(self.op)))
    }

    fn invalid(&self, problem: impl Into<String>) -> Error {
        Error::invalid(self.origin, self.record(), problem, HINT)
    }

    fn unsupported(&self, what: impl Into<String>) -> Error {
        Error::unsupported(self.origin, self.record(), what, HINT)
    }

    fn unsafe_global(&self, global: String) -> Error {
        Error::UnsafePickle { path: self.origin.to_path_buf(), global, offset: self.op_at as u64 }
    }
}

/// Decode protocol 0's `raw-unicode-escape` text: bytes are Latin-1 characters, except that `\uXXXX` and
/// `\UXXXXXXXX` after an odd number of backslashes are escapes (CPython's rule).
fn raw_unicode_escape(bytes: &[u8]) -> Option<String> {
    let mut out = String::with_capacity(bytes.len());
    let mut i = 0;
    let mut backslashes = 0usize;
    while i < bytes.len() {
        let b = bytes[i];
        let escape_len = match b {
            b'u' if backslashes % 2 == 1 => Some(4),
            b'U' if backslashes % 2 == 1 => Some(8),
            _ => None,
        };
        if let Some(n) = escape_len {
            out.pop(); // the backslash that opened the escape
            let hex = bytes.get(i + 1..i + 1 + n)?;
            let code = u32::from_str_radix(std::str::from_utf8(hex).ok()?, 16).ok()?;
            out.push(char::from_u32(code)?);
            i += 1 + n;
            backslashes = 0;
            continue;
        }
        backslashes = if b == b'\\' { backslashes + 1 } else { 0 };
        out.push(char::from(b));
        i += 1;
    }
    Some(out)
}
