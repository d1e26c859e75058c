//! Streaming batches from a [`ParticleSource`] with read-ahead on a background thread.
//!
//! Chunk shuffling (as cryoDRGN's data shuffler, but compatible with `--ind`): the dataset positions are cut
//! into chunks of consecutive positions; each epoch visits the chunks in a random order and shuffles the
//! images inside a chunk. Reads are then long sequential runs on disk, which is what makes streaming from a
//! memory-mapped stack nearly as fast as holding it in RAM, while batches still mix particles from distant
//! parts of the dataset (a chunk is thousands of images).

use std::sync::Arc;
use std::thread::JoinHandle;

use crossbeam_channel::{bounded, Receiver};
use rand::seq::SliceRandom;
use rand::SeedableRng;

use crate::error::Result;
use crate::source::ParticleSource;

/// How to stream a dataset.
#[derive(Clone, Debug)]
pub struct StreamOptions {
    /// Images per batch.
    pub batch_size: usize,
    /// Consecutive positions read together (and shuffled together).
    pub chunk_size: usize,
    /// Shuffle with this seed; `None` streams in dataset order.
    pub shuffle_seed: Option<u64>,
    /// Chunks read ahead of the consumer.
    pub prefetch_chunks: usize,
}

impl StreamOptions {
    /// Ordered streaming in batches of `batch_size`, with chunks of about 128 MiB.
    pub fn ordered(batch_size: usize, box_size: usize) -> Self {
        Self {
            batch_size,
            chunk_size: default_chunk(box_size, batch_size),
            shuffle_seed: None,
            prefetch_chunks: 2,
        }
    }

    /// Chunk-shuffled streaming (one epoch) with `seed`.
    pub fn shuffled(batch_size: usize, box_size: usize, seed: u64) -> Self {
        Self { shuffle_seed: Some(seed), ..Self::ordered(batch_size, box_size) }
    }
}

/// About 128 MiB of images per chunk, a whole number of batches, at least one batch.
fn default_chunk(box_size: usize, batch_size: usize) -> usize {
    let per_image = (box_size * box_size * 4).max(1);
    let batch = batch_size.max(1);
    let images = (128usize << 20) / per_image;
    (images / batch).max(1) * batch
}

/// A batch of images and the dataset positions they came from.
#[derive(Debug)]
pub struct Batch {
    /// Dataset positions (after `--ind`), one per image.
    pub positions: Vec<usize>,
    /// Images, positions.len() × D × D, row-major, x fastest.
    pub images: Vec<f32>,
}

/// An iterator over the batches of one pass through the dataset.
pub struct BatchStream {
    rx: Option<Receiver<Result<Batch>>>,
    worker: Option<JoinHandle<()>>,
    n_batches: usize,
}

impl BatchStream {
    pub(crate) fn start(source: Arc<ParticleSource>, opts: &StreamOptions) -> Self {
        let n = source.len();
        let batch = opts.batch_size.max(1);
        let chunk = opts.chunk_size.max(1);
        let n_batches = n.div_ceil(batch);
        // The channel holds batches; bound it to `prefetch_chunks` chunks worth of them.
        let capacity = (opts.prefetch_chunks.max(1) * chunk).div_ceil(batch).max(1);
        let (tx, rx) = bounded(capacity);
        let seed = opts.shuffle_seed;
        let worker = std::thread::spawn(move || {
            let d2 = source.box_size() * source.box_size();
            let mut chunks: Vec<(usize, usize)> =
                (0..n).step_by(chunk).map(|s| (s, (s + chunk).min(n))).collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.unwrap_or(0));
            if seed.is_some() {
                chunks.shuffle(&mut rng);
            }
            let mut pending =
                Batch { positions: Vec::with_capacity(batch), images: Vec::with_capacity(batch * d2) };
            let mut buf = Vec::new();
            for (start, end) in chunks {
                let positions: Vec<usize> = (start..end).collect();
                buf.resize(positions.len() * d2, 0.0);
                if let Err(e) = source.read_many_into(&positions, &mut buf) {
                    let _ = tx.send(Err(e));
                    return;
                }
                source.release(&positions);
                let mut order: Vec<usize> = (0..positions.len()).collect();
                if seed.is_some() {
                    order.shuffle(&mut rng);
                }
                for k in order {
                    pending.positions.push(positions[k]);
                    pending.images.extend_from_slice(&buf[k * d2..(k + 1) * d2]);
                    if pending.positions.len() == batch {
                        let full = std::mem::replace(
                            &mut pending,
                            Batch {
                                positions: Vec::with_capacity(batch),
                                images: Vec::with_capacity(batch * d2),
                            },
                        );
                        if tx.send(Ok(full)).is_err() {
                            return; // The consumer stopped early.
                        }
                    }
                }
            }
            if !pending.positions.is_empty() {
                let _ = tx.send(Ok(pending));
            }
        });
        Self { rx: Some(rx), worker: Some(worker), n_batches }
    }

    /// Number of batches this pass yields.
    pub fn n_batches(&self) -> usize {
        self.n_batches
    }
}

impl Iterator for BatchStream {
    type Item = Result<Batch>;

    fn next(&mut self) -> Option<Self::Item> {
        self.rx.as_ref()?.recv().ok()
    }
}

impl Drop for BatchStream {
    fn drop(&mut self) {
        // Closing the channel makes the worker's next send fail, so it exits promptly.
        self.rx = None;
        if let Some(w) = self.worker.take() {
            let _ = w.join();
        }
    }
}
