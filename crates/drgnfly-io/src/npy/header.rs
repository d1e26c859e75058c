//! The `.npy` header: a Python dict literal `{'descr': …, 'fortran_order': …, 'shape': (…), }`, parsed
//! with a small literal parser (never evaluated), and its dtype description.

use super::{ByteOrder, DType, Field, Scalar, ScalarKind};

/// A Python literal as it appears in npy headers.
#[derive(Debug, Clone, PartialEq)]
pub(super) enum Lit {
    Str(String),
    Int(i128),
    Bool(bool),
    None,
    Seq(Vec<Lit>),
    Dict(Vec<(Lit, Lit)>),
}

/// Nesting deeper than this is refused, so a hostile header cannot overflow the stack.
const MAX_DEPTH: usize = 32;

struct P<'a> {
    s: &'a [u8],
    i: usize,
}

/// Parse one literal filling the whole text (trailing whitespace allowed).
pub(super) fn parse_literal(text: &str) -> Result<Lit, String> {
    let mut p = P { s: text.as_bytes(), i: 0 };
    let v = p.value(0)?;
    p.ws();
    if p.i != p.s.len() {
        return Err(format!("unexpected text at header byte {}", p.i));
    }
    Ok(v)
}

impl P<'_> {
    fn ws(&mut self) {
        while self.i < self.s.len() && self.s[self.i].is_ascii_whitespace() {
            self.i += 1;
        }
    }

    fn peek(&mut self) -> Option<u8> {
        self.ws();
        self.s.get(self.i).copied()
    }

    fn value(&mut self, depth: usize) -> Result<Lit, String> {
        if depth > MAX_DEPTH {
            return Err("header nests too deeply".into());
        }
        match self.peek() {
            Some(q @ (b'\'' | b'"')) => self.string(q).map(Lit::Str),
            Some(b'(') => self.seq(b')', depth).map(Lit::Seq),
            Some(b'[') => self.seq(b']', depth).map(Lit::Seq),
            Some(b'{') => self.dict(depth),
            Some(c) if c == b'-' || c.is_ascii_digit() => self.int(),
            Some(c) if c.is_ascii_alphabetic() => {
                let start = self.i;
                while self.i < self.s.len() && self.s[self.i].is_ascii_alphanumeric() {
                    self.i += 1;
                }
                match &self.s[start..self.i] {
                    b"True" => Ok(Lit::Bool(true)),
                    b"False" => Ok(Lit::Bool(false)),
                    b"None" => Ok(Lit::None),
                    w => Err(format!("unexpected word `{}` in header", String::from_utf8_lossy(w))),
                }
            }
            Some(c) => Err(format!("unexpected `{}` at header byte {}", c as char, self.i)),
            None => Err("header ends early".into()),
        }
    }

    fn int(&mut self) -> Result<Lit, String> {
        let start = self.i;
        if self.s.get(self.i) == Some(&b'-') {
            self.i += 1;
        }
        while self.i < self.s.len() && self.s[self.i].is_ascii_digit() {
            self.i += 1;
        }
        let text = std::str::from_utf8(&self.s[start..self.i]).unwrap_or("");
        let v = text.parse::<i128>().map_err(|_| format!("bad integer `{text}` in header"))?;
        // Python 2 wrote long integers with an L suffix.
        if matches!(self.s.get(self.i), Some(b'L' | b'l')) {
            self.i += 1;
        }
        Ok(Lit::Int(v))
    }

    fn string(&mut self, q: u8) -> Result<String, String> {
        self.i += 1;
        let mut out: Vec<u8> = Vec::new();
        loop {
            let Some(&c) = self.s.get(self.i) else { return Err("unterminated string in header".into()) };
            self.i += 1;
            if c == q {
                break;
            }
            if c != b'\\' {
                out.push(c);
                continue;
            }
            let Some(&e) = self.s.get(self.i) else { return Err("unterminated string in header".into()) };
            self.i += 1;
            match e {
                b'n' => out.push(b'\n'),
                b't' => out.push(b'\t'),
                b'r' => out.push(b'\r'),
                b'0' => out.push(0),
                b'x' | b'u' | b'U' => {
                    let n = match e {
                        b'x' => 2,
                        b'u' => 4,
                        _ => 8,
                    };
                    let hex = self.s.get(self.i..self.i + n).ok_or("bad escape in header string")?;
                    self.i += n;
                    let code = u32::from_str_radix(std::str::from_utf8(hex).unwrap_or("z"), 16)
                        .map_err(|_| "bad escape in header string")?;
                    let ch = char::from_u32(code).ok_or("bad escape in header string")?;
                    out.extend_from_slice(ch.to_string().as_bytes());
                }
                other => out.push(other),
            }
        }
        String::from_utf8(out).map_err(|_| "header string is not UTF-8".into())
    }

    fn seq(&mut self, close: u8, depth: usize) -> Result<Vec<Lit>, String> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(close) {
                self.i += 1;
                return Ok(items);
            }
            items.push(self.value(depth + 1)?);
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(c) if c == close => {}
                _ => return Err(format!("expected `,` or `{}` at header byte {}", close as char, self.i)),
            }
        }
    }

    fn dict(&mut self, depth: usize) -> Result<Lit, String> {
        self.i += 1;
        let mut items = Vec::new();
        loop {
            if self.peek() == Some(b'}') {
                self.i += 1;
                return Ok(Lit::Dict(items));
            }
            let k = self.value(depth + 1)?;
            if self.peek() != Some(b':') {
                return Err(format!("expected `:` at header byte {}", self.i));
            }
            self.i += 1;
            let v = self.value(depth + 1)?;
            items.push((k, v));
            match self.peek() {
                Some(b',') => self.i += 1,
                Some(b'}') => {}
                _ => return Err(format!("expected `,` or `}}` at header byte {}", self.i)),
            }
        }
    }
}

