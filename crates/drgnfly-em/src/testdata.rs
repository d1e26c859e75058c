//! Test-only access to the golden `.npy`/`.npz`/MRC files in the shared data, through `drgnfly_io`'s
//! readers (numpy arrays come back in C order as f64).

use std::io::Read;
use std::path::Path;

/// A numpy array as f64 with its shape.
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

fn convert(array: drgnfly_io::npy::NpyArray) -> NpyArray {
    NpyArray { shape: array.shape().to_vec(), data: array.to_f64_vec().expect("numeric .npy") }
}

/// Reads an `.npy` file.
pub fn read_npy(path: &Path) -> NpyArray {
    convert(drgnfly_io::npy::NpyArray::open(path).expect("read .npy"))
}

/// Reads member `name` (without `.npy`) of an `.npz` archive.
pub fn read_npz(path: &Path, name: &str) -> NpyArray {
    let file = std::fs::File::open(path).expect("open .npz");
    let mut zip = zip::ZipArchive::new(file).expect("zip archive");
    let mut member = zip.by_name(&format!("{name}.npy")).expect("npz member");
    let mut bytes = Vec::new();
    member.read_to_end(&mut bytes).expect("read member");
    convert(
        drgnfly_io::npy::NpyArray::from_bytes(format!("{}:{name}", path.display()), bytes)
            .expect("parse member"),
    )
}

/// Raw image `index` of an MRC stack.
pub fn read_mrc_image(path: &Path, index: usize) -> Vec<f32> {
    drgnfly_io::mrc::MrcStack::open(path).expect("open MRC").read_image(index).expect("read image")
}
