//! Writing maps and image stacks, atomically and in constant memory.
//!
//! Every file is little-endian MRC2014: `MAP `, machine stamp `DA\0\0` (0x44 0x41 0 0), nversion 20140,
//! mapc/mapr/maps = 1, 2, 3, no extended header, real statistics of the stored values (dmin, dmax, dmean,
//! rms = standard deviation about the mean, as mrcfile computes it) and one label naming drgnfly.
//!
//! - Volumes ([`write_volume`]): ispg 1, mx/my/mz = nx/ny/nz, cell = voxel size × (nx, ny, nz).
//! - Image stacks ([`MrcStackWriter`]): ispg 0, nz = number of images, **mz = 1** and cell =
//!   (nx·apix, ny·apix, apix), the convention of RELION (`.mrcs`) and of MRC2014/mrcfile for stacks of 2D
//!   images: the z "voxel" is one image thick and cell/m gives apix on every axis. (cryoDRGN writes mz = nz
//!   and cell z = nz·apix, which reads back the same apix; cryoDRGN's dmin/dmax/dmean = −1/−2/−3 placeholders
//!   are replaced by real values.)
//!
//! The data go to a temporary file while the header slot holds zeros; the header is written last, then the
//! file is renamed into place, so a crash never leaves a half file under the final name.

use std::io::{Seek, SeekFrom, Write};
use std::path::Path;

use crate::atomic::AtomicFile;
use crate::error::{Error, Result};

use super::header::{ByteOrder, MrcHeader, HEADER_BYTES};
use super::mode::MrcMode;

/// How values are stored in a written file.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Default)]
pub enum MrcDtype {
    /// Mode 2, 32-bit float (lossless).
    #[default]
    F32,
    /// Mode 12, 16-bit float: half the size; values round to 11 significant bits and overflow beyond
    /// ±65504 to ±∞.
    F16,
}

impl MrcDtype {
    /// The MRC mode written.
    pub fn mode(self) -> MrcMode {
        match self {
            MrcDtype::F32 => MrcMode::Float32,
            MrcDtype::F16 => MrcMode::Float16,
        }
    }
}

/// Values converted per write call; bounds the scratch memory of a writer.
const CHUNK_VALUES: usize = 1 << 16;

/// Running min, max, mean and sum of squared deviations, merged chunk by chunk (Chan et al.), in f64 so
/// that 10⁹ values keep full f32 precision.
#[derive(Clone, Copy, Debug)]
struct Stats {
    n: u64,
    min: f32,
    max: f32,
    mean: f64,
    m2: f64,
}

impl Stats {
    fn new() -> Self {
        Stats { n: 0, min: f32::INFINITY, max: f32::NEG_INFINITY, mean: 0.0, m2: 0.0 }
    }

    fn add(&mut self, values: &[f32]) {
        if values.is_empty() {
            return;
        }
        let nb = values.len() as f64;
        let mean_b = values.iter().map(|&v| f64::from(v)).sum::<f64>() / nb;
        let m2_b = values.iter().map(|&v| (f64::from(v) - mean_b).powi(2)).sum::<f64>();
        for &v in values {
            self.min = self.min.min(v);
            self.max = self.max.max(v);
        }
        let na = self.n as f64;
        let n = na + nb;
        let delta = mean_b - self.mean;
        self.mean += delta * nb / n;
        self.m2 += m2_b + delta * delta * na * nb / n;
        self.n += values.len() as u64;
    }

    /// Population standard deviation (numpy's `std()`).
    fn rms(&self) -> f64 {
        if self.n == 0 {
            0.0
        } else {
            (self.m2 / self.n as f64).sqrt()
        }
    }
}

/// The data part of a file being written: converts, counts and tracks statistics.
struct Body {
    out: AtomicFile,
    dtype: MrcDtype,
    stats: Stats,
    bytes: Vec<u8>,
    stored: Vec<f32>,
}

impl Body {
    fn create(path: &Path, dtype: MrcDtype) -> Result<Self> {
        let mut out = AtomicFile::create(path)?;
        // Placeholder; the real header is written by `finish` once the statistics are known.
        out.write_all(&[0u8; HEADER_BYTES])?;
        Ok(Body { out, dtype, stats: Stats::new(), bytes: Vec::new(), stored: Vec::new() })
    }

