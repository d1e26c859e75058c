//! [`MrcStack`]: random and sequential access to the images (sections) of an MRC file.
//!
//! Uncompressed files are memory-mapped and only the requested images are touched, so opening a 200 GB
//! stack costs one header read. The whole layout is checked at open: positive dimensions, a supported
//! mode, no overflow in nx·ny·nz·bytes, and a file at least `1024 + next + data` bytes long. A header that
//! lies about its size therefore fails with [`Error::Truncated`] before anything is allocated.
//!
//! Images are returned as stored: row-major, rows (y) then columns (x), x fastest. The map axis order
//! (mapc/mapr/maps) is applied only by [`super::read_volume`].
//!
//! The mapping follows the usual memory-map contract: do not truncate or rewrite a stack while drgnfly
//! reads it.

use std::fs::File;
use std::io::Read;
use std::path::{Path, PathBuf};

use memmap2::Mmap;

use crate::error::{Error, Result};

use super::compressed::{self, Compression};
use super::header::{self, MrcHeader, HEADER_BYTES};
use super::mode::{self, MrcMode};

const TRUNCATED_HINT: &str = "the file may be incomplete; re-copy or re-export it";

/// Where the data of a validated header lie, in bytes and values.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Layout {
    pub(crate) mode: MrcMode,
    /// nx·ny values per image (section).
    pub(crate) image_values: usize,
    /// Bytes per image.
    pub(crate) image_bytes: u64,
    /// nz.
    pub(crate) count: usize,
    /// First data byte: 1024 + next.
    pub(crate) data_offset: u64,
    /// Minimum file length: data_offset + count·image_bytes.
    pub(crate) needed: u64,
}

impl Layout {
    /// Check the header's dimensions, mode and sizes (not the file length).
    pub(crate) fn new(path: &Path, h: &MrcHeader) -> Result<Self> {
        check_dims(path, h)?;
        let mode = MrcMode::from_code(h.mode).ok_or_else(|| {
            Error::unsupported(
                path,
                Some("header field mode".to_string()),
                format!("MRC {}; drgnfly reads modes 0, 1, 2, 6 and 12", mode::describe_mode(h.mode)),
                "convert the file to float32 (mode 2), e.g. with IMOD `newstack -mode 2 in out` or mrcfile",
            )
        })?;
        if h.nsymbt < 0 {
            return Err(Error::invalid(
                path,
                Some("header field nsymbt (extended header bytes)".to_string()),
                format!("nsymbt = {} is negative", h.nsymbt),
                "the header is damaged; re-export the file",
            ));
        }
        // Positive i32s, so these conversions are lossless; only the products can overflow.
        let [nx, ny, nz] = [h.nx, h.ny, h.nz].map(|n| n as u64);
        let overflow = || {
            Error::invalid(
                path,
                Some("header fields nx, ny, nz".to_string()),
                format!("the data size {nx}×{ny}×{nz} values overflows"),
                "the header is damaged or this is not an MRC file",
            )
        };
        let image_values = nx.checked_mul(ny).ok_or_else(overflow)?;
        let image_bytes = image_values.checked_mul(mode.bytes_per_value() as u64).ok_or_else(overflow)?;
        let data_offset = HEADER_BYTES as u64 + h.nsymbt as u64;
        let needed =
            image_bytes.checked_mul(nz).and_then(|d| d.checked_add(data_offset)).ok_or_else(overflow)?;
        // A file this big could not be mapped or held on this platform (only matters below 64 bits).
        let image_values = usize::try_from(image_values).map_err(|_| overflow())?;
        usize::try_from(needed).map_err(|_| overflow())?;
        Ok(Layout { mode, image_values, image_bytes, count: nz as usize, data_offset, needed })
    }

