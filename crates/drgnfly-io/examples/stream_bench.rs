//! Streaming-read benchmark for `ParticleSource` (issue 2; numbers in BENCHMARKS.md).
//!
//! Usage: stream_bench <dir> <n_images> <box> [--no-write]
//!
//! Writes (unless --no-write) a float32 stack of n random images, evicts it from the page cache
//! (posix_fadvise DONTNEED) before each pass, and reports images/s and MB/s for: an ordered stream, a
//! chunk-shuffled stream, and random batches (64 images at uniformly random positions). Prints the peak
//! resident memory split into anonymous (heap) and file-backed (mapped stack pages) parts.

use std::os::fd::AsRawFd;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Instant;

use drgnfly_io::mrc::{MrcDtype, MrcStackWriter};
use drgnfly_io::source::{ParticleSource, SourceOptions, StreamOptions};
use rand::{Rng, SeedableRng};

fn main() {
    let args: Vec<String> = std::env::args().collect();
    if args.len() < 4 {
        eprintln!("usage: stream_bench <dir> <n_images> <box> [--no-write]");
        std::process::exit(2);
    }
    let dir = PathBuf::from(&args[1]);
    let n: usize = args[2].parse().expect("n_images");
    let d: usize = args[3].parse().expect("box");
    let path = dir.join(format!("bench_{n}x{d}.mrcs"));
    if !args.iter().any(|a| a == "--no-write") {
        let t = Instant::now();
        write_stack(&path, n, d);
        let gb = (n * d * d * 4) as f64 / 1e9;
        eprintln!("wrote {} ({gb:.2} GB) in {:.1}s", path.display(), t.elapsed().as_secs_f64());
    }
    let src = Arc::new(ParticleSource::open(&path, &SourceOptions::default()).expect("open"));
    let mb_per_image = (d * d * 4) as f64 / 1e6;
    println!("| pass | images | seconds | images/s | MB/s | peak RSS so far | mapped file pages now |");
    println!("|---|---|---|---|---|---|---|");

    evict(&path);
    let t = Instant::now();
    let mut count = 0;
    for b in src.stream(&StreamOptions::ordered(64, d)) {
        count += touch(&b.expect("batch").images);
    }
    report("sequential stream (cold cache)", count, t, mb_per_image);

    evict(&path);
    let t = Instant::now();
    let mut count = 0;
    for b in src.stream(&StreamOptions::shuffled(64, d, 1)) {
        count += touch(&b.expect("batch").images);
    }
    report("chunk-shuffled stream (cold cache)", count, t, mb_per_image);

    evict(&path);
    let t = Instant::now();
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(3);
    let n_random = n.min(20_000);
    let mut buf = vec![0.0f32; 64 * d * d];
    let mut count = 0;
    while count < n_random {
        let pos: Vec<usize> = (0..64).map(|_| rng.random_range(0..n)).collect();
        src.read_many_into(&pos, &mut buf).expect("read");
        src.release(&pos);
        count += touch(&buf) / (d * d);
    }
    report("random batches of 64 (cold cache)", count * d * d, t, mb_per_image);
}

/// Images in `images`, reading every value so the work is not optimised away.
fn touch(images: &[f32]) -> usize {
    let s: f32 = images.iter().step_by(97).sum();
    std::hint::black_box(s);
    images.len()
}

fn report(label: &str, values: usize, t: Instant, mb_per_image: f64) {
    let secs = t.elapsed().as_secs_f64();
    let images = values as f64 / (mb_per_image * 1e6 / 4.0);
    let status = std::fs::read_to_string("/proc/self/status").unwrap_or_default();
    let field = |key: &str| {
        status.lines().find_map(|l| l.strip_prefix(key)).map(|v| v.trim_start_matches(':').trim().to_string())
    };
    println!(
        "| {label} | {images:.0} | {secs:.2} | {:.0} | {:.0} | {} | {} |",
        images / secs,
        images * mb_per_image / secs,
        field("VmHWM").unwrap_or_default(),
        field("RssFile").unwrap_or_default()
    );
}

fn write_stack(path: &Path, n: usize, d: usize) {
    let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(0);
    let mut w = MrcStackWriter::create(path, d, d, 1.0, MrcDtype::F32).expect("create");
    let mut img = vec![0.0f32; d * d];
    for _ in 0..n {
        for v in &mut img {
            *v = rng.random::<f32>() - 0.5;
        }
        w.push(&img).expect("push");
    }
    w.finish().expect("finish");
}

/// Drop the file's pages from the page cache so the next pass reads from disk.
fn evict(path: &Path) {
    let f = std::fs::File::open(path).expect("open for fadvise");
    // SAFETY: plain syscall on a valid descriptor.
    unsafe {
        libc::posix_fadvise(f.as_raw_fd(), 0, 0, libc::POSIX_FADV_DONTNEED);
    }
}
