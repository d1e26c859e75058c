//! Writing PyTorch checkpoints that `torch.load` reads, with or without `weights_only`.
//!
//! `torch.save`'s format (torch ≥ 1.6) is an uncompressed zip archive:
//! - `archive/data.pkl`: the object, pickled with protocol 2; every tensor is
//!   `torch._utils._rebuild_tensor_v2(storage, offset, size, stride, requires_grad, OrderedDict())` whose
//!   storage is a persistent id `('storage', torch.FloatStorage, key, 'cpu', numel)`;
//! - `archive/data/<key>`: each storage's raw little-endian elements, starting on a 64-byte boundary (the
//!   local header's extra field pads to it, as PyTorch does, so `torch.load(mmap=True)` works too);
//! - `archive/byteorder` (`little`) and `archive/version` (`3`).
//!
//! Only opcodes of PyTorch's weights-only unpickler are used (no memo, no frames, no short strings), so
//! `torch.load(path)` with the default `weights_only=True` of torch ≥ 2.6 accepts the file.

use std::io::{self, Write};
use std::path::Path;

use super::opcode as op;
use super::write::put_int;
use crate::atomic::AtomicFile;
use crate::error::Result;

/// A Python object to pickle into a checkpoint.
#[derive(Clone, Debug, PartialEq)]
pub enum TorchValue {
    /// `None`.
    None,
    /// `True` / `False`.
    Bool(bool),
    /// An `int`.
    Int(i64),
    /// A `float`.
    Float(f64),
    /// A `str`.
    Str(String),
    /// A `tuple`.
    Tuple(Vec<TorchValue>),
    /// A `list`.
    List(Vec<TorchValue>),
    /// A `dict` (keys in insertion order).
    Dict(Vec<(TorchValue, TorchValue)>),
    /// A `collections.OrderedDict` with string keys (what `state_dict()` returns).
    OrderedDict(Vec<(String, TorchValue)>),
    /// A contiguous float32 CPU tensor; an empty shape is a scalar (one element).
    Tensor { shape: Vec<usize>, data: Vec<f32> },
}

const ALIGN: usize = 64;
const ARCHIVE: &str = "archive";

/// Write `value` as a `torch.save` checkpoint at `path`, atomically.
pub fn write_torch(path: impl AsRef<Path>, value: &TorchValue) -> Result<()> {
    let path = path.as_ref();
    let mut pickle = Vec::new();
    let mut storages: Vec<&[f32]> = Vec::new();
    put_value(&mut pickle, value, &mut storages).map_err(|e| {
        crate::error::Error::invalid(path, None, e.to_string(), "This is a bug in drgnfly; please report it")
    })?;
    pickle.push(op::STOP);

    let mut file = AtomicFile::create(path)?;
    let written = (|| {
        let mut zip = StoredZip::new(file.writer());
        zip.entry(&format!("{ARCHIVE}/data.pkl"), &pickle)?;
        zip.entry(&format!("{ARCHIVE}/byteorder"), b"little")?;
        for (key, data) in storages.iter().enumerate() {
            let bytes: Vec<u8> = data.iter().flat_map(|x| x.to_le_bytes()).collect();
            zip.entry(&format!("{ARCHIVE}/data/{key}"), &bytes)?;
        }
        zip.entry(&format!("{ARCHIVE}/version"), b"3\n")?;
        zip.finish()
    })();
    written.map_err(|e| file.io_err(e))?;
    file.commit()
}

fn put_value<'a>(w: &mut Vec<u8>, v: &'a TorchValue, storages: &mut Vec<&'a [f32]>) -> io::Result<()> {
    match v {
        TorchValue::None => w.push(op::NONE),
        TorchValue::Bool(b) => w.push(if *b { op::NEWTRUE } else { op::NEWFALSE }),
        TorchValue::Int(i) => put_int(w, *i)?,
        TorchValue::Float(x) => {
            w.push(op::BINFLOAT);
            w.extend_from_slice(&x.to_be_bytes());
        }
        TorchValue::Str(s) => put_unicode(w, s)?,
        TorchValue::Tuple(items) => {
            w.push(op::MARK);
            for item in items {
                put_value(w, item, storages)?;
            }
            w.push(op::TUPLE);
        }
        TorchValue::List(items) => {
            w.extend_from_slice(&[op::EMPTY_LIST, op::MARK]);
            for item in items {
                put_value(w, item, storages)?;
            }
            w.push(op::APPENDS);
        }
        TorchValue::Dict(items) => {
            w.extend_from_slice(&[op::EMPTY_DICT, op::MARK]);
            for (k, item) in items {
                put_value(w, k, storages)?;
                put_value(w, item, storages)?;
            }
            w.push(op::SETITEMS);
        }
        TorchValue::OrderedDict(items) => {
            put_ordered_dict_empty(w);
            w.push(op::MARK);
            for (k, item) in items {
                put_unicode(w, k)?;
                put_value(w, item, storages)?;
            }
            w.push(op::SETITEMS);
        }
        TorchValue::Tensor { shape, data } => {
            let numel = shape.iter().product::<usize>();
            if numel != data.len() {
                return Err(io::Error::other(format!(
                    "tensor of shape {shape:?} given {} elements",
                    data.len()
                )));
            }
            put_global(w, "torch._utils", "_rebuild_tensor_v2");
            w.push(op::MARK);
            // The storage, as a persistent id.
            w.push(op::MARK);
            put_unicode(w, "storage")?;
            put_global(w, "torch", "FloatStorage");
            put_unicode(w, &storages.len().to_string())?;
            put_unicode(w, "cpu")?;
            put_int(w, to_i64(numel)?)?;
            w.extend_from_slice(&[op::TUPLE, op::BINPERSID]);
            storages.push(data);
            put_int(w, 0)?; // storage offset
            put_usize_tuple(w, shape)?;
            // Contiguous (C-order) strides, in elements.
            let mut strides = vec![1usize; shape.len()];
            for d in (0..shape.len().saturating_sub(1)).rev() {
                strides[d] = strides[d + 1] * shape[d + 1];
            }
            put_usize_tuple(w, &strides)?;
            w.push(op::NEWFALSE); // requires_grad
            put_ordered_dict_empty(w); // backward hooks
            w.extend_from_slice(&[op::TUPLE, op::REDUCE]);
        }
    }
    Ok(())
}

