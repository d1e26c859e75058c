//! The 1024-byte MRC2014 main header, decoded field by field.
//!
//! The byte order comes from the machine stamp (`0x44 0x44` or `0x44 0x41`: little-endian; `0x11 0x11`:
//! big-endian). Many cryoDRGN-written stacks have a zero stamp; then the order in which nx, ny, nz and mode
//! look plausible wins (little-endian when both or neither do), which is silent because it is routine.

use std::io::Read;
use std::path::Path;

use crate::error::{Error, Result};

use super::compressed;

/// Size of the main header in bytes; the data start at `HEADER_BYTES + nsymbt`.
pub const HEADER_BYTES: usize = 1024;

/// Byte offset of the cell lengths (3 × f32), the only field [`super::set_voxel_size`] rewrites.
pub(crate) const CELL_OFFSET: usize = 40;

/// Byte order of the numbers in an MRC file.
///
/// Taken from the machine stamp (`0x44 0x44` or `0x44 0x41`: little; `0x11 0x11`: big). With a zero or
/// unknown stamp (common in cryoDRGN-written stacks) the order in which nx, ny, nz and mode look plausible
/// is used, little-endian when both or neither do.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ByteOrder {
    /// Little-endian (machine stamp `DA\0\0` or `DD\0\0`); what every current program writes.
    Little,
    /// Big-endian (machine stamp `0x11 0x11 0 0`).
    Big,
}

impl ByteOrder {
    /// The order a machine stamp declares, or `None` for a zero or unrecognised stamp.
    pub fn from_stamp(stamp: [u8; 4]) -> Option<Self> {
        match stamp {
            [0x44, 0x44 | 0x41, ..] => Some(ByteOrder::Little),
            [0x11, 0x11, ..] => Some(ByteOrder::Big),
            _ => None,
        }
    }

    pub(crate) fn i32(self, b: [u8; 4]) -> i32 {
        match self {
            ByteOrder::Little => i32::from_le_bytes(b),
            ByteOrder::Big => i32::from_be_bytes(b),
        }
    }

    pub(crate) fn f32(self, b: [u8; 4]) -> f32 {
        f32::from_bits(self.i32(b) as u32)
    }

    pub(crate) fn i32_bytes(self, v: i32) -> [u8; 4] {
        match self {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        }
    }

    pub(crate) fn f32_bytes(self, v: f32) -> [u8; 4] {
        self.i32_bytes(v.to_bits() as i32)
    }
}

/// Every field of an MRC2014 main header. Field names follow the standard; units are in the names.
///
/// Byte offsets (4-byte words, in the file's byte order):
///
/// | bytes | field | bytes | field |
/// |---|---|---|---|
/// | 0–11 | nx, ny, nz | 88 | ispg |
/// | 12 | mode | 92 | nsymbt (extended header bytes, `next`) |
/// | 16–27 | nxstart, nystart, nzstart | 104 | exttyp (4 chars) |
/// | 28–39 | mx, my, mz | 108 | nversion |
/// | 40–51 | cell lengths x, y, z (Å) | 152, 156 | IMOD stamp, IMOD flags |
/// | 52–63 | cell angles α, β, γ (°) | 196–207 | origin x, y, z (Å) |
/// | 64–75 | mapc, mapr, maps | 208 | `MAP ` |
/// | 76–87 | dmin, dmax, dmean | 212 | machine stamp (4 bytes) |
/// | 216 | rms | 220 | nlabl |
/// | 224–1023 | 10 labels of 80 characters | | |
///
/// The unused "extra" bytes other than exttyp, nversion and the IMOD stamp/flags are not kept.
#[derive(Clone, Debug, PartialEq)]
pub struct MrcHeader {
    /// Columns (fastest axis in the file).
    pub nx: i32,
    /// Rows.
    pub ny: i32,
    /// Sections; the number of images in a stack.
    pub nz: i32,
    /// Data type code (see [`super::MrcMode`]).
    pub mode: i32,
    /// Index of the first column.
    pub nxstart: i32,
    /// Index of the first row.
    pub nystart: i32,
    /// Index of the first section.
    pub nzstart: i32,
    /// Sampling intervals along X in the unit cell.
    pub mx: i32,
    /// Sampling intervals along Y.
    pub my: i32,
    /// Sampling intervals along Z (1 for an image stack by the MRC2014/RELION convention).
    pub mz: i32,
    /// Cell lengths along X, Y, Z in Å; voxel size = cell / (mx, my, mz).
    pub cell_lengths_a: [f32; 3],
    /// Cell angles α, β, γ in degrees.
    pub cell_angles_deg: [f32; 3],
    /// Axis (1 = X, 2 = Y, 3 = Z) along the columns.
    pub mapc: i32,
    /// Axis along the rows.
    pub mapr: i32,
    /// Axis along the sections.
    pub maps: i32,
    /// Minimum density (dmax < dmin means "not computed").
    pub dmin: f32,
    /// Maximum density.
    pub dmax: f32,
    /// Mean density.
    pub dmean: f32,
    /// Space group: 0 for image stacks, 1 for volumes, 401 for volume stacks.
    pub ispg: i32,
    /// Bytes of extended header between the main header and the data (`next`).
    pub nsymbt: i32,
    /// Extended header type, e.g. `FEI1`, `CCP4`, `SERI` (zeros when unset).
    pub exttyp: [u8; 4],
    /// Format version, 20140 for MRC2014 (0 in older files).
    pub nversion: i32,
    /// IMOD stamp (1146047817 when the file comes from IMOD).
    pub imod_stamp: i32,
    /// IMOD flags (bit 0: mode 0 is signed).
    pub imod_flags: i32,
    /// Origin along X, Y, Z in Å.
    pub origin_a: [f32; 3],
    /// Whether bytes 208–211 hold `MAP `.
    pub has_map_id: bool,
    /// Machine stamp bytes as stored.
    pub machine_stamp: [u8; 4],
    /// RMS deviation of the densities from their mean.
    pub rms: f32,
    /// Number of labels in use, as stored (may be outside 0–10 in a damaged file).
    pub nlabl: i32,
    /// The first `nlabl` labels (at most 10), without trailing spaces or NULs.
    pub labels: Vec<String>,
    /// The byte order the header was decoded with (and is encoded with by [`MrcHeader::to_bytes`]).
    pub byte_order: ByteOrder,
}

