//! The allowed globals and what `REDUCE` and `BUILD` mean for them, interpreted without calling
//! anything (see the module docs of [`super`] for the numpy layout).

use std::borrow::Cow;

use super::{Item, Machine, Obj};
use crate::error::{Error, Result};
use crate::pickle::numpy;

/// The callables and types a numpy pickle may name.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Global {
    /// `numpy.core.multiarray._reconstruct` (numpy 2: `numpy._core.multiarray`).
    Reconstruct,
    /// `numpy.core.multiarray.scalar`: a numpy scalar.
    Scalar,
    /// `numpy.core.numeric._frombuffer`: protocol-5 arrays.
    FromBuffer,
    /// `numpy.ndarray`, the class argument of `_reconstruct`.
    Ndarray,
    /// `numpy.dtype`.
    DtypeType,
    /// `_codecs.encode(str, 'latin1')`: how protocols 0–2 spell non-empty `bytes`.
    CodecsEncode,
    /// `builtins.bytes()`: how protocols 0–2 spell empty `bytes`.
    Bytes,
}

impl Global {
    pub(super) fn lookup(module: &str, name: &str) -> Option<Global> {
        Some(match (module, name) {
            ("numpy.core.multiarray" | "numpy._core.multiarray", "_reconstruct") => Global::Reconstruct,
            ("numpy.core.multiarray" | "numpy._core.multiarray", "scalar") => Global::Scalar,
            ("numpy.core.numeric" | "numpy._core.numeric", "_frombuffer") => Global::FromBuffer,
            ("numpy", "ndarray") => Global::Ndarray,
            ("numpy", "dtype") => Global::DtypeType,
            ("_codecs", "encode") => Global::CodecsEncode,
            ("builtins" | "__builtin__", "bytes") => Global::Bytes,
            _ => return None,
        })
    }

    pub(super) fn name(self) -> &'static str {
        match self {
            Global::Reconstruct => "numpy.core.multiarray._reconstruct",
            Global::Scalar => "numpy.core.multiarray.scalar",
            Global::FromBuffer => "numpy.core.numeric._frombuffer",
            Global::Ndarray => "numpy.ndarray",
            Global::DtypeType => "numpy.dtype",
            Global::CodecsEncode => "_codecs.encode",
            Global::Bytes => "builtins.bytes",
        }
    }
}

impl<'a> Machine<'a> {
    pub(super) fn global(&self, module: &str, name: &str) -> Result<Global> {
        Global::lookup(module, name).ok_or_else(|| self.unsafe_global(format!("{module}.{name}")))
    }

