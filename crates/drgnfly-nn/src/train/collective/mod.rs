//! Data-parallel training: the collective engine under the driver, and how a batch is shared out.
//!
//! Every process ("rank") holds the whole model and the whole per-particle tables. The driver streams the
//! same chunk-shuffled batches on every rank and gives each rank a contiguous share of each batch
//! ([`drgnfly_io::source::share`]); a trainer computes the gradients of its share's mean loss, and [`Collective::all_reduce_sum`]
//! sums them, each weighted by its share of the batch, so every rank takes the same optimizer step, the
//! one a single process takes on the whole batch (up to float rounding). `-b` is the global batch: results
//! do not depend on the number of ranks. Per-image rows (pose-table gradients, poses found by a search,
//! latents of an encoding pass) are exchanged as the whole batch's rows, each rank filling its own and
//! zeros elsewhere ([`Share::gather_rows`]).
//!
//! The engine is MPI ([`MpiWorld`], feature `mpi`, launched by `mpirun` or `srun`), or NCCL between GPUs
//! (`NcclWorld`, feature `nccl`, started by MPI); [`SingleProcess`] is the engine of an ordinary run, where
//! every exchange is the identity.

use std::fmt::Debug;

use candle_core::backprop::GradStore;
use candle_core::{DType, Tensor, Var};
use drgnfly_io::source::Batch;

use super::error::{TrainError, TrainResult};
use crate::adam::Adam;

#[cfg(feature = "mpi")]
mod mpi;
#[cfg(feature = "nccl")]
mod nccl;
#[cfg(feature = "mpi")]
pub use mpi::MpiWorld;
#[cfg(feature = "nccl")]
pub use nccl::NcclWorld;

/// The processes of a data-parallel run and their one collective operation.
pub trait Collective: Debug {
    /// This process's rank, `0..size`.
    fn rank(&self) -> usize;

    /// The number of processes.
    fn size(&self) -> usize;

    /// Sum `buf` element-wise over all processes, in place; every process gets the sum. Every process
    /// must call it with a buffer of the same length, in the same order of calls.
    fn all_reduce_sum(&self, buf: &mut [f32]) -> TrainResult<()>;

    /// [`Collective::all_reduce_sum`] in double precision (loss sums, agreement checks).
    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> TrainResult<()>;

    /// What this process has exchanged so far (zero on one process).
    fn traffic(&self) -> Traffic {
        Traffic::default()
    }
}

/// A process's exchanges: how many, how many bytes it contributed, and the wall time spent in them
/// (waiting for slower ranks included).
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub struct Traffic {
    /// All-reduce calls.
    pub calls: u64,
    /// Bytes of this process's buffers.
    pub bytes: u64,
    /// Seconds inside the calls.
    pub seconds: f64,
}

impl Traffic {
    /// The exchanges between `earlier` and `self`.
    pub fn since(&self, earlier: &Traffic) -> Traffic {
        Traffic {
            calls: self.calls - earlier.calls,
            bytes: self.bytes - earlier.bytes,
            seconds: self.seconds - earlier.seconds,
        }
    }

    /// Count one call of `bytes` that took `seconds`.
    pub fn record(&mut self, bytes: usize, seconds: f64) {
        self.calls += 1;
        self.bytes += bytes as u64;
        self.seconds += seconds;
    }
}

/// One process: every exchange is the identity.
#[derive(Clone, Copy, Debug, Default)]
pub struct SingleProcess;

impl Collective for SingleProcess {
    fn rank(&self) -> usize {
        0
    }

    fn size(&self) -> usize {
        1
    }

    fn all_reduce_sum(&self, _buf: &mut [f32]) -> TrainResult<()> {
        Ok(())
    }

    fn all_reduce_sum_f64(&self, _buf: &mut [f64]) -> TrainResult<()> {
        Ok(())
    }
}

/// This process's share of a batch: the whole batch's positions, and where and how long its part is.
#[derive(Clone, Copy, Debug)]
pub struct Share<'a> {
    /// The processes training together.
    pub comm: &'a dyn Collective,
    /// The whole batch's positions, every process's share, in order.
    pub batch: &'a [usize],
    /// Where this process's part starts in `batch`.
    pub offset: usize,
    /// Its number of images (may be 0).
    pub len: usize,
}

impl<'a> Share<'a> {
    /// A whole batch on one process.
    pub fn whole(batch: &'a [usize]) -> Self {
        Share { comm: &SingleProcess, batch, offset: 0, len: batch.len() }
    }

    /// This process's share of a streamed batch.
    pub fn of(comm: &'a dyn Collective, batch: &'a Batch) -> Self {
        Share { comm, batch: &batch.batch, offset: batch.offset, len: batch.positions.len() }
    }

