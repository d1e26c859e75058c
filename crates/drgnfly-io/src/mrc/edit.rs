//! In-place header edits (`add-psize`).
//!
//! [`set_voxel_size`] rewrites only the 12 bytes of the cell lengths (bytes 40–51). That is done in place
//! rather than by copy-and-rename because a stack can be hundreds of gigabytes, and it is safe: the write
//! is a single 12-byte `write` inside the first disk block, the rest of the file is untouched, and at every
//! moment the header holds either the old or the new cell (even a torn write leaves finite cell lengths),
//! so the file is a valid MRC file throughout.

use std::fs::OpenOptions;
use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::error::{Error, Result};

use super::compressed;
use super::header::{self, MrcHeader, CELL_OFFSET, HEADER_BYTES};
use super::stack::check_dims;

/// Set the voxel size of an MRC file to `apix` Å on all three axes by rewriting the cell lengths as
/// `apix × (mx, my, mz)` (nx/ny/nz where a sampling count is not positive), in the file's own byte order.
///
/// Errors: [`Error::Invalid`] for a negative or non-finite `apix` or a header with non-positive
/// dimensions, [`Error::Unsupported`] for gzip/bzip2 files (decompress them first), [`Error::Truncated`]
/// for files shorter than a header.
pub fn set_voxel_size(path: impl AsRef<Path>, apix: f32) -> Result<()> {
    let path = path.as_ref();
    if !(apix.is_finite() && apix >= 0.0) {
        return Err(Error::invalid(
            path,
            None,
            format!("cannot set the pixel size to {apix} Å"),
            "give a finite, non-negative pixel size",
        ));
    }
    let (_, compression) = compressed::open_detect(path)?;
    if let Some(c) = compression {
        return Err(Error::unsupported(
            path,
            None,
            format!("editing the header of a {}-compressed file in place", c.name()),
            "decompress it first (gunzip / bunzip2)",
        ));
    }
    let mut file = OpenOptions::new().read(true).write(true).open(path).map_err(|e| Error::io(path, e))?;
    let mut head = [0u8; HEADER_BYTES];
    let got = header::read_up_to(path, &mut file, &mut head)?;
    if got < HEADER_BYTES {
        return Err(header::truncated_header(path, got as u64));
    }
    let h = MrcHeader::from_bytes(&head);
    check_dims(path, &h)?;
    let intervals = |m: i32, n: i32| if m > 0 { m } else { n };
    let cell = [intervals(h.mx, h.nx), intervals(h.my, h.ny), intervals(h.mz, h.nz)].map(|m| apix * m as f32);
    let mut bytes = [0u8; 12];
    for (slot, v) in bytes.chunks_exact_mut(4).zip(cell) {
        slot.copy_from_slice(&h.byte_order.f32_bytes(v));
    }
    file.seek(SeekFrom::Start(CELL_OFFSET as u64)).map_err(|e| Error::io(path, e))?;
    file.write_all(&bytes).map_err(|e| Error::io(path, e))?;
    file.sync_data().map_err(|e| Error::io(path, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mrc::header::ByteOrder;
    use crate::mrc::test_util::RawMrc;
    use crate::mrc::{read_header, MrcStack};

    #[test]
    fn rewrites_only_the_cell_in_either_byte_order() {
        let dir = tempfile::tempdir().unwrap();
        for order in [ByteOrder::Little, ByteOrder::Big] {
            // A cryoDRGN-style stack: mz = nz, zero cell, no stamp.
            let raw =
                RawMrc { order, dims: [2, 3, 4], cell: [0.0; 3], stamp: Some([0; 4]), ..RawMrc::default() };
            let values: Vec<f32> = (0..24).map(|k| k as f32 - 5.0).collect();
            let p = raw.write_f32(dir.path(), "s.mrcs", &values);
            let before = std::fs::read(&p).unwrap();
            set_voxel_size(&p, 1.25).unwrap();
            let after = std::fs::read(&p).unwrap();
            assert_eq!(before.len(), after.len());
            let changed: Vec<usize> = (0..before.len()).filter(|&k| before[k] != after[k]).collect();
            assert!(changed.iter().all(|k| (40..52).contains(k)), "changed bytes {changed:?}");
            let h = read_header(&p).unwrap();
            assert_eq!(h.byte_order, order);
            assert_eq!(h.voxel_size(), [1.25; 3]);
            assert_eq!(h.cell_lengths_a, [2.5, 3.75, 5.0]);
            let mut data = vec![0.0; 24];
            MrcStack::open(&p).unwrap().read_images_into(0, 4, &mut data).unwrap();
            assert_eq!(data, values);
        }
    }

    #[test]
    fn refuses_bad_pixel_sizes_and_compressed_files() {
        let dir = tempfile::tempdir().unwrap();
        let p = RawMrc::default().write_f32(dir.path(), "v.mrc", &[0.0; 4]);
        assert!(matches!(set_voxel_size(&p, -1.0), Err(Error::Invalid { .. })));
        assert!(matches!(set_voxel_size(&p, f32::INFINITY), Err(Error::Invalid { .. })));
        let gz = dir.path().join("v.mrc.gz");
        let mut enc = flate2::write::GzEncoder::new(Vec::new(), flate2::Compression::fast());
        enc.write_all(&std::fs::read(&p).unwrap()).unwrap();
        std::fs::write(&gz, enc.finish().unwrap()).unwrap();
        assert!(matches!(set_voxel_size(&gz, 1.0), Err(Error::Unsupported { .. })));
        let short = dir.path().join("short.mrc");
        std::fs::write(&short, [0u8; 10]).unwrap();
        assert!(matches!(set_voxel_size(&short, 1.0), Err(Error::Truncated { .. })));
    }
}