    /// Interpret `callable(*args)` for the allowed globals.
    pub(super) fn reduce(&self, callable: Item, args: Item) -> Result<Obj<'a>> {
        let global = self
            .global_of(callable)
            .ok_or_else(|| self.invalid(format!("REDUCE on {}, not a callable", self.describe(callable))))?;
        let args = self.tuple_of(args).ok_or_else(|| {
            self.invalid(format!("REDUCE arguments are {}, not a tuple", self.describe(args)))
        })?;
        let bad_args = || self.invalid(format!("unexpected arguments to {}", global.name()));
        match global {
            Global::Reconstruct => {
                // _reconstruct(ndarray, (0,), b'b'): an empty array that BUILD fills in.
                match args.first() {
                    Some(&cls) if self.global_of(cls) == Some(Global::Ndarray) => Ok(Obj::Array(None)),
                    Some(&cls) => Err(self.unsupported(format!(
                        "an ndarray subclass ({}) in _reconstruct",
                        self.describe(cls)
                    ))),
                    None => Err(bad_args()),
                }
            }
            Global::DtypeType => {
                let descr = args.first().and_then(|&d| self.str_of(d)).ok_or_else(bad_args)?;
                numpy::parse_descr(descr).map(Obj::Dtype).map_err(|what| {
                    let hint = "Convert the array with numpy first, e.g. arr.astype(np.float32) or arr.astype(np.int64)";
                    Error::unsupported(self.origin, self.record(), what, hint)
                })
            }
            Global::Scalar => {
                let [dtype, raw] = args[..] else { return Err(bad_args()) };
                let dtype = self.dtype_of(dtype).ok_or_else(bad_args)?;
                let raw = self.bytes_of(raw).ok_or_else(bad_args)?;
                let array = numpy::decode(dtype, &[], false, raw).map_err(|p| self.invalid(p))?;
                Ok(Obj::Array(Some(array)))
            }
            Global::FromBuffer => {
                let [raw, dtype, shape, order] = args[..] else { return Err(bad_args()) };
                let raw = self.bytes_of(raw).ok_or_else(bad_args)?;
                let dtype = self.dtype_of(dtype).ok_or_else(bad_args)?;
                let shape = self.shape_of(shape).ok_or_else(bad_args)?;
                let fortran = match self.str_of(order) {
                    Some("C") => false,
                    Some("F") => true,
                    _ => return Err(bad_args()),
                };
                let array = numpy::decode(dtype, &shape, fortran, raw).map_err(|p| self.invalid(p))?;
                Ok(Obj::Array(Some(array)))
            }
            Global::CodecsEncode => {
                let [text, encoding] = args[..] else { return Err(bad_args()) };
                let (Some(text), Some(encoding)) = (self.str_of(text), self.str_of(encoding)) else {
                    return Err(bad_args());
                };
                if !matches!(encoding, "latin1" | "latin-1" | "iso-8859-1") {
                    return Err(self.unsupported(format!("_codecs.encode with encoding `{encoding}`")));
                }
                let bytes: Option<Vec<u8>> = text.chars().map(|c| u8::try_from(c).ok()).collect();
                let bytes =
                    bytes.ok_or_else(|| self.invalid("latin-1 text holds a character above U+00FF"))?;
                Ok(Obj::Bytes(Cow::Owned(bytes)))
            }
            Global::Bytes if args.is_empty() => Ok(Obj::Bytes(Cow::Borrowed(&[]))),
            Global::Bytes => Err(bad_args()),
            Global::Ndarray => Err(self.unsupported("calling numpy.ndarray directly")),
        }
    }

    /// Apply a `BUILD` state to an array awaiting it, or a byte order to a dtype.
    pub(super) fn build(&mut self, target: Item, state: Item) -> Result<()> {
        let Item::Obj(index) = target else {
            return Err(self.unsupported(format!("BUILD on {}", self.describe(target))));
        };
        let fields = self.tuple_of(state);
        match self.objs.get(index) {
            Some(Obj::Array(_)) => {
                // (version, shape, dtype, is_fortran, raw), or the legacy 4-tuple without the version
                // that ndarray.__setstate__ still accepts.
                let fields = fields.unwrap_or_default();
                let (shape, dtype, fortran, raw) = match fields[..] {
                    [_, shape, dtype, fortran, raw] | [shape, dtype, fortran, raw] => {
                        (shape, dtype, fortran, raw)
                    }
                    _ => return Err(self.invalid(format!("array state is {}", self.describe(state)))),
                };
                let bad =
                    |what: &str, item: Item| self.invalid(format!("array {what} is {}", self.describe(item)));
                let shape = self.shape_of(shape).ok_or_else(|| bad("shape", shape))?;
                let dtype = self.dtype_of(dtype).ok_or_else(|| bad("dtype", dtype))?;
                let fortran = Self::bool_of(fortran).ok_or_else(|| bad("order flag", fortran))?;
                let raw = match self.obj(raw) {
                    Some(Obj::Bytes(b)) => b,
                    Some(Obj::List(_)) => return Err(self.unsupported("arrays of Python objects")),
                    _ => return Err(bad("data", raw)),
                };
                let array = numpy::decode(dtype, &shape, fortran, raw).map_err(|p| self.invalid(p))?;
                self.objs[index] = Obj::Array(Some(array));
                Ok(())
            }
            Some(Obj::Dtype(dtype)) => {
                // (version, byteorder, subarray, names, fields, elsize, alignment, flags[, metadata])
                let mut dtype = *dtype;
                let fields = fields.unwrap_or_default();
                let order = fields.get(1).and_then(|&o| self.str_of(o));
                let Some(order) = order else {
                    return Err(self.invalid(format!("dtype state is {}", self.describe(state))));
                };
                if fields.iter().skip(2).take(3).any(|f| !matches!(f, Item::None)) {
                    return Err(self.unsupported("structured or sub-array numpy dtypes"));
                }
                dtype.set_byte_order(order).map_err(|p| self.invalid(p))?;
                self.objs[index] = Obj::Dtype(dtype);
                Ok(())
            }
            _ => Err(self.unsupported(format!("BUILD on {}", self.describe(target)))),
        }
    }
}