fn to_i64(n: usize) -> io::Result<i64> {
    i64::try_from(n).map_err(|_| io::Error::other("size beyond 2^63"))
}

fn put_usize_tuple(w: &mut Vec<u8>, values: &[usize]) -> io::Result<()> {
    w.push(op::MARK);
    for &n in values {
        put_int(w, to_i64(n)?)?;
    }
    w.push(op::TUPLE);
    Ok(())
}

fn put_ordered_dict_empty(w: &mut Vec<u8>) {
    put_global(w, "collections", "OrderedDict");
    w.extend_from_slice(&[op::EMPTY_TUPLE, op::REDUCE]);
}

/// `GLOBAL`, the text form every protocol accepts (`STACK_GLOBAL` is not in the weights-only set).
fn put_global(w: &mut Vec<u8>, module: &str, name: &str) {
    w.push(op::GLOBAL);
    w.extend_from_slice(module.as_bytes());
    w.push(b'\n');
    w.extend_from_slice(name.as_bytes());
    w.push(b'\n');
}

fn put_unicode(w: &mut Vec<u8>, s: &str) -> io::Result<()> {
    let n = u32::try_from(s.len()).map_err(|_| io::Error::other("string longer than 4 GiB"))?;
    w.push(op::BINUNICODE);
    w.extend_from_slice(&n.to_le_bytes());
    w.extend_from_slice(s.as_bytes());
    Ok(())
}

/// A zip archive of stored (uncompressed) entries, each entry's data 64-byte aligned. No zip64: an entry
/// or the archive beyond 4 GiB is an error (a model state dict is far smaller).
struct StoredZip<W: Write> {
    out: W,
    offset: u64,
    central: Vec<u8>,
    entries: u16,
}

impl<W: Write> StoredZip<W> {
    fn new(out: W) -> Self {
        Self { out, offset: 0, central: Vec::new(), entries: 0 }
    }

    fn put(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.out.write_all(bytes)?;
        self.offset += bytes.len() as u64;
        Ok(())
    }

    /// One stored entry.
    fn entry(&mut self, name: &str, data: &[u8]) -> io::Result<()> {
        let too_big = || io::Error::other("checkpoint larger than 4 GiB (zip64 is not written)");
        let mut crc = flate2::Crc::new();
        crc.update(data);
        let len = u32::try_from(data.len()).map_err(|_| too_big())?;
        let header_at = u32::try_from(self.offset).map_err(|_| too_big())?;
        let name_len = u16::try_from(name.len()).map_err(|_| io::Error::other("entry name too long"))?;
        // Extra field `FB` + length + padding, so the data starts on a 64-byte boundary.
        let unpadded = self.offset as usize + 30 + name.len() + 4;
        let pad = (ALIGN - unpadded % ALIGN) % ALIGN;
        let mut h = Vec::with_capacity(30 + name.len() + 4 + pad);
        h.extend_from_slice(&0x0403_4b50u32.to_le_bytes());
        common_fields(&mut h, crc.sum(), len, name_len);
        h.extend_from_slice(&((4 + pad) as u16).to_le_bytes());
        h.extend_from_slice(name.as_bytes());
        h.extend_from_slice(b"FB");
        h.extend_from_slice(&(pad as u16).to_le_bytes());
        h.resize(h.len() + pad, b'Z');
        self.put(&h)?;
        self.put(data)?;

        let c = &mut self.central;
        c.extend_from_slice(&0x0201_4b50u32.to_le_bytes());
        c.extend_from_slice(&20u16.to_le_bytes()); // version made by
        common_fields(c, crc.sum(), len, name_len);
        c.extend_from_slice(&0u16.to_le_bytes()); // extra length
        c.extend_from_slice(&0u16.to_le_bytes()); // comment length
        c.extend_from_slice(&0u16.to_le_bytes()); // disk number
        c.extend_from_slice(&0u16.to_le_bytes()); // internal attributes
        c.extend_from_slice(&0u32.to_le_bytes()); // external attributes
        c.extend_from_slice(&header_at.to_le_bytes());
        c.extend_from_slice(name.as_bytes());
        self.entries = self.entries.checked_add(1).ok_or_else(|| io::Error::other("too many entries"))?;
        Ok(())
    }