    /// This process's positions.
    pub fn positions(&self) -> &'a [usize] {
        &self.batch[self.offset..self.offset + self.len]
    }

    /// This process's fraction of the batch (1 on one process).
    pub fn weight(&self) -> f64 {
        self.len as f64 / self.batch.len().max(1) as f64
    }

    /// [`reduce_gradients`] for this share.
    pub fn reduce_gradients(&self, grads: &mut GradStore, vars: &[(String, Var)]) -> TrainResult<()> {
        reduce_gradients(self.comm, grads, vars, self.weight())
    }

    /// [`gather_rows`] for this share.
    pub fn gather_rows(&self, rows: &[f32], width: usize) -> TrainResult<Vec<f32>> {
        gather_rows(self.comm, rows, width, (self.offset, self.batch.len()))
    }

    /// The whole batch's per-image gradient rows (of the batch's mean loss) from this share's (of its own
    /// mean loss): weighted by the share and gathered. The identity on one process.
    pub fn gather_gradient_rows(&self, mut rows: Vec<f32>, width: usize) -> TrainResult<Vec<f32>> {
        if self.comm.size() == 1 {
            return Ok(rows);
        }
        let w = self.weight() as f32;
        rows.iter_mut().for_each(|g| *g *= w);
        self.gather_rows(&rows, width)
    }

    /// One Adam step of `vars` with this share's gradients (`None`: an empty share, which still takes the
    /// batch's step with the others) summed over the processes; returns the gradients stepped with.
    pub fn adam_step(
        &self,
        adam: &mut Adam,
        vars: &[(String, Var)],
        grads: Option<GradStore>,
    ) -> TrainResult<GradStore> {
        let mut grads = match grads {
            Some(g) => g,
            None => no_gradients()?,
        };
        crate::phases::time(crate::phases::Phase::Optimizer, || {
            self.reduce_gradients(&mut grads, vars)?;
            adam.step(&grads)?;
            Ok(grads)
        })
    }
}

/// Replace the gradients of `vars` in `grads` by the gradients of the whole batch's mean loss: each
/// rank's gradients (of its share's mean loss) weighted by `weight` (its share of the batch) and summed
/// over ranks. A variable keeps "no gradient" only when no rank has one (so Adam skips it, as a single
/// process would). Other entries of `grads` (pose-table variables, say) are left as they are. The
/// identity on one process.
pub fn reduce_gradients(
    comm: &dyn Collective,
    grads: &mut GradStore,
    vars: &[(String, Var)],
    weight: f64,
) -> TrainResult<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    // Layout: per variable, a presence flag then its elements.
    let total: usize = vars.iter().map(|(_, v)| v.as_tensor().elem_count() + 1).sum();
    let mut buf = Vec::with_capacity(total);
    for (_, var) in vars {
        let count = var.as_tensor().elem_count();
        match grads.get(var.as_tensor()) {
            Some(g) => {
                buf.push(1.0);
                let g = (g.to_dtype(DType::F32)? * weight)?;
                buf.extend(g.flatten_all()?.to_vec1::<f32>()?);
            }
            None => buf.extend(std::iter::repeat_n(0.0, count + 1)),
        }
    }
    comm.all_reduce_sum(&mut buf)?;
    let mut at = 0;
    for (_, var) in vars {
        let t = var.as_tensor();
        let count = t.elem_count();
        let (present, values) = (buf[at], &buf[at + 1..at + 1 + count]);
        at += count + 1;
        if present > 0.0 {
            let g = Tensor::from_slice(values, t.shape(), t.device())?.to_dtype(t.dtype())?;
            grads.insert(t, g);
        } else {
            grads.remove(t);
        }
    }
    Ok(())
}

/// An empty gradient store: the step of a process whose share of a batch is empty.
fn no_gradients() -> TrainResult<GradStore> {
    Ok(Tensor::zeros((), DType::F32, &candle_core::Device::Cpu)?.backward()?)
}

/// The rows (`width` numbers each) of a whole batch of `len` images from this rank's rows, which start
/// at image `offset`: every rank gets every row. The identity on one process.
pub fn gather_rows(
    comm: &dyn Collective,
    rows: &[f32],
    width: usize,
    (offset, len): (usize, usize),
) -> TrainResult<Vec<f32>> {
    if comm.size() == 1 {
        return Ok(rows.to_vec());
    }
    let start = offset * width;
    if start + rows.len() > len * width {
        return Err(parallel(format!(
            "rows {offset}.. ({} of width {width}) do not fit a batch of {len}",
            rows.len() / width.max(1)
        )));
    }
    let mut buf = vec![0.0; len * width];
    buf[start..start + rows.len()].copy_from_slice(rows);
    comm.all_reduce_sum(&mut buf)?;
    Ok(buf)
}

/// Check that every rank holds the same `values` (dataset size, batch size, epochs, the epoch resumed
/// from, …; integers below 2⁵³), naming the first that differs: ranks that disagree would wait on each
/// other forever. Every rank compares its values with rank 0's, then all learn whether any differed.
pub fn check_agreement(comm: &dyn Collective, values: &[(&str, f64)]) -> TrainResult<()> {
    if comm.size() == 1 {
        return Ok(());
    }
    let mut root: Vec<f64> = values.iter().map(|&(_, v)| if comm.rank() == 0 { v } else { 0.0 }).collect();
    comm.all_reduce_sum_f64(&mut root)?;
    let mut differ: Vec<f64> =
        values.iter().zip(&root).map(|(&(_, v), &r)| f64::from(u8::from(v != r))).collect();
    comm.all_reduce_sum_f64(&mut differ)?;
    match values.iter().zip(&root).zip(&differ).find(|(_, &d)| d > 0.0) {
        None => Ok(()),
        Some(((&(name, v), &r), &d)) => Err(parallel(format!(
            "the processes disagree on the {name} ({d} of {} differ from rank 0's {r}; rank {} has {v}); start \
             every rank with the same arguments and input files (a shared file system, or identical copies)",
            comm.size(),
            comm.rank()
        ))),
    }
}