    fn push(&mut self, values: &[f32]) -> Result<()> {
        for chunk in values.chunks(CHUNK_VALUES) {
            let width = self.dtype.mode().bytes_per_value();
            self.bytes.resize(chunk.len() * width, 0);
            match self.dtype {
                MrcDtype::F32 => {
                    for (b, v) in self.bytes.chunks_exact_mut(4).zip(chunk) {
                        b.copy_from_slice(&v.to_le_bytes());
                    }
                    self.stats.add(chunk);
                }
                MrcDtype::F16 => {
                    // Statistics describe what a reader will see: the rounded values.
                    self.stored.clear();
                    for (b, &v) in self.bytes.chunks_exact_mut(2).zip(chunk) {
                        let h = half::f16::from_f32(v);
                        b.copy_from_slice(&h.to_le_bytes());
                        self.stored.push(h.to_f32());
                    }
                    self.stats.add(&self.stored);
                }
            }
            self.out.write_all(&self.bytes)?;
        }
        Ok(())
    }

    /// Write `header` (with the statistics filled in) over the placeholder and rename into place.
    fn finish(mut self, mut header: MrcHeader) -> Result<()> {
        header.dmin = self.stats.min;
        header.dmax = self.stats.max;
        header.dmean = self.stats.mean as f32;
        header.rms = self.stats.rms() as f32;
        let bytes = header.to_bytes();
        let w = self.out.writer();
        let result = w.seek(SeekFrom::Start(0)).and_then(|_| w.write_all(&bytes));
        result.map_err(|e| self.out.io_err(e))?;
        self.out.commit()
    }
}

/// A little-endian MRC2014 header for `[nx, ny, nz]` data; statistics are filled in by [`Body::finish`].
fn new_header(dims: [i32; 3], mz: i32, cell_lengths_a: [f32; 3], ispg: i32, dtype: MrcDtype) -> MrcHeader {
    MrcHeader {
        nx: dims[0],
        ny: dims[1],
        nz: dims[2],
        mode: dtype.mode().code(),
        nxstart: 0,
        nystart: 0,
        nzstart: 0,
        mx: dims[0],
        my: dims[1],
        mz,
        cell_lengths_a,
        cell_angles_deg: [90.0; 3],
        mapc: 1,
        mapr: 2,
        maps: 3,
        dmin: 0.0,
        dmax: 0.0,
        dmean: 0.0,
        ispg,
        nsymbt: 0,
        exttyp: [0; 4],
        nversion: 20140,
        imod_stamp: 0,
        imod_flags: 0,
        origin_a: [0.0; 3],
        has_map_id: true,
        machine_stamp: [0x44, 0x41, 0, 0],
        rms: 0.0,
        nlabl: 1,
        labels: vec![format!("drgnfly {}", env!("CARGO_PKG_VERSION"))],
        byte_order: ByteOrder::Little,
    }
}

/// A dimension as a header i32, or an error naming it.
fn dim_i32(path: &Path, name: &str, n: usize) -> Result<i32> {
    i32::try_from(n).ok().filter(|&v| v > 0).ok_or_else(|| {
        Error::invalid(path, None, format!("cannot write {name} = {n}: MRC sizes must be 1..=2147483647"), "")
    })
}

/// A pixel/voxel size that can go in a header: finite and ≥ 0 (0 = unknown).
fn check_voxel(path: &Path, voxel_size: f32) -> Result<()> {
    if voxel_size.is_finite() && voxel_size >= 0.0 {
        Ok(())
    } else {
        Err(Error::invalid(
            path,
            None,
            format!("cannot write voxel size {voxel_size} Å"),
            "give a finite, non-negative pixel size (--Apix)",
        ))
    }
}

/// Write a volume `data` indexed `[z][y][x]` (x fastest) of `shape = [nz, ny, nx]`, with cubic voxels of
/// `voxel_size` Å and header origin `origin` (x, y, z in Å).
///
/// Errors: [`Error::Invalid`] when `data.len()` is not nz·ny·nx, a dimension is 0 or above `i32::MAX`, or
/// the voxel size is negative or not finite; [`Error::Io`] from the file system.
pub fn write_volume(
    path: impl AsRef<Path>,
    data: &[f32],
    shape: [usize; 3],
    voxel_size: f32,
    origin: [f32; 3],
    dtype: MrcDtype,
) -> Result<()> {
    let path = path.as_ref();
    let [nz, ny, nx] = shape;
    let dims = [dim_i32(path, "nx", nx)?, dim_i32(path, "ny", ny)?, dim_i32(path, "nz", nz)?];
    let expected = nx.checked_mul(ny).and_then(|p| p.checked_mul(nz));
    if expected != Some(data.len()) {
        return Err(Error::invalid(
            path,
            None,
            format!("volume data has {} values but shape [{nz}, {ny}, {nx}] needs nz·ny·nx", data.len()),
            "",
        ));
    }
    check_voxel(path, voxel_size)?;
    let cell = [nx, ny, nz].map(|n| n as f32 * voxel_size);
    let mut header = new_header(dims, dims[2], cell, 1, dtype);
    header.origin_a = origin;
    let mut body = Body::create(path, dtype)?;
    body.push(data)?;
    body.finish(header)
}