    fn finish(mut self) -> io::Result<()> {
        let too_big = || io::Error::other("checkpoint larger than 4 GiB (zip64 is not written)");
        let central_at = u32::try_from(self.offset).map_err(|_| too_big())?;
        let central_len = u32::try_from(self.central.len()).map_err(|_| too_big())?;
        let central = std::mem::take(&mut self.central);
        self.put(&central)?;
        let mut end = Vec::with_capacity(22);
        end.extend_from_slice(&0x0605_4b50u32.to_le_bytes());
        end.extend_from_slice(&[0, 0, 0, 0]); // this disk, disk with the directory
        end.extend_from_slice(&self.entries.to_le_bytes());
        end.extend_from_slice(&self.entries.to_le_bytes());
        end.extend_from_slice(&central_len.to_le_bytes());
        end.extend_from_slice(&central_at.to_le_bytes());
        end.extend_from_slice(&0u16.to_le_bytes()); // comment length
        self.put(&end)?;
        self.out.flush()
    }
}

/// The fields local and central headers share, from "version needed" to the name length.
fn common_fields(h: &mut Vec<u8>, crc: u32, len: u32, name_len: u16) {
    h.extend_from_slice(&20u16.to_le_bytes()); // version needed: 2.0
    h.extend_from_slice(&0u16.to_le_bytes()); // flags
    h.extend_from_slice(&0u16.to_le_bytes()); // method: stored
    h.extend_from_slice(&0u16.to_le_bytes()); // time
    h.extend_from_slice(&0x21u16.to_le_bytes()); // date: 1980-01-01
    h.extend_from_slice(&crc.to_le_bytes());
    h.extend_from_slice(&len.to_le_bytes()); // compressed size
    h.extend_from_slice(&len.to_le_bytes()); // uncompressed size
    h.extend_from_slice(&name_len.to_le_bytes());
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The archive is a valid zip (checked by reading it back with the zip structure's own offsets) and
    /// every stored entry's data is 64-byte aligned.
    #[test]
    fn entries_are_aligned_and_listed() -> Result<()> {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("w.pkl");
        let value = TorchValue::Dict(vec![
            (TorchValue::Str("epoch".into()), TorchValue::Int(3)),
            (
                TorchValue::Str("model_state_dict".into()),
                TorchValue::OrderedDict(vec![
                    ("a.weight".into(), TorchValue::Tensor { shape: vec![2, 3], data: vec![1.0; 6] }),
                    ("b".into(), TorchValue::Tensor { shape: vec![], data: vec![7.0] }),
                ]),
            ),
        ]);
        write_torch(&path, &value)?;
        let bytes = std::fs::read(&path).expect("written file");
        let u16_at = |i: usize| u16::from_le_bytes([bytes[i], bytes[i + 1]]) as usize;
        let u32_at =
            |i: usize| u32::from_le_bytes([bytes[i], bytes[i + 1], bytes[i + 2], bytes[i + 3]]) as usize;
        let end = bytes.len() - 22;
        assert_eq!(u32_at(end), 0x0605_4b50);
        let n = u16_at(end + 10);
        assert_eq!(n, 5, "data.pkl, byteorder, two storages, version");
        let mut at = u32_at(end + 16);
        let mut names = Vec::new();
        for _ in 0..n {
            assert_eq!(u32_at(at), 0x0201_4b50);
            let name_len = u16_at(at + 28);
            let local = u32_at(at + 42);
            let name = String::from_utf8_lossy(&bytes[at + 46..at + 46 + name_len]).into_owned();
            let data_at = local + 30 + u16_at(local + 26) + u16_at(local + 28);
            assert_eq!(data_at % ALIGN, 0, "{name} starts at {data_at}");
            let len = u32_at(at + 24);
            let mut crc = flate2::Crc::new();
            crc.update(&bytes[data_at..data_at + len]);
            assert_eq!(crc.sum() as usize, u32_at(at + 16), "{name}");
            if name == "archive/data/1" {
                assert_eq!(&bytes[data_at..data_at + 4], &7.0f32.to_le_bytes());
            }
            names.push(name);
            at += 46 + name_len;
        }
        assert_eq!(names[0], "archive/data.pkl");
        assert_eq!(names[4], "archive/version");
        Ok(())
    }

    #[test]
    fn tensor_with_wrong_element_count_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let bad = TorchValue::Tensor { shape: vec![2, 2], data: vec![0.0; 3] };
        assert!(write_torch(dir.path().join("w.pkl"), &bad).is_err());
    }
}