/// The parsed header dict.
pub(super) struct Header {
    pub dtype: DType,
    pub fortran_order: bool,
    pub shape: Vec<usize>,
}

/// Interpret the header dict. Errors are (problem, is_unsupported).
pub(super) fn interpret(text: &str) -> Result<Header, (String, bool)> {
    let lit = parse_literal(text).map_err(|e| (e, false))?;
    let Lit::Dict(items) = lit else { return Err(("the header is not a dict".into(), false)) };
    let get = |key: &str| items.iter().find(|(k, _)| *k == Lit::Str(key.into())).map(|(_, v)| v);
    let descr = get("descr").ok_or(("the header has no 'descr'".to_string(), false))?;
    let fortran_order = match get("fortran_order") {
        Some(Lit::Bool(b)) => *b,
        _ => return Err(("the header has no boolean 'fortran_order'".into(), false)),
    };
    let shape = match get("shape") {
        Some(Lit::Seq(dims)) => dims
            .iter()
            .map(|d| match d {
                Lit::Int(n) if *n >= 0 => {
                    usize::try_from(*n).map_err(|_| ("a dimension is too large".into(), false))
                }
                _ => Err((format!("bad dimension {d:?} in 'shape'"), false)),
            })
            .collect::<Result<Vec<usize>, _>>()?,
        _ => return Err(("the header has no 'shape' tuple".into(), false)),
    };
    let dtype = parse_descr(descr)?;
    Ok(Header { dtype, fortran_order, shape })
}

/// A dtype from its `descr`: a type string, or a list of `(name, type[, shape])` fields.
fn parse_descr(descr: &Lit) -> Result<DType, (String, bool)> {
    match descr {
        Lit::Str(s) => Ok(DType::Plain(parse_scalar(s)?)),
        Lit::Seq(items) => {
            let mut fields = Vec::with_capacity(items.len());
            let mut offset = 0usize;
            for item in items {
                let Lit::Seq(parts) = item else {
                    return Err((format!("bad structured field {item:?}"), false));
                };
                let name = match parts.first() {
                    Some(Lit::Str(n)) => n.clone(),
                    // (title, name) pairs: the second is the field name.
                    Some(Lit::Seq(tn)) => match tn.get(1) {
                        Some(Lit::Str(n)) => n.clone(),
                        _ => return Err((format!("bad field name {tn:?}"), false)),
                    },
                    _ => return Err((format!("bad structured field {item:?}"), false)),
                };
                let scalar = match parts.get(1) {
                    Some(Lit::Str(t)) => parse_scalar(t)?,
                    Some(Lit::Seq(_)) => {
                        return Err((format!("nested structured field `{name}`"), true));
                    }
                    _ => return Err((format!("field `{name}` has no type"), false)),
                };
                let shape = match parts.get(2) {
                    None => Vec::new(),
                    Some(Lit::Int(n)) if *n >= 0 => vec![*n as usize],
                    Some(Lit::Seq(dims)) => dims
                        .iter()
                        .map(|d| match d {
                            Lit::Int(n) if *n >= 0 && *n <= u32::MAX as i128 => Ok(*n as usize),
                            _ => Err((format!("bad shape of field `{name}`"), false)),
                        })
                        .collect::<Result<_, _>>()?,
                    Some(other) => return Err((format!("bad shape {other:?} of field `{name}`"), false)),
                };
                if parts.len() > 3 {
                    return Err((format!("bad structured field {item:?}"), false));
                }
                let count = shape.iter().try_fold(1usize, |a, &d| a.checked_mul(d));
                let size = count.and_then(|c| c.checked_mul(scalar.size()));
                let Some(size) = size.filter(|&s| s <= 1 << 30) else {
                    return Err((format!("field `{name}` is too large"), false));
                };
                fields.push(Field { name, scalar, shape, offset });
                offset += size;
            }
            for (i, f) in fields.iter().enumerate() {
                if !f.name.is_empty() && fields[..i].iter().any(|g| g.name == f.name) {
                    return Err((format!("field `{}` appears twice", f.name), false));
                }
            }
            Ok(DType::Struct { fields, itemsize: offset })
        }
        Lit::Dict(_) => Err(("dtype given as a dict (names/formats/offsets)".into(), true)),
        other => Err((format!("bad 'descr' {other:?}"), false)),
    }
}