/// Streams images into a new `.mrcs` stack; memory use does not grow with the number of images.
///
/// The file appears under its name only after [`MrcStackWriter::finish`]; dropping the writer discards it.
pub struct MrcStackWriter {
    body: Body,
    ny: i32,
    nx: i32,
    image_len: usize,
    apix: f32,
    count: usize,
}

impl MrcStackWriter {
    /// Start a stack of `ny × nx` images with pixel size `apix` Å (0 = unknown).
    pub fn create(path: impl AsRef<Path>, ny: usize, nx: usize, apix: f32, dtype: MrcDtype) -> Result<Self> {
        let path = path.as_ref();
        let (ny_i, nx_i) = (dim_i32(path, "ny", ny)?, dim_i32(path, "nx", nx)?);
        let image_len = nx.checked_mul(ny).ok_or_else(|| {
            Error::invalid(path, None, format!("images of {ny}×{nx} are too large to address"), "")
        })?;
        check_voxel(path, apix)?;
        Ok(MrcStackWriter { body: Body::create(path, dtype)?, ny: ny_i, nx: nx_i, image_len, apix, count: 0 })
    }

    /// Append one image (ny·nx values, x fastest).
    pub fn push(&mut self, image: &[f32]) -> Result<()> {
        if image.len() != self.image_len {
            return Err(self.length_error(image.len(), "one image"));
        }
        self.push_many(image)
    }

    /// Append several images stored back to back (a multiple of ny·nx values).
    pub fn push_many(&mut self, images: &[f32]) -> Result<()> {
        if !images.len().is_multiple_of(self.image_len) {
            return Err(self.length_error(images.len(), "a whole number of images"));
        }
        let n = images.len() / self.image_len;
        let total = self.count.checked_add(n).filter(|&t| i32::try_from(t).is_ok()).ok_or_else(|| {
            Error::invalid(
                self.body.out.path(),
                None,
                "an MRC stack holds at most 2147483647 images",
                "split the output into several stacks",
            )
        })?;
        self.body.push(images)?;
        self.count = total;
        Ok(())
    }

    fn length_error(&self, got: usize, what: &str) -> Error {
        Error::invalid(
            self.body.out.path(),
            Some(format!("image {}", self.count)),
            format!(
                "{got} values given, expected {what} of {}×{} = {} values",
                self.ny, self.nx, self.image_len
            ),
            "",
        )
    }

    /// Images pushed so far.
    pub fn len(&self) -> usize {
        self.count
    }

    /// Whether no image was pushed yet.
    pub fn is_empty(&self) -> bool {
        self.count == 0
    }

