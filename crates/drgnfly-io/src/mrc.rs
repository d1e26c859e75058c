//! MRC2014 maps and image stacks (`.mrc`, `.mrcs`, `.map`, also gzip/bzip2-compressed).
//!
//! - [`MrcHeader`]: all fields of the 1024-byte header; voxel size = cell / (mx, my, mz) in Å.
//! - [`MrcStack`]: a memory-mapped file viewed as `nz` images of `ny × nx`; images are read one at a time
//!   or as a contiguous range, never the whole file. `Send + Sync`.
//! - [`read_volume`]: a whole map as `f32`, `[z][y][x]` with x fastest after applying mapc/mapr/maps.
//! - [`write_volume`], [`MrcStackWriter`]: atomic little-endian output in f32 or f16.
//! - [`set_voxel_size`]: rewrite the cell lengths of an existing file in place (`add-psize`).
//!
//! Conventions: arrays are row-major with x fastest; lengths are Å, angles degrees. Modes 0 (int8, signed as
//! in MRC2014/mrcfile), 1 (int16), 2 (float32), 6 (uint16) and 12 (float16) are read in either byte order;
//! the data start at byte 1024 + nsymbt. See [`MrcHeader`] for the field table and [`ByteOrder`] for
//! how the byte order is found.
//!
//! ```no_run
//! use drgnfly_io::mrc::MrcStack;
//! let stack = MrcStack::open("particles.mrcs")?;
//! let (ny, nx) = stack.image_shape();
//! let mut batch = vec![0.0f32; 8 * ny * nx];
//! stack.read_images_into(0, 8, &mut batch)?;
//! # Ok::<(), drgnfly_io::Error>(())
//! ```

mod compressed;
mod edit;
mod header;
mod mode;
mod stack;
mod volume;
mod write;

#[cfg(test)]
mod golden;
#[cfg(test)]
mod test_util;

pub use edit::set_voxel_size;
pub use header::{read_header, ByteOrder, MrcHeader, HEADER_BYTES};
pub use mode::MrcMode;
pub use stack::{MrcStack, StackInfo};
pub use volume::{read_volume, MrcVolume};
pub use write::{write_volume, MrcDtype, MrcStackWriter};
