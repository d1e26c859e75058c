//! Inference scopes: computations whose gradients will not be asked for (PyTorch's `torch.no_grad()`).
//!
//! candle records every operation on variables for a later backward pass, and the fused decoder op keeps its
//! activations (points × width floats per layer: 1.3 GB for one plane of a D = 256 volume with a 1024-wide
//! decoder) until its output is dropped. Inside [`no_grad`] the op keeps none and works in per-thread
//! scratch tiles instead. A backward through such an output still gives correct gradients: the op then
//! recomputes the activations.

use std::cell::Cell;

thread_local! {
    static NO_GRAD: Cell<bool> = const { Cell::new(false) };
}

/// Run `f` on this thread without keeping anything for a backward pass; nests, and restores the previous
/// state on return or unwind.
pub fn no_grad<T>(f: impl FnOnce() -> T) -> T {
    struct Restore(bool);
    impl Drop for Restore {
        fn drop(&mut self) {
            NO_GRAD.set(self.0);
        }
    }
    let _restore = Restore(NO_GRAD.replace(true));
    f()
}

/// Whether operations on this thread should keep what a backward pass needs.
pub(crate) fn grad_enabled() -> bool {
    !NO_GRAD.get()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scopes_nest_and_restore_on_unwind() {
        assert!(grad_enabled());
        no_grad(|| {
            assert!(!grad_enabled());
            no_grad(|| assert!(!grad_enabled()));
            assert!(!grad_enabled(), "an inner scope keeps the outer one");
        });
        assert!(grad_enabled());
        let unwound = std::panic::catch_unwind(|| no_grad(|| panic!("inside")));
        assert!(unwound.is_err() && grad_enabled(), "a panic inside restores gradients");
    }
}
