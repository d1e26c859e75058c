//! The processes of a data-parallel run, as the binary sees them: `mpirun -np N drgnfly train-vae ...`
//! (or `srun`) with a build that has the `mpi` feature. Every rank runs the same command; the training
//! driver shares each batch out and exchanges gradients (`drgnfly_nn::train::Collective`). Only rank 0
//! writes files, logs and draws progress; an error on any rank ends every rank (MPI_Abort), since the
//! others would otherwise wait for it forever. Without a launcher the run is one ordinary process.

use std::cell::RefCell;
use std::rc::Rc;

use drgnfly_nn::train::{Collective, SingleProcess};

/// The engine, as the binary needs it beyond the driver's trait: to end every process.
#[cfg(feature = "mpi")]
enum Engine {
    Mpi(Rc<drgnfly_nn::train::MpiWorld>),
    #[cfg(feature = "nccl")]
    Nccl(Rc<drgnfly_nn::train::NcclWorld>),
}

thread_local! {
    static WORLD: RefCell<Option<Rc<dyn Collective>>> = const { RefCell::new(None) };
    #[cfg(feature = "mpi")]
    static ENGINE: RefCell<Option<Engine>> = const { RefCell::new(None) };
    static NAME: RefCell<&'static str> = const { RefCell::new("one process") };
}

/// Join the run's processes, if an MPI launcher started this one. Call once, first thing in `main`. A build
/// with `nccl` exchanges over NCCL when every process has a GPU and libnccl, else over MPI (with a note).
pub fn join() -> anyhow::Result<()> {
    #[cfg(feature = "mpi")]
    if let Some(world) = drgnfly_nn::train::MpiWorld::from_launcher() {
        #[cfg(feature = "nccl")]
        let world = match drgnfly_nn::train::NcclWorld::over(world) {
            Ok(nccl) => {
                let nccl = Rc::new(nccl);
                ENGINE.with(|e| *e.borrow_mut() = Some(Engine::Nccl(nccl.clone())));
                WORLD.with(|w| *w.borrow_mut() = Some(nccl));
                NAME.with(|n| *n.borrow_mut() = "NCCL");
                return Ok(());
            }
            Err((mpi, why)) => {
                if drgnfly_nn::train::Collective::rank(&mpi) == 0 {
                    tracing::warn!("NCCL is not usable ({why}): the processes exchange over MPI");
                }
                mpi
            }
        };
        let world = Rc::new(world);
        ENGINE.with(|e| *e.borrow_mut() = Some(Engine::Mpi(world.clone())));
        WORLD.with(|w| *w.borrow_mut() = Some(world));
        NAME.with(|n| *n.borrow_mut() = "MPI");
        return Ok(());
    }
    let launched = ["OMPI_COMM_WORLD_SIZE", "PMI_SIZE"]
        .iter()
        .filter_map(|k| std::env::var(k).ok()?.parse::<usize>().ok())
        .max()
        .unwrap_or(1);
    if launched > 1 && !cfg!(feature = "mpi") {
        anyhow::bail!(
            "started by an MPI launcher as one of {launched} processes, but this drgnfly was built without MPI, \
             so every process would train alone on the same files; build it with `cargo build --release \
             --features mpi` (README, \"Running on a cluster\"), or run it without mpirun"
        );
    }
    Ok(())
}

/// The engine the training driver exchanges through ([`SingleProcess`] outside MPI).
pub fn comm() -> Rc<dyn Collective> {
    WORLD.with(|w| w.borrow().clone()).unwrap_or_else(|| Rc::new(SingleProcess))
}

/// This process's rank (0 outside MPI).
pub fn rank() -> usize {
    WORLD.with(|w| w.borrow().as_ref().map_or(0, |c| c.rank()))
}

/// The number of processes (1 outside MPI).
pub fn size() -> usize {
    WORLD.with(|w| w.borrow().as_ref().map_or(1, |c| c.size()))
}

/// What the processes exchange over: "MPI", "NCCL" or "one process".
pub fn engine() -> &'static str {
    NAME.with(|n| *n.borrow())
}

/// Whether this process writes files and talks to the user.
pub fn is_root() -> bool {
    rank() == 0
}

/// Rank 0's `value` on every process (below 2⁵³).
pub fn from_root(value: u64) -> anyhow::Result<u64> {
    let comm = comm();
    let mut buf = [if comm.rank() == 0 { value as f64 } else { 0.0 }];
    comm.all_reduce_sum_f64(&mut buf)?;
    Ok(buf[0] as u64)
}

/// Refuse a command that does not run across processes.
pub fn single_process_only(command: &str) -> anyhow::Result<()> {
    if size() > 1 {
        anyhow::bail!(
            "{command} runs on one process; of drgnfly's commands, train-vae, train-nn and the ab initio \
             commands abinit-homo, abinit-het and abinit train across processes: start {command} without mpirun/srun"
        );
    }
    Ok(())
}

/// Leave the run: finalise MPI after success; after a failure with more than one process, end them all.
pub fn leave(failed: bool, code: i32) {
    WORLD.with(|w| w.borrow_mut().take());
    #[cfg(feature = "mpi")]
    if let Some(engine) = ENGINE.with(|e| e.borrow_mut().take()) {
        if failed && size_of(&engine) > 1 {
            match &engine {
                Engine::Mpi(w) => w.abort(code),
                #[cfg(feature = "nccl")]
                Engine::Nccl(w) => w.abort(code),
            }
        }
        drop(engine); // NCCL's communicator, then MPI_Finalize
    }
    let _ = (failed, code);
}

#[cfg(feature = "mpi")]
fn size_of(engine: &Engine) -> usize {
    match engine {
        Engine::Mpi(w) => w.size(),
        #[cfg(feature = "nccl")]
        Engine::Nccl(w) => w.size(),
    }
}
