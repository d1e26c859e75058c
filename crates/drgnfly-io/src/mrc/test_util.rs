//! Hand-built MRC files for tests. The header bytes are written here field by field, independently of
//! [`super::MrcHeader::to_bytes`], so reader and writer are not checked against the same code.

use std::path::{Path, PathBuf};

use super::header::ByteOrder;

/// The fields a synthetic file sets; everything else is zero.
#[derive(Clone, Debug)]
pub(crate) struct RawMrc {
    pub order: ByteOrder,
    /// nx, ny, nz.
    pub dims: [i32; 3],
    pub mode: i32,
    /// mx, my, mz; `None` writes the dims.
    pub sampling: Option<[i32; 3]>,
    /// Cell lengths in Å.
    pub cell: [f32; 3],
    /// mapc, mapr, maps.
    pub mapcrs: [i32; 3],
    /// Extended header bytes (filled with 0xAB).
    pub next: i32,
    /// Machine stamp; `None` writes the right one for `order`.
    pub stamp: Option<[u8; 4]>,
}

impl Default for RawMrc {
    fn default() -> Self {
        RawMrc {
            order: ByteOrder::Little,
            dims: [2, 2, 1],
            mode: 2,
            sampling: None,
            cell: [1.0; 3],
            mapcrs: [1, 2, 3],
            next: 0,
            stamp: None,
        }
    }
}

impl RawMrc {
    /// The 1024-byte header followed by the extended header.
    pub fn header(&self) -> Vec<u8> {
        let mut b = vec![0u8; 1024];
        let o = self.order;
        let mut put = |off: usize, v: [u8; 4]| b[off..off + 4].copy_from_slice(&v);
        let int = |v: i32| match o {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        };
        let float = |v: f32| match o {
            ByteOrder::Little => v.to_le_bytes(),
            ByteOrder::Big => v.to_be_bytes(),
        };
        let sampling = self.sampling.unwrap_or(self.dims);
        for (k, off) in [0, 4, 8].into_iter().enumerate() {
            put(off, int(self.dims[k]));
            put(28 + off, int(sampling[k]));
            put(40 + off, float(self.cell[k]));
            put(52 + off, float(90.0));
            put(64 + off, int(self.mapcrs[k]));
        }
        put(12, int(self.mode));
        put(92, int(self.next));
        put(208, *b"MAP ");
        let stamp = self.stamp.unwrap_or(match o {
            ByteOrder::Little => [0x44, 0x41, 0, 0],
            ByteOrder::Big => [0x11, 0x11, 0, 0],
        });
        put(212, stamp);
        b.resize(1024 + self.next.max(0) as usize, 0xAB);
        b
    }

    /// Write the header and `data` (already encoded) to `dir/name`.
    pub fn write(&self, dir: &Path, name: &str, data: &[u8]) -> PathBuf {
        let mut bytes = self.header();
        bytes.extend_from_slice(data);
        let p = dir.join(name);
        std::fs::write(&p, bytes).unwrap();
        p
    }

    /// Write `values` as mode-2 floats in the file's byte order.
    pub fn write_f32(&self, dir: &Path, name: &str, values: &[f32]) -> PathBuf {
        assert_eq!(self.mode, 2, "write_f32 writes float32 data");
        let data: Vec<u8> = values
            .iter()
            .flat_map(|v| match self.order {
                ByteOrder::Little => v.to_le_bytes(),
                ByteOrder::Big => v.to_be_bytes(),
            })
            .collect();
        self.write(dir, name, &data)
    }
}