    /// Write the final header (nz = images pushed, real statistics) and move the file into place.
    ///
    /// Errors with [`Error::Invalid`] when no image was pushed: an MRC file cannot hold zero sections.
    pub fn finish(self) -> Result<()> {
        if self.count == 0 {
            return Err(Error::invalid(
                self.body.out.path(),
                None,
                "no images to write: an MRC stack needs at least one",
                "check that the particle selection is not empty",
            ));
        }
        // Checked against i32::MAX in push_many.
        let nz = self.count as i32;
        let cell = [self.nx as f32 * self.apix, self.ny as f32 * self.apix, self.apix];
        let header = new_header([self.nx, self.ny, nz], 1, cell, 0, self.body.dtype);
        self.body.finish(header)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::mrc::{read_volume, MrcStack};

    fn ramp(n: usize, seed: u32) -> Vec<f32> {
        // Deterministic, irregular values (a small LCG); exactly representable in f16 when scaled to 1/8.
        let mut s = seed;
        (0..n)
            .map(|_| {
                s = s.wrapping_mul(1_664_525).wrapping_add(1_013_904_223);
                ((s >> 20) as i32 - 2048) as f32 / 8.0
            })
            .collect()
    }

    fn reference_stats(v: &[f32]) -> (f32, f32, f64, f64) {
        let n = v.len() as f64;
        let mean = v.iter().map(|&x| f64::from(x)).sum::<f64>() / n;
        let var = v.iter().map(|&x| (f64::from(x) - mean).powi(2)).sum::<f64>() / n;
        let min = v.iter().copied().fold(f32::INFINITY, f32::min);
        let max = v.iter().copied().fold(f32::NEG_INFINITY, f32::max);
        (min, max, mean, var.sqrt())
    }

    #[test]
    fn volume_round_trips_in_f32_and_f16() {
        let dir = tempfile::tempdir().unwrap();
        let shape = [3, 4, 5];
        let data = ramp(60, 7);
        for dtype in [MrcDtype::F32, MrcDtype::F16] {
            let p = dir.path().join(format!("vol-{dtype:?}.mrc"));
            write_volume(&p, &data, shape, 1.5, [1.0, 2.0, 3.0], dtype).unwrap();
            let v = read_volume(&p).unwrap();
            assert_eq!(v.shape, shape);
            // Values k/8 with |k| ≤ 2048 are exact in f16 too.
            assert_eq!(v.data, data);
            assert_eq!(v.voxel_size, [1.5; 3]);
            assert_eq!(v.origin, [1.0, 2.0, 3.0]);
            let h = &v.header;
            assert_eq!(h.mode, dtype.mode().code());
            assert_eq!((h.ispg, h.nversion, h.mapc, h.mapr, h.maps), (1, 20140, 1, 2, 3));
            assert_eq!(h.machine_stamp, [0x44, 0x41, 0, 0]);
            assert!(h.has_map_id);
            assert_eq!(h.cell_lengths_a, [7.5, 6.0, 4.5]);
            let (min, max, mean, rms) = reference_stats(&data);
            assert_eq!((h.dmin, h.dmax), (min, max));
            assert!((f64::from(h.dmean) - mean).abs() < 1e-5 * rms);
            assert!((f64::from(h.rms) - rms).abs() < 1e-5 * rms);
            let expected_len = 1024 + 60 * dtype.mode().bytes_per_value() as u64;
            assert_eq!(std::fs::metadata(&p).unwrap().len(), expected_len);
        }
    }

    #[test]
    fn write_volume_checks_its_arguments() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("v.mrc");
        let e = write_volume(&p, &[0.0; 7], [2, 2, 2], 1.0, [0.0; 3], MrcDtype::F32).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }));
        let e = write_volume(&p, &[], [0, 2, 2], 1.0, [0.0; 3], MrcDtype::F32).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }));
        let e = write_volume(&p, &[0.0; 8], [2, 2, 2], f32::NAN, [0.0; 3], MrcDtype::F32).unwrap_err();
        assert!(matches!(e, Error::Invalid { .. }));
        assert!(!p.exists());
    }

    #[test]
    fn stack_writer_counts_streams_and_follows_the_relion_convention() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("s.mrcs");
        let (ny, nx) = (3, 4);
        let images = ramp(5 * ny * nx, 11);
        let mut w = MrcStackWriter::create(&p, ny, nx, 2.5, MrcDtype::F32).unwrap();
        w.push(&images[..12]).unwrap();
        w.push_many(&images[12..]).unwrap();
        assert!(matches!(w.push(&images[..5]), Err(Error::Invalid { .. })));
        assert!(matches!(w.push_many(&images[..13]), Err(Error::Invalid { .. })));
        assert_eq!(w.len(), 5);
        assert!(!p.exists(), "the stack appears only after finish");
        w.finish().unwrap();

        let s = MrcStack::open(&p).unwrap();
        assert_eq!((s.len(), s.image_shape()), (5, (ny, nx)));
        let h = s.header();
        assert_eq!((h.nz, h.mx, h.my, h.mz, h.ispg), (5, 4, 3, 1, 0));
        assert_eq!(h.cell_lengths_a, [10.0, 7.5, 2.5]);
        assert_eq!(h.voxel_size(), [2.5; 3]);
        assert_eq!(h.apix(), 2.5);
        let mut all = vec![0.0; images.len()];
        s.read_images_into(0, 5, &mut all).unwrap();
        assert_eq!(all, images);
        let (min, max, mean, rms) = reference_stats(&images);
        assert_eq!((h.dmin, h.dmax), (min, max));
        assert!((f64::from(h.dmean) - mean).abs() < 1e-5 * rms);
        assert!((f64::from(h.rms) - rms).abs() < 1e-5 * rms);
    }

    #[test]
    fn empty_or_abandoned_stacks_leave_no_file() {
        let dir = tempfile::tempdir().unwrap();
        let p = dir.path().join("empty.mrcs");
        let w = MrcStackWriter::create(&p, 2, 2, 1.0, MrcDtype::F16).unwrap();
        assert!(matches!(w.finish(), Err(Error::Invalid { .. })));
        let mut w = MrcStackWriter::create(&p, 2, 2, 1.0, MrcDtype::F16).unwrap();
        w.push(&[1.0; 4]).unwrap();
        drop(w);
        assert!(!p.exists());
        assert_eq!(std::fs::read_dir(dir.path()).unwrap().count(), 0, "temporary files are removed");
    }

    #[test]
    fn stats_merge_matches_one_pass() {
        let v = ramp(200_003, 3);
        let mut s = Stats::new();
        for chunk in v.chunks(977) {
            s.add(chunk);
        }
        let (min, max, mean, rms) = reference_stats(&v);
        assert_eq!((s.n, s.min, s.max), (v.len() as u64, min, max));
        assert!((s.mean - mean).abs() < 1e-9 * rms);
        assert!((s.rms() - rms).abs() < 1e-9 * rms);
    }
}