fn word(bytes: &[u8; HEADER_BYTES], offset: usize) -> [u8; 4] {
    let mut w = [0u8; 4];
    w.copy_from_slice(&bytes[offset..offset + 4]);
    w
}

/// Mode codes that exist in the wild (MRC2014 plus IMOD's 16 and 101); used only to guess the byte order.
const KNOWN_MODE_CODES: [i32; 9] = [0, 1, 2, 3, 4, 6, 12, 16, 101];

/// Whether nx, ny, nz and mode read in `order` look like a real header (for stamp-less files).
fn plausible(bytes: &[u8; HEADER_BYTES], order: ByteOrder) -> bool {
    let side = |off| (1..=1 << 16).contains(&order.i32(word(bytes, off)));
    side(0)
        && side(4)
        && order.i32(word(bytes, 8)) >= 1
        && KNOWN_MODE_CODES.contains(&order.i32(word(bytes, 12)))
}

impl MrcHeader {
    /// Decode a header. Never fails: checking the values against the file is the reader's job.
    pub fn from_bytes(bytes: &[u8; HEADER_BYTES]) -> Self {
        let machine_stamp = word(bytes, 212);
        let byte_order = ByteOrder::from_stamp(machine_stamp).unwrap_or_else(|| {
            if plausible(bytes, ByteOrder::Little) || !plausible(bytes, ByteOrder::Big) {
                ByteOrder::Little
            } else {
                ByteOrder::Big
            }
        });
        let i = |off| byte_order.i32(word(bytes, off));
        let f = |off| byte_order.f32(word(bytes, off));
        let nlabl = i(220);
        let labels = (0..nlabl.clamp(0, 10) as usize)
            .map(|k| {
                let raw = &bytes[224 + 80 * k..224 + 80 * (k + 1)];
                String::from_utf8_lossy(raw).trim_end_matches(['\0', ' ']).to_string()
            })
            .collect();
        MrcHeader {
            nx: i(0),
            ny: i(4),
            nz: i(8),
            mode: i(12),
            nxstart: i(16),
            nystart: i(20),
            nzstart: i(24),
            mx: i(28),
            my: i(32),
            mz: i(36),
            cell_lengths_a: [f(40), f(44), f(48)],
            cell_angles_deg: [f(52), f(56), f(60)],
            mapc: i(64),
            mapr: i(68),
            maps: i(72),
            dmin: f(76),
            dmax: f(80),
            dmean: f(84),
            ispg: i(88),
            nsymbt: i(92),
            exttyp: word(bytes, 104),
            nversion: i(108),
            imod_stamp: i(152),
            imod_flags: i(156),
            origin_a: [f(196), f(200), f(204)],
            has_map_id: &bytes[208..212] == b"MAP ",
            machine_stamp,
            rms: f(216),
            nlabl,
            labels,
            byte_order,
        }
    }