    /// Fail with [`Error::Truncated`] when only `have` bytes exist, and with [`Error::Invalid`] when there
    /// are more than the header accounts for (a stack relabelled with a smaller mode, an nz smaller than the
    /// images present): reading it would silently drop or misread data.
    pub(crate) fn check_len(&self, path: &Path, h: &MrcHeader, have: u64) -> Result<()> {
        if have > self.needed {
            return Err(Error::invalid(
                path,
                None,
                format!(
                    "{have} bytes, but the header describes {} ({} images of {}×{} {} after {} header bytes): \
                     {} bytes unaccounted for",
                    self.needed,
                    self.count,
                    h.ny,
                    h.nx,
                    self.mode.dtype_name(),
                    self.data_offset,
                    have - self.needed
                ),
                "the header's nz, mode or extended-header size (nsymbt) does not match the data; fix the header \
                 or re-export the file",
            ));
        }
        if have == self.needed {
            return Ok(());
        }
        Err(Error::Truncated {
            path: path.to_path_buf(),
            what: format!(
                "data of {} images of {}×{} {} starting at byte {}",
                self.count,
                h.ny,
                h.nx,
                self.mode.dtype_name(),
                self.data_offset
            ),
            expected: self.needed,
            got: have,
            hint: TRUNCATED_HINT.to_string(),
        })
    }
}

/// Positive nx, ny and nz, or an [`Error::Invalid`] naming the first bad field.
pub(crate) fn check_dims(path: &Path, h: &MrcHeader) -> Result<()> {
    for (name, v) in [("nx", h.nx), ("ny", h.ny), ("nz", h.nz)] {
        if v <= 0 {
            return Err(Error::invalid(
                path,
                Some(format!("header field {name}")),
                format!("{name} = {v}, but dimensions must be positive"),
                "the header is damaged or this is not an MRC file",
            ));
        }
    }
    Ok(())
}

/// The bytes of the file: mapped, or decompressed into memory.
enum Backing {
    Mapped(Mmap),
    Decompressed(Vec<u8>),
}

impl Backing {
    fn bytes(&self) -> &[u8] {
        match self {
            Backing::Mapped(m) => m,
            Backing::Decompressed(v) => v,
        }
    }
}

/// An open MRC file viewed as a stack of `nz` images of `ny × nx` values.
///
/// `Send + Sync`: reads take `&self`, so one stack can serve a prefetch thread and rayon workers at once.
pub struct MrcStack {
    path: PathBuf,
    header: MrcHeader,
    layout: Layout,
    backing: Backing,
}

impl std::fmt::Debug for MrcStack {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MrcStack").field("path", &self.path).field("header", &self.header).finish()
    }
}

/// A stack checked as [`MrcStack::open`] checks it, but not mapped: what a dataset of many stacks keeps for
/// each until it reads from it.
#[derive(Clone, Debug)]
pub struct StackInfo {
    /// The file.
    pub path: PathBuf,
    /// Its header.
    pub header: MrcHeader,
    /// Number of images.
    pub len: usize,
    /// `(ny, nx)` of each image.
    pub image_shape: (usize, usize),
}

impl MrcStack {
    /// Validate `path` like [`MrcStack::open`] without mapping it: header, dimensions, mode, axis order and
    /// file length. A compressed stack is decompressed to be checked, then dropped.
    pub fn inspect(path: impl AsRef<Path>) -> Result<StackInfo> {
        let path = path.as_ref();
        let (mut file, compression) = compressed::open_detect(path)?;
        let header = if compression.is_some() {
            MrcStack::open(path)?.header
        } else {
            let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
            let mut head = [0u8; HEADER_BYTES];
            if len < HEADER_BYTES as u64 {
                return Err(header::truncated_header(path, len));
            }
            file.read_exact(&mut head).map_err(|e| Error::io(path, e))?;
            let header = MrcHeader::from_bytes(&head);
            let layout = Layout::new(path, &header)?;
            layout.check_len(path, &header, len)?;
            super::volume::axis_order(path, &header)?;
            header
        };
        let len = header.nz as usize;
        let image_shape = (header.ny as usize, header.nx as usize);
        Ok(StackInfo { path: path.to_path_buf(), header, len, image_shape })
    }

