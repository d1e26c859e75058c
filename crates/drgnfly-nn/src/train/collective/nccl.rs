//! The NCCL engine for processes that train on GPUs (feature `nccl`, with `cuda` and `mpi`): MPI starts the
//! processes, gives them their ranks and hands rank 0's NCCL id to the others; the all-reduces then run
//! over NCCL (NVLink within a node, InfiniBand/RoCE with GPUDirect across nodes). Each process uses GPU
//! `local rank % GPUs on the node`.
//!
//! The buffers are the host buffers of [`Collective`] (gradients are gathered to the host by
//! [`super::reduce_gradients`] whichever engine runs): each exchange copies to the GPU, all-reduces there
//! and copies back. Reducing candle's device tensors in place would save both copies; it is not done yet.

use std::cell::Cell;
use std::sync::Arc;
use std::time::Instant;

use cudarc::driver::{CudaContext, CudaStream};
use cudarc::nccl::safe::{Comm, Id, ReduceOp};
use cudarc::nccl::NcclType;

use super::mpi::MpiWorld;
use super::{Collective, Traffic};
use crate::train::error::{TrainError, TrainResult};

/// The processes of an MPI run, exchanging over NCCL on one GPU each.
pub struct NcclWorld {
    comm: Comm,
    stream: Arc<CudaStream>,
    traffic: Cell<Traffic>,
    // Declared last: MPI is finalised after NCCL's communicator is destroyed.
    mpi: MpiWorld,
}

impl std::fmt::Debug for NcclWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "NcclWorld(rank {} of {}, GPU {})", self.rank(), self.size(), self.comm.ordinal())
    }
}

impl NcclWorld {
    /// Set up NCCL over the processes of `mpi` (every process calls this together), or say why not (no
    /// GPU, no NCCL library): the caller then falls back to MPI.
    pub fn over(mpi: MpiWorld) -> Result<Self, (MpiWorld, String)> {
        match setup(&mpi) {
            Ok((comm, stream)) => Ok(Self { comm, stream, traffic: Cell::default(), mpi }),
            Err(why) => Err((mpi, why)),
        }
    }

    /// End every process of the run ([`MpiWorld::abort`]).
    pub fn abort(&self, code: i32) -> ! {
        self.mpi.abort(code)
    }

    fn all_reduce<T: NcclType + cudarc::driver::DeviceRepr + Copy>(&self, buf: &mut [T]) -> TrainResult<()> {
        let (t0, n) = (Instant::now(), buf.len());
        let failed = |what: &str, e: &dyn std::fmt::Debug| TrainError::Parallel {
            message: format!("NCCL all-reduce of {n} numbers failed ({what}): {e:?}"),
        };
        let mut device = self.stream.clone_htod(&*buf).map_err(|e| failed("copy to the GPU", &e))?;
        self.comm.all_reduce_in_place(&mut device, &ReduceOp::Sum).map_err(|e| failed("all-reduce", &e))?;
        self.stream.memcpy_dtoh(&device, buf).map_err(|e| failed("copy from the GPU", &e))?;
        self.stream.synchronize().map_err(|e| failed("synchronize", &e))?;
        let mut t = self.traffic.get();
        t.record(std::mem::size_of_val(buf), t0.elapsed().as_secs_f64());
        self.traffic.set(t);
        Ok(())
    }
}

/// The GPU of this process and NCCL's communicator over all processes. Every process reaches the same
/// collective calls whatever happens locally (a failure is announced to all), so none waits forever.
fn setup(mpi: &MpiWorld) -> Result<(Comm, Arc<CudaStream>), String> {
    let gpus = CudaContext::device_count().map_err(|e| format!("no CUDA driver: {e}"));
    let local = local_rank().unwrap_or(mpi.rank());
    let stream = gpus.and_then(|n| {
        if n < 1 {
            return Err("no GPU".to_string());
        }
        let ctx =
            CudaContext::new(local % n as usize).map_err(|e| format!("GPU {}: {e}", local % n as usize))?;
        Ok(ctx.default_stream())
    });
    // Rank 0 makes the id; everyone learns whether every process has a GPU and the id.
    let id = match (&stream, mpi.rank()) {
        (Ok(_), 0) => Id::new().map_err(|e| format!("NCCL (libnccl): {e:?}")),
        _ => Ok(Id::uninit([0; 128])),
    };
    let ok = stream.is_ok() && id.is_ok();
    let mut agreed = [if ok { 0.0 } else { 1.0 }];
    mpi.all_reduce_sum_f64(&mut agreed).map_err(|e| e.to_string())?;
    if agreed[0] > 0.0 {
        return Err(match (stream, id) {
            (Err(e), _) | (_, Err(e)) => e,
            _ => "another process has no GPU or no NCCL".into(),
        });
    }
    let (stream, id) = (stream?, id?);
    // The id's 128 bytes, broadcast as a sum (the others contribute zeros).
    let mut bytes: Vec<f64> =
        id.internal().iter().map(|&c| if mpi.rank() == 0 { f64::from(c as u8) } else { 0.0 }).collect();
    mpi.all_reduce_sum_f64(&mut bytes).map_err(|e| e.to_string())?;
    let mut internal = [0 as std::ffi::c_char; 128];
    for (o, &b) in internal.iter_mut().zip(&bytes) {
        *o = b as u8 as std::ffi::c_char;
    }
    let comm = Comm::from_rank(stream.clone(), mpi.rank(), mpi.size(), Id::uninit(internal))
        .map_err(|e| format!("NCCL communicator: {e:?}"))?;
    Ok((comm, stream))
}

/// This process's rank among those on its node (Open MPI, MPICH/Intel MPI, Slurm).
fn local_rank() -> Option<usize> {
    ["OMPI_COMM_WORLD_LOCAL_RANK", "MPI_LOCALRANKID", "SLURM_LOCALID"]
        .iter()
        .find_map(|k| std::env::var(k).ok()?.parse().ok())
}

impl Collective for NcclWorld {
    fn rank(&self) -> usize {
        self.mpi.rank()
    }

    fn size(&self) -> usize {
        self.mpi.size()
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> TrainResult<()> {
        self.all_reduce(buf)
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> TrainResult<()> {
        self.all_reduce(buf)
    }

    fn traffic(&self) -> Traffic {
        self.traffic.get()
    }
}