/// A numpy type string such as `<f4`, `|S64`, `>u2`.
pub(super) fn parse_scalar(s: &str) -> Result<Scalar, (String, bool)> {
    let (order, rest) = match s.as_bytes().first() {
        Some(b'<' | b'=') => (ByteOrder::Little, &s[1..]),
        Some(b'|') => (ByteOrder::Little, &s[1..]),
        Some(b'>') => (ByteOrder::Big, &s[1..]),
        _ => (ByteOrder::Little, s),
    };
    let bad = || (format!("unknown numpy type `{s}`"), false);
    // The type code is one character, which in a damaged header need not be ASCII (found by fuzzing).
    let (code, n) = rest.split_at(rest.chars().next().map_or(0, char::len_utf8));
    let n: usize = if n.is_empty() { 0 } else { n.parse().map_err(|_| bad())? };
    let kind = match (code, n) {
        ("b", 1) | ("?", 1) => ScalarKind::Bool,
        ("i", 1) => ScalarKind::I8,
        ("i", 2) => ScalarKind::I16,
        ("i", 4) => ScalarKind::I32,
        ("i", 8) => ScalarKind::I64,
        ("u", 1) => ScalarKind::U8,
        ("u", 2) => ScalarKind::U16,
        ("u", 4) => ScalarKind::U32,
        ("u", 8) => ScalarKind::U64,
        ("f", 2) => ScalarKind::F16,
        ("f", 4) => ScalarKind::F32,
        ("f", 8) => ScalarKind::F64,
        ("S" | "a", n) if n <= 1 << 24 => ScalarKind::Bytes(n),
        ("V", n) if n <= 1 << 24 => ScalarKind::Void(n),
        ("U", n) if n <= 1 << 22 => ScalarKind::Unicode(n),
        ("c" | "O" | "M" | "m", _) => return Err((format!("numpy type `{s}`"), true)),
        _ => return Err(bad()),
    };
    Ok(Scalar { kind, order })
}

/// Python's `repr` of a string, as numpy writes field names.
pub(super) fn py_repr(s: &str) -> String {
    let q = if s.contains('\'') && !s.contains('"') { '"' } else { '\'' };
    let mut out = String::with_capacity(s.len() + 2);
    out.push(q);
    for c in s.chars() {
        match c {
            '\\' => out.push_str("\\\\"),
            '\n' => out.push_str("\\n"),
            '\t' => out.push_str("\\t"),
            '\r' => out.push_str("\\r"),
            c if c == q => {
                out.push('\\');
                out.push(c);
            }
            c if (c as u32) < 0x20 || c as u32 == 0x7f => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out.push(q);
    out
}

/// A shape as a Python tuple: `()`, `(5,)`, `(2, 3)`.
pub(super) fn py_tuple(dims: &[usize]) -> String {
    match dims {
        [] => "()".into(),
        [d] => format!("({d},)"),
        _ => format!("({})", dims.iter().map(usize::to_string).collect::<Vec<_>>().join(", ")),
    }
}

/// The `descr` value numpy writes for `dtype`.
pub(super) fn descr_repr(dtype: &DType) -> String {
    match dtype {
        DType::Plain(s) => py_repr(&s.descr()),
        DType::Struct { fields, .. } => {
            let items: Vec<String> = fields
                .iter()
                .map(|f| {
                    if f.shape.is_empty() {
                        format!("({}, {})", py_repr(&f.name), py_repr(&f.scalar.descr()))
                    } else {
                        format!(
                            "({}, {}, {})",
                            py_repr(&f.name),
                            py_repr(&f.scalar.descr()),
                            py_tuple(&f.shape)
                        )
                    }
                })
                .collect();
            format!("[{}]", items.join(", "))
        }
    }
}

/// The full header block (magic, version, length, dict, padding, newline) for an array, padded so the
/// data starts at a multiple of 64 bytes; version 2.0 when the dict exceeds 65535 bytes.
pub(super) fn header_bytes(dtype: &DType, shape: &[usize]) -> Vec<u8> {
    let dict =
        format!("{{'descr': {}, 'fortran_order': False, 'shape': {}, }}", descr_repr(dtype), py_tuple(shape));
    let build = |prefix: usize| {
        let unpadded = prefix + dict.len() + 1;
        let pad = (64 - unpadded % 64) % 64;
        let mut h = dict.clone();
        h.push_str(&" ".repeat(pad));
        h.push('\n');
        h
    };
    let h1 = build(10);
    let mut out = Vec::with_capacity(h1.len() + 12);
    out.extend_from_slice(b"\x93NUMPY");
    if h1.len() <= u16::MAX as usize {
        out.extend_from_slice(&[1, 0]);
        out.extend_from_slice(&(h1.len() as u16).to_le_bytes());
        out.extend_from_slice(h1.as_bytes());
    } else {
        let h2 = build(12);
        out.extend_from_slice(&[2, 0]);
        out.extend_from_slice(&(h2.len() as u32).to_le_bytes());
        out.extend_from_slice(h2.as_bytes());
    }
    out
}