fn parallel(message: String) -> TrainError {
    TrainError::Parallel { message }
}

#[cfg(test)]
mod equivalence;

#[cfg(test)]
pub(crate) mod tests {
    //! An in-process engine for tests: ranks are threads, and the sum is taken in rank order, as MPI's
    //! reduction of a few ranks does.

    use std::ops::Range;
    use std::sync::{Arc, Barrier, Mutex};

    use drgnfly_io::source::share;

    use super::*;

    #[derive(Debug)]
    struct Shared {
        barrier: Barrier,
        slots: Mutex<Vec<Vec<f64>>>,
    }

    /// One rank of a group of threads.
    #[derive(Debug, Clone)]
    pub(crate) struct ThreadRank {
        rank: usize,
        size: usize,
        shared: Arc<Shared>,
    }

    impl ThreadRank {
        /// `size` ranks sharing one engine.
        pub(crate) fn group(size: usize) -> Vec<ThreadRank> {
            let shared =
                Arc::new(Shared { barrier: Barrier::new(size), slots: Mutex::new(vec![Vec::new(); size]) });
            (0..size).map(|rank| ThreadRank { rank, size, shared: shared.clone() }).collect()
        }

        /// Every rank's `values`, in rank order.
        fn exchange(&self, values: Vec<f64>) -> Vec<Vec<f64>> {
            self.shared.slots.lock().unwrap()[self.rank] = values;
            self.shared.barrier.wait();
            let all = self.shared.slots.lock().unwrap().clone();
            self.shared.barrier.wait();
            all
        }
    }

    impl Collective for ThreadRank {
        fn rank(&self) -> usize {
            self.rank
        }

        fn size(&self) -> usize {
            self.size
        }

        fn all_reduce_sum(&self, buf: &mut [f32]) -> TrainResult<()> {
            // Sums of f32 in f32, as MPI_SUM on MPI_FLOAT.
            let parts = self.exchange(buf.iter().map(|&v| f64::from(v)).collect());
            for (i, b) in buf.iter_mut().enumerate() {
                *b = parts.iter().fold(0.0f32, |acc, p| acc + p[i] as f32);
            }
            Ok(())
        }

        fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> TrainResult<()> {
            let parts = self.exchange(buf.to_vec());
            for (i, b) in buf.iter_mut().enumerate() {
                *b = parts.iter().fold(0.0, |acc, p| acc + p[i]);
            }
            Ok(())
        }
    }

    #[test]
    fn shares_cover_the_batch_in_order() {
        for (len, size) in [(10, 3), (2, 4), (0, 2), (7, 1)] {
            let parts: Vec<Range<usize>> = (0..size).map(|r| share(len, r, size)).collect();
            assert_eq!(parts[0].start, 0);
            assert_eq!(parts[size - 1].end, len);
            assert!(parts.windows(2).all(|w| w[0].end == w[1].start));
            assert!(parts.iter().all(|p| p.len() <= len.div_ceil(size)));
        }
    }

    #[test]
    fn gathered_rows_and_disagreement() {
        let ranks = ThreadRank::group(3);
        let handles: Vec<_> = ranks
            .into_iter()
            .map(|c| {
                std::thread::spawn(move || {
                    let r = c.rank();
                    let part = share(5, r, 3);
                    let rows: Vec<f32> = part.clone().flat_map(|i| [i as f32, -(i as f32)]).collect();
                    let all = gather_rows(&c, &rows, 2, (part.start, 5)).unwrap();
                    let same = check_agreement(&c, &[("batch size", 8.0)]);
                    let differ = check_agreement(&c, &[("epoch", if r == 2 { 3.0 } else { 2.0 })]);
                    // One particle more on one rank, among a million.
                    let n = if r == 1 { 1_000_001.0 } else { 1_000_000.0 };
                    let large = check_agreement(&c, &[("batch size", 8.0), ("number of particles", n)]);
                    (all, same.is_ok(), differ.map_err(|e| e.to_string()), large.map_err(|e| e.to_string()))
                })
            })
            .collect();
        for h in handles {
            let (all, same, differ, large) = h.join().unwrap();
            assert_eq!(all, [0.0, -0.0, 1.0, -1.0, 2.0, -2.0, 3.0, -3.0, 4.0, -4.0]);
            assert!(same);
            assert!(differ.unwrap_err().contains("disagree on the epoch (1 of 3 differ from rank 0's 2"));
            assert!(large.unwrap_err().contains("disagree on the number of particles"));
        }
    }
}