    /// Encode in [`MrcHeader::byte_order`]. The machine stamp is written as stored, so set it to match the
    /// order. Labels beyond 10 are dropped and each is cut to 80 bytes.
    pub fn to_bytes(&self) -> [u8; HEADER_BYTES] {
        let mut b = [0u8; HEADER_BYTES];
        let o = self.byte_order;
        let ints = [
            (0, self.nx),
            (4, self.ny),
            (8, self.nz),
            (12, self.mode),
            (16, self.nxstart),
            (20, self.nystart),
            (24, self.nzstart),
            (28, self.mx),
            (32, self.my),
            (36, self.mz),
            (64, self.mapc),
            (68, self.mapr),
            (72, self.maps),
            (88, self.ispg),
            (92, self.nsymbt),
            (108, self.nversion),
            (152, self.imod_stamp),
            (156, self.imod_flags),
            (220, self.nlabl),
        ];
        for (off, v) in ints {
            b[off..off + 4].copy_from_slice(&o.i32_bytes(v));
        }
        let [cx, cy, cz] = self.cell_lengths_a;
        let [aa, ab, ag] = self.cell_angles_deg;
        let [ox, oy, oz] = self.origin_a;
        let floats = [
            (40, cx),
            (44, cy),
            (48, cz),
            (52, aa),
            (56, ab),
            (60, ag),
            (76, self.dmin),
            (80, self.dmax),
            (84, self.dmean),
            (196, ox),
            (200, oy),
            (204, oz),
            (216, self.rms),
        ];
        for (off, v) in floats {
            b[off..off + 4].copy_from_slice(&o.f32_bytes(v));
        }
        b[104..108].copy_from_slice(&self.exttyp);
        if self.has_map_id {
            b[208..212].copy_from_slice(b"MAP ");
        }
        b[212..216].copy_from_slice(&self.machine_stamp);
        for (k, label) in self.labels.iter().take(10).enumerate() {
            let slot = &mut b[224 + 80 * k..224 + 80 * (k + 1)];
            slot.fill(b' ');
            let text = label.as_bytes();
            let n = text.len().min(80);
            slot[..n].copy_from_slice(&text[..n]);
        }
        b
    }

    /// The byte order the machine stamp declares, or `None` when it was guessed from the values.
    pub fn stamp_byte_order(&self) -> Option<ByteOrder> {
        ByteOrder::from_stamp(self.machine_stamp)
    }

    /// Voxel size along X, Y, Z in Å: cell length / (mx, my, mz), as mrcfile and RELION compute it.
    ///
    /// When a sampling count is not positive, nx/ny/nz is used instead; a zero cell gives 0 (unknown, see
    /// [`MrcHeader::known_voxel_size`]).
    pub fn voxel_size(&self) -> [f32; 3] {
        let per_voxel = |len: f32, m: i32, n: i32| {
            let intervals = if m > 0 { m } else { n };
            if intervals > 0 {
                len / intervals as f32
            } else {
                0.0
            }
        };
        let [cx, cy, cz] = self.cell_lengths_a;
        [per_voxel(cx, self.mx, self.nx), per_voxel(cy, self.my, self.ny), per_voxel(cz, self.mz, self.nz)]
    }

    /// The voxel size when all three components are finite and positive; `None` means the header does not
    /// say (the pixel size must then come from the STAR/.cs metadata or a flag).
    pub fn known_voxel_size(&self) -> Option<[f32; 3]> {
        let v = self.voxel_size();
        v.iter().all(|s| s.is_finite() && *s > 0.0).then_some(v)
    }

    /// Pixel size in Å/px: the X voxel size rounded to 6 decimals, as cryoDRGN reports it.
    ///
    /// cryoDRGN divides the cell length by nx rather than mx; the two agree for every file written with
    /// mx = nx. Where they differ (cryoDRGN's `toy_projections.mrcs`: cell 1 Å, mx 1, nx 30) this follows the
    /// standard and says 1 Å where cryoDRGN says 0.033333 Å.
    pub fn apix(&self) -> f32 {
        round6(self.voxel_size()[0])
    }

    /// [`MrcHeader::apix`] when it is finite and positive.
    pub fn known_apix(&self) -> Option<f32> {
        let a = self.apix();
        (a.is_finite() && a > 0.0).then_some(a)
    }
}

/// Round to 6 decimals in f64 (Python's `round(x, 6)` up to ties).
fn round6(v: f32) -> f32 {
    ((f64::from(v) * 1e6).round() / 1e6) as f32
}

/// Read just the header of an MRC file (decompressing a `.gz`/`.bz2` file's first 1024 bytes).
pub fn read_header(path: impl AsRef<Path>) -> Result<MrcHeader> {
    let path = path.as_ref();
    let (reader, _) = compressed::open_reader(path)?;
    let mut bytes = [0u8; HEADER_BYTES];
    let got = read_up_to(path, reader, &mut bytes)?;
    if got < HEADER_BYTES {
        return Err(truncated_header(path, got as u64));
    }
    Ok(MrcHeader::from_bytes(&bytes))
}