    /// Open and validate `path`: memory-mapped when uncompressed, decompressed into memory when gzip or
    /// bzip2 (recognised by magic bytes).
    ///
    /// Errors: [`Error::Truncated`] when the file is shorter than its header says, [`Error::Invalid`] for
    /// non-positive or overflowing dimensions, [`Error::Unsupported`] for modes other than 0, 1, 2, 6, 12.
    pub fn open(path: impl AsRef<Path>) -> Result<Self> {
        let path = path.as_ref();
        let (file, compression) = compressed::open_detect(path)?;
        let backing = match compression {
            Some(c) => Backing::Decompressed(read_compressed(path, file, c)?),
            None => {
                let len = file.metadata().map_err(|e| Error::io(path, e))?.len();
                if len < HEADER_BYTES as u64 {
                    return Err(header::truncated_header(path, len));
                }
                // SAFETY: the map is read-only and lives as long as `self`; like every reader that maps
                // files we rely on nobody truncating the file meanwhile (documented in the module docs).
                let map = unsafe { Mmap::map(&file) }.map_err(|e| Error::io(path, e))?;
                Backing::Mapped(map)
            }
        };
        Self::from_backing(path, backing)
    }

    fn from_backing(path: &Path, backing: Backing) -> Result<Self> {
        let bytes = backing.bytes();
        let head: &[u8; HEADER_BYTES] = bytes
            .get(..HEADER_BYTES)
            .and_then(|b| b.try_into().ok())
            .ok_or_else(|| header::truncated_header(path, bytes.len() as u64))?;
        let header = MrcHeader::from_bytes(head);
        let layout = Layout::new(path, &header)?;
        layout.check_len(path, &header, bytes.len() as u64)?;
        super::volume::axis_order(path, &header)?;
        Ok(MrcStack { path: path.to_path_buf(), header, layout, backing })
    }

    /// The file this stack reads.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// The decoded header.
    pub fn header(&self) -> &MrcHeader {
        &self.header
    }

    /// The data mode.
    pub fn mode(&self) -> MrcMode {
        self.layout.mode
    }

    /// Number of images (nz).
    pub fn len(&self) -> usize {
        self.layout.count
    }

    /// Always false: a valid file has nz ≥ 1.
    pub fn is_empty(&self) -> bool {
        self.layout.count == 0
    }

    /// `(ny, nx)`: rows and columns of each image.
    pub fn image_shape(&self) -> (usize, usize) {
        // Validated positive at open.
        (self.header.ny as usize, self.header.nx as usize)
    }

    /// Values per image, ny·nx.
    pub fn image_len(&self) -> usize {
        self.layout.image_values
    }

    /// Decode image `index` (0-based) into `out` (length ny·nx), row-major with x fastest.
    pub fn read_image_into(&self, index: usize, out: &mut [f32]) -> Result<()> {
        self.read_images_into(index, 1, out)
    }

    /// Decode images `start..start + count` into `out` (length count·ny·nx) in one pass over contiguous
    /// bytes; the way to stream a stack sequentially.
    pub fn read_images_into(&self, start: usize, count: usize, out: &mut [f32]) -> Result<()> {
        let n = self.layout.count;
        let record = || {
            if count == 1 {
                format!("image {start}")
            } else {
                format!("images {start}..{}", start.saturating_add(count))
            }
        };
        let end = start.checked_add(count).filter(|&e| e <= n).ok_or_else(|| {
            Error::invalid(
                &self.path,
                Some(record()),
                format!("index out of range: the stack has {n} images (0-based indices 0..{n})"),
                "check the particle indices and the STAR/.cs/.txt file that refers to this stack",
            )
        })?;
        let values = count * self.layout.image_values;
        if out.len() != values {
            return Err(Error::invalid(
                &self.path,
                Some(record()),
                format!("output buffer holds {} values but {count} images need {values}", out.len()),
                "",
            ));
        }
        // In range: `end ≤ nz`, and the file was checked to hold all nz images.
        let image_bytes = self.layout.image_bytes as usize;
        let from = self.layout.data_offset as usize + start * image_bytes;
        let to = self.layout.data_offset as usize + end * image_bytes;
        let src = &self.backing.bytes()[from..to];
        mode::decode_into(self.layout.mode, self.header.byte_order, src, out);
        Ok(())
    }

