//! The readers take paths: each input is written to a file (in /dev/shm when there is one) named with
//! the extension the reader expects.

use std::path::PathBuf;

pub fn as_file(data: &[u8], name: &str) -> PathBuf {
    let dir = if std::path::Path::new("/dev/shm").is_dir() {
        PathBuf::from("/dev/shm")
    } else {
        std::env::temp_dir()
    };
    let path = dir.join(format!("drgnfly-fuzz-{}-{name}", std::process::id()));
    std::fs::write(&path, data).expect("writing the fuzz input");
    path
}
