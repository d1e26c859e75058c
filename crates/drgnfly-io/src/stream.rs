//! Streaming batches from a [`ParticleSource`] with read-ahead on a background thread.
//!
//! Chunk shuffling (as cryoDRGN's data shuffler, but compatible with `--ind`): the dataset positions are cut
//! into chunks of consecutive positions; each epoch visits the chunks in a random order and shuffles the
//! images inside a chunk. Reads are then long sequential runs on disk, which is what makes streaming from a
//! memory-mapped stack nearly as fast as holding it in RAM, while batches still mix particles from distant
//! parts of the dataset (a chunk is thousands of images).
//!
//! Sharded streaming (data-parallel training): every process streams the same batches (same seed), and
//! reads only its contiguous share of each one ([`StreamOptions::shard`]); [`Batch::batch`] keeps the
//! whole batch's positions.

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
    /// `(rank, ranks)`: read only share `rank` of `ranks` of each batch (`(0, 1)`: all of it).
    pub shard: (usize, usize),
}

impl StreamOptions {
    /// Ordered streaming in batches of `batch_size`, with chunks of about 128 MiB.
    pub fn ordered(batch_size: usize, box_size: usize) -> Self {
        Self {
            batch_size,
            chunk_size: default_chunk(box_size, batch_size),
            shuffle_seed: None,
            prefetch_chunks: 2,
            shard: (0, 1),
        }
    }

    /// The same stream, reading only share `rank` of `ranks` of each batch.
    pub fn sharded(self, rank: usize, ranks: usize) -> Self {
        Self { shard: (rank, ranks.max(1)), ..self }
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
#[derive(Debug, Default)]
pub struct Batch {
    /// Dataset positions (after `--ind`), one per image (this process's share of the batch).
    pub positions: Vec<usize>,
    /// Images, positions.len() × D × D, row-major, x fastest.
    pub images: Vec<f32>,
    /// The whole batch's positions (all processes' shares, in order); equal to `positions` unsharded.
    pub batch: Vec<usize>,
    /// Where `positions` starts in `batch`.
    pub offset: usize,
}

/// Which of a pass's `n` images, batched by `batch`, are share `rank` of `ranks`.
struct Sharding {
    n: usize,
    batch: usize,
    rank: usize,
    ranks: usize,
}

impl Sharding {
    /// Whether the pass's `g`-th image is in this share of its batch.
    fn is_local(&self, g: usize) -> bool {
        let first = g / self.batch * self.batch;
        share(self.batch.min(self.n - first), self.rank, self.ranks).contains(&(g - first))
    }
}

/// Share `rank` of `ranks` of `len` items: contiguous, in rank order, sizes differing by at most one (empty
/// when `len < ranks`).
pub fn share(len: usize, rank: usize, ranks: usize) -> std::ops::Range<usize> {
    let ranks = ranks.max(1);
    (len * rank / ranks)..(len * (rank + 1) / ranks)
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
        let shard = (opts.shard.0, opts.shard.1.max(1));
        let worker = std::thread::spawn(move || {
            let d2 = source.box_size() * source.box_size();
            let mut chunks: Vec<(usize, usize)> =
                (0..n).step_by(chunk).map(|s| (s, (s + chunk).min(n))).collect();
            let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed.unwrap_or(0));
            if seed.is_some() {
                chunks.shuffle(&mut rng);
            }
            let sharding = Sharding { n, batch, rank: shard.0, ranks: shard.1 };
            let mut pending = Batch::default();
            let mut seen = 0; // images of the pass before this chunk
            let mut buf = Vec::new();
            for (start, end) in chunks {
                let positions: Vec<usize> = (start..end).collect();
                let mut order: Vec<usize> = (0..positions.len()).collect();
                if seed.is_some() {
                    order.shuffle(&mut rng);
                }
                // This process's images of the chunk, read in file order; `slot[k]`: where image k is in buf.
                let mut local = vec![false; positions.len()];
                for (j, &k) in order.iter().enumerate() {
                    local[k] = sharding.is_local(seen + j);
                }
                let wanted: Vec<usize> = (0..positions.len()).filter(|&k| local[k]).collect();
                let mut slot = vec![0; positions.len()];
                for (j, &k) in wanted.iter().enumerate() {
                    slot[k] = j;
                }
                let wanted_positions: Vec<usize> = wanted.iter().map(|&k| positions[k]).collect();
                buf.resize(wanted.len() * d2, 0.0);
                if let Err(e) = source.read_many_into(&wanted_positions, &mut buf) {
                    let _ = tx.send(Err(e));
                    return;
                }
                source.release(&positions);
                seen += positions.len();
                for k in order {
                    pending.batch.push(positions[k]);
                    if local[k] {
                        let j = slot[k];
                        pending.positions.push(positions[k]);
                        pending.images.extend_from_slice(&buf[j * d2..(j + 1) * d2]);
                    }
                    if pending.batch.len() == batch {
                        let mut full = std::mem::take(&mut pending);
                        full.offset = share(full.batch.len(), shard.0, shard.1).start;
                        if tx.send(Ok(full)).is_err() {
                            return; // The consumer stopped early.
                        }
                    }
                }
            }
            if !pending.batch.is_empty() {
                pending.offset = share(pending.batch.len(), shard.0, shard.1).start;
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