    /// Tell the OS that images `start..start + count` will not be read again soon, so their pages leave
    /// this process's resident set. Streaming calls this after each chunk: without it, the resident size
    /// grows with every image read until the whole stack is mapped in (measured: 420 MB RSS after one
    /// pass over a 0.43 GB stack), which looks like a leak on a million-particle dataset. A hint only: the
    /// data stay valid and are re-read from the page cache or disk if needed.
    pub fn release_images(&self, start: usize, count: usize) {
        let Backing::Mapped(map) = &self.backing else { return };
        let image_bytes = self.layout.image_bytes as usize;
        let from = self.layout.data_offset as usize + start.saturating_mul(image_bytes);
        let to = (from.saturating_add(count.saturating_mul(image_bytes))).min(map.len());
        // madvise needs page-aligned ranges. Widen the range outward, plus the kernel's fault-around window
        // (64 KiB by default), which maps neighbouring cached pages on every fault: without the margin,
        // random reads leave those neighbours resident (measured: 0.9 GB after 20k random images).
        // Releasing a page a neighbour still uses only costs that neighbour a refault.
        const PAGE: usize = 4096;
        const FAULT_AROUND: usize = 64 << 10;
        let first = from.saturating_sub(FAULT_AROUND) / PAGE * PAGE;
        let last = to.saturating_add(FAULT_AROUND).min(map.len());
        if last > first {
            // SAFETY: a read-only shared file mapping: DONTNEED drops our page references and later
            // accesses fault the same file contents back in, so no data is lost or changed.
            let _ = unsafe {
                map.unchecked_advise_range(memmap2::UncheckedAdvice::DontNeed, first, last - first)
            };
        }
    }

    /// Image `index` as a new vector of ny·nx values.
    pub fn read_image(&self, index: usize) -> Result<Vec<f32>> {
        let mut out = vec![0.0; self.layout.image_values];
        self.read_image_into(index, &mut out)?;
        Ok(out)
    }
}

