//! Test-only readers for the golden `.npy`/`.npz` files in the shared data (plain little-endian f32/f64/i64,
//! C or Fortran order, returned in C order). Kept tiny on purpose; `drgnfly_io` owns the real numpy reader.

use std::io::Read;
use std::path::Path;

/// A numpy array as f64 with its shape.
pub struct NpyArray {
    pub shape: Vec<usize>,
    pub data: Vec<f64>,
}

/// Parses `.npy` bytes.
pub fn parse_npy(bytes: &[u8]) -> NpyArray {
    assert_eq!(&bytes[..6], b"\x93NUMPY", "not an .npy file");
    let (header_len, start) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        _ => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
    };
    let header = std::str::from_utf8(&bytes[start..start + header_len]).expect("ascii header");
    let fortran = header.contains("'fortran_order': True");
    let descr = header.split("'descr': '").nth(1).and_then(|s| s.split('\'').next()).expect("descr");
    let shape_txt = header.split("'shape': (").nth(1).and_then(|s| s.split(')').next()).expect("shape");
    let shape: Vec<usize> = shape_txt
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().expect("dim"))
        .collect();
    let body = &bytes[start + header_len..];
    let data: Vec<f64> = match descr {
        "<f4" => body.chunks_exact(4).map(|c| f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64).collect(),
        "<f8" => body.chunks_exact(8).map(|c| f64::from_le_bytes(c.try_into().expect("8 bytes"))).collect(),
        "<i8" => {
            body.chunks_exact(8).map(|c| i64::from_le_bytes(c.try_into().expect("8 bytes")) as f64).collect()
        }
        other => panic!("unsupported dtype {other}"),
    };
    assert_eq!(data.len(), shape.iter().product::<usize>().max(1), "data length vs shape {shape:?}");
    let data = if fortran { fortran_to_c(&data, &shape) } else { data };
    NpyArray { shape, data }
}

/// Reorders a Fortran-order (first index fastest) array to C order (last index fastest).
fn fortran_to_c(data: &[f64], shape: &[usize]) -> Vec<f64> {
    (0..data.len())
        .map(|c| {
            // Decompose the C-order flat index, then recompose with Fortran strides.
            let (mut rest, mut f, mut stride) = (c, 0, 1);
            let mut idx = vec![0; shape.len()];
            for (k, &n) in shape.iter().enumerate().rev() {
                idx[k] = rest % n;
                rest /= n;
            }
            for (k, &n) in shape.iter().enumerate() {
                f += idx[k] * stride;
                stride *= n;
            }
            data[f]
        })
        .collect()
}

/// Reads an `.npy` file.
pub fn read_npy(path: &Path) -> NpyArray {
    parse_npy(&std::fs::read(path).expect("read .npy"))
}

/// Reads member `name` (without `.npy`) of an `.npz` archive.
pub fn read_npz(path: &Path, name: &str) -> NpyArray {
    let file = std::fs::File::open(path).expect("open .npz");
    let mut zip = zip::ZipArchive::new(file).expect("zip archive");
    let mut member = zip.by_name(&format!("{name}.npy")).expect("npz member");
    let mut bytes = Vec::new();
    member.read_to_end(&mut bytes).expect("read member");
    parse_npy(&bytes)
}

/// Raw image `index` of an MRC stack.
pub fn read_mrc_image(path: &Path, index: usize) -> Vec<f32> {
    drgnfly_io::mrc::MrcStack::open(path).expect("open MRC").read_image(index).expect("read image")
}
