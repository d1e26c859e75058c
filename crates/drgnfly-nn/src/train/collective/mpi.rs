//! The MPI engine (rsmpi over the system's Open MPI or MPICH): `mpirun -np N drgnfly train-vae ...` or
//! `srun` under Slurm. Only the main thread calls MPI (the rayon and prefetch threads never do), so
//! MPI is initialised at `MPI_THREAD_FUNNELED`.

use std::cell::Cell;
use std::time::Instant;

use mpi::collective::SystemOperation;
use mpi::environment::Universe;
use mpi::topology::SimpleCommunicator;
use mpi::traits::{Communicator, CommunicatorCollectives, Equivalence};
use mpi::Threading;

use super::{Collective, Traffic};
use crate::train::error::TrainResult;

/// The processes of `MPI_COMM_WORLD`. Dropping it finalises MPI.
pub struct MpiWorld {
    world: SimpleCommunicator,
    traffic: Cell<Traffic>,
    // Declared last: finalises MPI after the communicator is gone.
    _universe: Universe,
}

impl std::fmt::Debug for MpiWorld {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "MpiWorld(rank {} of {})", self.rank(), self.size())
    }
}

impl MpiWorld {
    /// Initialise MPI, when this process was started by an MPI launcher (`mpirun`, `mpiexec`, `srun`):
    /// `None` otherwise, or when MPI was already initialised.
    pub fn from_launcher() -> Option<Self> {
        if !launched_by_mpi() {
            return None;
        }
        let (universe, _level) = mpi::initialize_with_threading(Threading::Funneled)?;
        let world = universe.world();
        Some(Self { world, traffic: Cell::default(), _universe: universe })
    }

    /// End every process of the run with `code` (after an error on one rank, the others would wait for
    /// it in the next exchange forever).
    pub fn abort(&self, code: i32) -> ! {
        self.world.abort(code)
    }
}

impl MpiWorld {
    /// MPI_Allreduce with MPI_SUM into `buf`, counted in the traffic. MPI's errors abort the run
    /// (MPI_ERRORS_ARE_FATAL), so there is nothing to return.
    fn sum_in_place<T: Equivalence + Clone>(&self, buf: &mut [T]) {
        let t0 = Instant::now();
        let send = buf.to_vec();
        self.world.all_reduce_into(&send[..], buf, SystemOperation::sum());
        let mut t = self.traffic.get();
        t.record(std::mem::size_of_val(buf), t0.elapsed().as_secs_f64());
        self.traffic.set(t);
    }
}

/// Whether a launcher's environment variables are set: Open MPI's, the PMI(x) ones of MPICH, Intel MPI
/// and Slurm's `srun --mpi=...`.
pub fn launched_by_mpi() -> bool {
    ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMIX_RANK", "PMI_RANK", "MPI_LOCALNRANKS"]
        .iter()
        .any(|k| std::env::var_os(k).is_some())
}

impl Collective for MpiWorld {
    fn rank(&self) -> usize {
        self.world.rank() as usize
    }

    fn size(&self) -> usize {
        self.world.size() as usize
    }

    fn all_reduce_sum(&self, buf: &mut [f32]) -> TrainResult<()> {
        self.sum_in_place(buf);
        Ok(())
    }

    fn all_reduce_sum_f64(&self, buf: &mut [f64]) -> TrainResult<()> {
        self.sum_in_place(buf);
        Ok(())
    }

    fn traffic(&self) -> Traffic {
        self.traffic.get()
    }
}