/// Fill `buf` as far as the stream allows; returns the number of bytes read.
pub(crate) fn read_up_to(path: &Path, mut reader: impl Read, buf: &mut [u8]) -> Result<usize> {
    let mut got = 0;
    while got < buf.len() {
        match reader.read(&mut buf[got..]) {
            Ok(0) => break,
            Ok(n) => got += n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(compressed::read_error(path, e)),
        }
    }
    Ok(got)
}

/// The error for a file shorter than its 1024-byte header.
pub(crate) fn truncated_header(path: &Path, got: u64) -> Error {
    Error::Truncated {
        path: path.to_path_buf(),
        what: "MRC header".to_string(),
        expected: HEADER_BYTES as u64,
        got,
        hint: "the file may be incomplete or not an MRC file; re-copy or re-export it".to_string(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mrc::test_util::RawMrc;

    #[test]
    fn decodes_every_field_in_both_byte_orders() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let raw = RawMrc { order, dims: [5, 4, 3], mode: 2, ..RawMrc::default() };
            let mut bytes = raw.header();
            // Fields RawMrc leaves at defaults, set by hand in the file's order.
            let put = |b: &mut Vec<u8>, off: usize, v: [u8; 4]| b[off..off + 4].copy_from_slice(&v);
            put(&mut bytes, 16, order.i32_bytes(-2));
            put(&mut bytes, 196, order.f32_bytes(12.5));
            put(&mut bytes, 108, order.i32_bytes(20140));
            put(&mut bytes, 220, order.i32_bytes(2));
            bytes[224..229].copy_from_slice(b"hello");
            bytes[304..309].copy_from_slice(b"world");
            let h = MrcHeader::from_bytes(bytes[..HEADER_BYTES].try_into().unwrap());
            assert_eq!(h.byte_order, order);
            assert_eq!((h.nx, h.ny, h.nz, h.mode), (5, 4, 3, 2));
            assert_eq!(h.nxstart, -2);
            assert_eq!(h.origin_a, [12.5, 0.0, 0.0]);
            assert_eq!(h.nversion, 20140);
            assert_eq!(h.labels, vec!["hello".to_string(), "world".to_string()]);
            assert_eq!((h.mapc, h.mapr, h.maps), (1, 2, 3));
            assert!(h.has_map_id);
            // Encoding reproduces every byte the decoder reads.
            let again = MrcHeader::from_bytes(&h.to_bytes());
            assert_eq!(again, h);
        }
    }

    #[test]
    fn stampless_headers_pick_the_plausible_order() {
        for order in [ByteOrder::Little, ByteOrder::Big] {
            let raw =
                RawMrc { order, stamp: Some([0; 4]), dims: [64, 64, 100], mode: 2, ..RawMrc::default() };
            let h = MrcHeader::from_bytes(raw.header()[..HEADER_BYTES].try_into().unwrap());
            assert_eq!(h.stamp_byte_order(), None);
            assert_eq!(h.byte_order, order);
            assert_eq!((h.nx, h.ny, h.nz), (64, 64, 100));
        }
    }

    #[test]
    fn voxel_size_follows_cell_over_sampling() {
        let raw = RawMrc {
            dims: [16, 16, 3],
            sampling: Some([16, 16, 1]),
            cell: [16.0, 192.0, 12.0],
            ..RawMrc::default()
        };
        let h = MrcHeader::from_bytes(raw.header()[..HEADER_BYTES].try_into().unwrap());
        assert_eq!(h.voxel_size(), [1.0, 12.0, 12.0]);
        assert_eq!(h.apix(), 1.0);

        let zero = RawMrc { cell: [0.0; 3], ..RawMrc::default() };
        let h = MrcHeader::from_bytes(zero.header()[..HEADER_BYTES].try_into().unwrap());
        assert_eq!(h.voxel_size(), [0.0; 3]);
        assert_eq!(h.known_voxel_size(), None);
        assert_eq!(h.known_apix(), None);

        // mx = 0 falls back to nx; apix is rounded to 6 decimals.
        let odd = RawMrc {
            dims: [30, 30, 1],
            sampling: Some([0, 30, 1]),
            cell: [1.0, 30.0, 1.0],
            ..RawMrc::default()
        };
        let h = MrcHeader::from_bytes(odd.header()[..HEADER_BYTES].try_into().unwrap());
        assert_eq!(h.apix(), 0.033333);
        assert_eq!(h.known_voxel_size(), Some([1.0 / 30.0, 1.0, 1.0]));
    }

    #[test]
    fn short_files_are_truncated_headers() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("short.mrc");
        std::fs::write(&p, [0u8; 100]).unwrap();
        let e = read_header(&p).unwrap_err();
        assert!(matches!(e, Error::Truncated { expected: 1024, got: 100, .. }));
    }
}