/// Decompress a gzip/bzip2 MRC file, reading no more than its header promises (so a forged header or a
/// decompression bomb cannot exhaust memory beyond the real content).
fn read_compressed(path: &Path, file: File, compression: Compression) -> Result<Vec<u8>> {
    let mut reader = compressed::decoder(file, Some(compression));
    let mut head = [0u8; HEADER_BYTES];
    let got = header::read_up_to(path, &mut reader, &mut head)?;
    if got < HEADER_BYTES {
        return Err(header::truncated_header(path, got as u64));
    }
    let header = MrcHeader::from_bytes(&head);
    let mut bytes = head.to_vec();
    let layout = Layout::new(path, &header)?;
    // `take` bounds what is read; the vector grows only as real data arrive.
    reader
        .take(layout.needed - HEADER_BYTES as u64)
        .read_to_end(&mut bytes)
        .map_err(|e| compressed::read_error(path, e))?;
    layout.check_len(path, &header, bytes.len() as u64).map_err(|e| match e {
        Error::Truncated { path, what, expected, got, .. } => Error::Truncated {
            path,
            what: format!("{what} (after {} decompression)", compression.name()),
            expected,
            got,
            hint: TRUNCATED_HINT.to_string(),
        },
        other => other,
    })?;
    Ok(bytes)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mrc::header::ByteOrder;
    use crate::mrc::test_util::RawMrc;
    use std::io::Write;

    fn assert_send_sync<T: Send + Sync>() {}

    #[test]
    fn stack_is_send_and_sync() {
        assert_send_sync::<MrcStack>();
    }

    /// Values 0, -1, 2, -3, … (alternating signs) for signed modes, 0, 1, 2, … for unsigned ones.
    fn expected(mode: i32, n: usize) -> Vec<f32> {
        (0..n)
            .map(
                |k| if mode == 6 { k as f32 * 300.0 } else { k as f32 * if k % 2 == 1 { -1.0 } else { 1.0 } },
            )
            .collect()
    }

    fn encode(mode: i32, order: ByteOrder, values: &[f32]) -> Vec<u8> {
        let big = order == ByteOrder::Big;
        values
            .iter()
            .flat_map(|&v| -> Vec<u8> {
                match (mode, big) {
                    (0, _) => vec![v as i8 as u8],
                    (1, false) => (v as i16).to_le_bytes().to_vec(),
                    (1, true) => (v as i16).to_be_bytes().to_vec(),
                    (2, false) => v.to_le_bytes().to_vec(),
                    (2, true) => v.to_be_bytes().to_vec(),
                    (6, false) => (v as u16).to_le_bytes().to_vec(),
                    (6, true) => (v as u16).to_be_bytes().to_vec(),
                    (12, false) => half::f16::from_f32(v).to_le_bytes().to_vec(),
                    (12, true) => half::f16::from_f32(v).to_be_bytes().to_vec(),
                    _ => unreachable!("mode {mode}"),
                }
            })
            .collect()
    }

    #[test]
    fn every_mode_in_both_byte_orders_with_and_without_stamp() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [0, 1, 2, 6, 12] {
            for order in [ByteOrder::Little, ByteOrder::Big] {
                for stamp in [None, Some([0u8; 4])] {
                    let raw = RawMrc { order, mode, dims: [3, 2, 4], stamp, ..RawMrc::default() };
                    let values = expected(mode, 24);
                    let p = raw.write(dir.path(), "m.mrc", &encode(mode, order, &values));
                    let s = MrcStack::open(&p).unwrap();
                    assert_eq!(s.header().byte_order, order, "mode {mode} {order:?} stamp {stamp:?}");
                    assert_eq!(s.mode().code(), mode);
                    assert_eq!((s.len(), s.image_shape(), s.image_len()), (4, (2, 3), 6));
                    assert_eq!(s.read_image(2).unwrap(), values[12..18], "mode {mode} {order:?}");
                    let mut all = vec![0.0; 24];
                    s.read_images_into(0, 4, &mut all).unwrap();
                    assert_eq!(all, values, "mode {mode} {order:?}");
                }
            }
        }
    }

    #[test]
    fn extended_header_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let raw = RawMrc { dims: [2, 2, 2], next: 200, ..RawMrc::default() };
        let values: Vec<f32> = (1..=8).map(|k| k as f32).collect();
        let p = raw.write_f32(dir.path(), "ext.mrc", &values);
        let s = MrcStack::open(&p).unwrap();
        assert_eq!(s.header().nsymbt, 200);
        assert_eq!(s.read_image(1).unwrap(), [5.0, 6.0, 7.0, 8.0]);
    }

    #[test]
    fn truncated_data_is_reported_with_sizes() {
        let dir = tempfile::tempdir().unwrap();
        let raw = RawMrc { dims: [4, 4, 3], ..RawMrc::default() };
        let p = raw.write_f32(dir.path(), "cut.mrcs", &[1.0; 47]);
        let e = MrcStack::open(&p).unwrap_err();
        assert!(matches!(e, Error::Truncated { expected: 1216, got: 1212, .. }), "{e:?}");
        let tiny = dir.path().join("tiny.mrcs");
        std::fs::write(&tiny, [0u8; 1000]).unwrap();
        assert!(matches!(MrcStack::open(&tiny), Err(Error::Truncated { expected: 1024, got: 1000, .. })));
    }

    /// More data than the header describes (one image too many; a float stack relabelled as int16) and
    /// an axis order that is no permutation are errors, not silently ignored.
    #[test]
    fn trailing_data_and_damaged_axis_orders_are_reported() {
        let dir = tempfile::tempdir().unwrap();
        let raw = RawMrc { dims: [4, 4, 3], ..RawMrc::default() };
        let p = raw.write_f32(dir.path(), "long.mrcs", &[1.0; 64]);
        let e = MrcStack::open(&p).unwrap_err().to_string();
        assert!(
            e.contains("1280 bytes, but the header describes 1216") && e.contains("64 bytes unaccounted"),
            "{e}"
        );
        let relabelled = RawMrc { mode: 1, ..raw.clone() };
        let floats: Vec<u8> = [1.0f32; 48].iter().flat_map(|v| v.to_le_bytes()).collect();
        let p = relabelled.write(dir.path(), "int16.mrcs", &floats);
        assert!(MrcStack::open(&p).unwrap_err().to_string().contains("unaccounted"));
        let damaged = RawMrc { mapcrs: [1, 1, 3], ..raw };
        let p = damaged.write_f32(dir.path(), "axes.mrcs", &[1.0; 48]);
        assert!(MrcStack::open(&p).unwrap_err().to_string().contains("not a permutation"));
    }

    #[test]
    fn lying_headers_fail_before_allocating() {
        let dir = tempfile::tempdir().unwrap();
        // 2^30 images of 64² floats = 16 TiB promised by a 1 KiB file.
        let raw = RawMrc { dims: [64, 64, 1 << 30], ..RawMrc::default() };
        let p = raw.write_f32(dir.path(), "liar.mrcs", &[0.0; 16]);
        let e = MrcStack::open(&p).unwrap_err();
        assert!(matches!(e, Error::Truncated { expected, .. } if expected == 1024 + (1u64 << 44)));
        // The same through gzip: decompression stops at the real content.
        let gz = dir.path().join("liar.mrcs.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&std::fs::read(&p).unwrap()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert!(matches!(MrcStack::open(&gz), Err(Error::Truncated { got: 1088, .. })));
        // Sizes whose product overflows u64.
        let raw = RawMrc { dims: [i32::MAX, i32::MAX, i32::MAX], ..RawMrc::default() };
        let p = raw.write_f32(dir.path(), "overflow.mrc", &[]);
        assert!(matches!(MrcStack::open(&p), Err(Error::Invalid { .. })));
    }

    #[test]
    fn unsupported_modes_name_the_mode() {
        let dir = tempfile::tempdir().unwrap();
        for mode in [3, 4, 16, 99] {
            let raw = RawMrc { mode, ..RawMrc::default() };
            let p = raw.write(dir.path(), "c.mrc", &[0u8; 64]);
            let e = MrcStack::open(&p).unwrap_err();
            assert!(
                matches!(e, Error::Unsupported { ref what, .. } if what.contains(&format!("mode {mode}")))
            );
        }
    }

    #[test]
    fn non_positive_dimensions_are_invalid() {
        let dir = tempfile::tempdir().unwrap();
        for dims in [[0, 2, 2], [2, -3, 2], [2, 2, 0]] {
            let raw = RawMrc { dims, ..RawMrc::default() };
            let p = raw.write(dir.path(), "d.mrc", &[0u8; 64]);
            assert!(matches!(MrcStack::open(&p), Err(Error::Invalid { .. })), "dims {dims:?}");
        }
        let raw = RawMrc { next: -4, ..RawMrc::default() };
        let p = raw.write(dir.path(), "n.mrc", &[0u8; 64]);
        assert!(matches!(MrcStack::open(&p), Err(Error::Invalid { .. })));
    }

    #[test]
    fn range_and_buffer_errors() {
        let dir = tempfile::tempdir().unwrap();
        let raw = RawMrc { dims: [2, 2, 3], ..RawMrc::default() };
        let p = raw.write_f32(dir.path(), "r.mrcs", &[0.5; 12]);
        let s = MrcStack::open(&p).unwrap();
        let mut buf = vec![0.0; 8];
        assert!(matches!(s.read_images_into(2, 2, &mut buf), Err(Error::Invalid { .. })));
        assert!(matches!(s.read_images_into(usize::MAX, 2, &mut buf), Err(Error::Invalid { .. })));
        assert!(matches!(s.read_images_into(0, 1, &mut buf), Err(Error::Invalid { .. })));
        s.read_images_into(1, 2, &mut buf).unwrap();
        assert_eq!(buf, [0.5; 8]);
        s.read_images_into(3, 0, &mut []).unwrap();
    }
}
